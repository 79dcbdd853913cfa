"""The ``skill_reaudit`` task: audit every installed skill version (SPEC §6).

Enqueued every ``[maintenance] skill_reaudit_interval_ms`` and by the scheduler on every
change of ``installed-index.json`` or ``trust-store.json``. It reads both files as they are
now; when one does not validate, nothing is audited (the last results stand, and the
scheduler has journaled the file's errors for doctor and self-healing). Artifacts are hashed
streaming, one at a time, with the lease extended between them, so 100 × 10 MB never looks
like a stuck task.
"""

from __future__ import annotations

from palyrad.ops.skills import audit_installed, trust_store_path
from palyrad.seams import TaskRun
from routines.skills_files import load_index, load_trust


class SkillReaudit:
    kind = "skill_reaudit"

    def run(self, task: TaskRun) -> str | None:
        index = load_index(task.home.installed_index)
        trust = load_trust(trust_store_path(task.home))
        if index.value is None or trust.value is None:
            return "not audited: a skills file does not validate (see palyra doctor)"
        results = audit_installed(
            task.home,
            task.journal,
            index.value,
            trust.value,
            task.clock.now_ms(),
            between=task.heartbeat,
        )
        failed = sum(1 for r in results if not r.passed)
        return f"audited {len(results)} skill versions, {failed} quarantined"
