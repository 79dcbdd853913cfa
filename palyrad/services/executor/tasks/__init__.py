"""The background queue's task handlers, one per kind (``seams.TaskHandler``).

``delivery`` delivers a finished run's result (file, channel) off the executor's loop, with
retries. ``skill_reaudit`` audits every installed skill. ``memory_maintenance``,
``embeddings_backfill`` and ``post_run_reflection`` keep the memory store and learn from
runs' output; ``journal_vacuum`` gives back the journal's free pages.
"""

from __future__ import annotations

from palyrad.domain.tasks import TASK_KINDS
from palyrad.seams import TaskHandler
from palyrad.services.executor.tasks.delivery import DeliveryHandler
from palyrad.services.executor.tasks.maintenance import JournalVacuum
from palyrad.services.executor.tasks.memory import (
    EmbeddingsBackfill,
    MemoryMaintenance,
    PostRunReflection,
)
from palyrad.services.executor.tasks.skills import SkillReaudit


def default_handlers() -> dict[str, TaskHandler]:
    handlers: list[TaskHandler] = [
        DeliveryHandler(),
        JournalVacuum(),
        MemoryMaintenance(),
        EmbeddingsBackfill(),
        SkillReaudit(),
        PostRunReflection(),
    ]
    table = {h.kind: h for h in handlers}
    assert set(table) == set(TASK_KINDS), "a task kind without a handler"
    return table
