"""``command`` actions: an argv, or a shell line run by ``/bin/sh -c``."""

from __future__ import annotations

import os

from palyrad.domain.runs import Run
from palyrad.seams import ActionUnavailable, Invocation
from routines.kinds import ErrorKind
from routines.model import Action, CommandAction


class CommandRunner:
    """Runs the action's argv (or its shell line) in its cwd with its env added."""

    kind = "command"

    def prepare(self, run: Run, action: Action) -> Invocation:
        """The process for a command action; stdin is ``/dev/null``."""
        if not isinstance(action, CommandAction):
            raise ActionUnavailable(
                ErrorKind.SPAWN_FAILED, f"not a command action: {action.kind!r}"
            )
        if action.argv:
            argv: tuple[str, ...] = tuple(action.argv)
        else:
            argv = ("/bin/sh", "-c", action.shell or "")
        return Invocation(
            argv=argv,
            cwd=os.path.expanduser(action.cwd) if action.cwd else None,
            env=dict(action.env),
        )
