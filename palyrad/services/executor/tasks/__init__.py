"""The background queue's task handlers, one per kind (``seams.TaskHandler``).

``delivery`` delivers a finished run's result (file, channel) off the executor's loop, with
retries. ``skill_reaudit`` audits every installed skill. The maintenance kinds whose features
are not built yet (memory, embeddings) succeed with "nothing to do": their ticks, deadlines
and de-duplication are real, and their work plugs in here when memory exists.
"""

from __future__ import annotations

from palyrad.domain.tasks import TASK_KINDS
from palyrad.seams import TaskHandler
from palyrad.services.executor.tasks.delivery import DeliveryHandler
from palyrad.services.executor.tasks.maintenance import (
    JournalVacuum,
    NothingYet,
)
from palyrad.services.executor.tasks.skills import SkillReaudit


def default_handlers() -> dict[str, TaskHandler]:
    handlers: list[TaskHandler] = [
        DeliveryHandler(),
        JournalVacuum(),
        NothingYet("memory_maintenance", "memory is not built yet"),
        NothingYet("embeddings_backfill", "memory is not built yet"),
        SkillReaudit(),
        NothingYet("post_run_reflection", "learning is not built yet"),
    ]
    table = {h.kind: h for h in handlers}
    assert set(table) == set(TASK_KINDS), "a task kind without a handler"
    return table
