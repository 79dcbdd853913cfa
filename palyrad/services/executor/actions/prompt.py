"""``prompt`` actions: the configured agent runner, with the prompt on its stdin."""

from __future__ import annotations

from collections.abc import Callable

from palyrad.domain.runs import Run
from palyrad.seams import ActionUnavailable, Invocation
from routines.kinds import ErrorKind
from routines.model import Action, PromptAction


class PromptRunner:
    """Runs ``[agent] command`` from palyra.toml and feeds it the prompt."""

    kind = "prompt"

    def __init__(self, agent_command: Callable[[], tuple[str, ...] | None]) -> None:
        self.agent_command = agent_command

    def prepare(self, run: Run, action: Action) -> Invocation:
        """The agent runner's process; unavailable when no runner is configured."""
        if not isinstance(action, PromptAction):
            raise ActionUnavailable(ErrorKind.SPAWN_FAILED, f"not a prompt action: {action.kind!r}")
        runner = self.agent_command()
        if not runner:
            raise ActionUnavailable(
                ErrorKind.AGENT_RUNNER_NOT_CONFIGURED,
                "prompt routines need [agent] command = [...] in palyra.toml",
            )
        return Invocation(argv=tuple(runner), stdin=action.prompt.encode())
