"""How a run of each action kind becomes a process: one ``ActionRunner`` per kind.

The executor spawns, watches and finalizes; a runner only prepares (argv, stdin, cwd, the
action's own environment). A new action kind is one more runner in ``default_runners``, not
a new branch in the executor. ``build_env`` adds the daemon's environment and the
``PALYRA_*`` variables every kind gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from palyrad.journal import Journal
from palyrad.runtime.home import Home
from palyrad.seams import ActionRunner
from palyrad.services.executor.actions.command import CommandRunner
from palyrad.services.executor.actions.env import build_env
from palyrad.services.executor.actions.prompt import PromptRunner
from palyrad.services.executor.actions.skill import SkillRunner

__all__ = ["ActionRunner", "build_env", "default_runners"]


def default_runners(
    agent_command: Callable[[], tuple[str, ...] | None],
    home: Home,
    journal: Callable[[], Journal],
    now_ms: Callable[[], int],
) -> Mapping[str, ActionRunner]:
    """The runners by action kind. ``agent_command`` is read per run, so a reloaded
    ``[agent] command`` applies to the next prompt run; the skill runner reads the home's
    skill files and the executor's journal."""
    runners: tuple[ActionRunner, ...] = (
        CommandRunner(),
        PromptRunner(agent_command),
        SkillRunner(home, journal, now_ms),
    )
    return {r.kind: r for r in runners}
