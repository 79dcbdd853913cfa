"""``skill`` actions: not installable yet, so every run fails ``skill_unavailable``."""

from __future__ import annotations

from palyrad.domain.runs import Run
from palyrad.seams import ActionUnavailable, Invocation
from routines.kinds import ErrorKind
from routines.model import Action, SkillAction


class SkillRunner:
    """Refuses every skill run until skills can be installed (the record says which)."""

    kind = "skill"

    def prepare(self, run: Run, action: Action) -> Invocation:
        """Always unavailable: no skill is installed."""
        skill_id = action.skill_id if isinstance(action, SkillAction) else None
        raise ActionUnavailable(ErrorKind.SKILL_UNAVAILABLE, f"skill {skill_id!r} is not installed")
