"""The executor's action runners (one per action kind) and a run whose spec cannot be read."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from palyrad.domain.runs import Run, new_ulid
from palyrad.journal import Journal
from palyrad.runtime.home import Home
from palyrad.seams import ActionUnavailable
from palyrad.services.context import ServiceContext
from palyrad.services.executor.actions import build_env, default_runners
from palyrad.services.executor.service import Executor
from routines.model import CommandAction, PromptAction, SkillAction
from routines.timefmt import now_ms


def _runners(agent: object = None, home: Path | None = None) -> Any:
    """The runners, with a skill runner over an empty home (no skill installed)."""
    h = Home.at(home or Path("/nonexistent-palyra-home"))

    def no_journal() -> Journal:
        raise AssertionError("a run of an uninstalled skill needs no journal")

    return default_runners(agent if callable(agent) else (lambda: None), h, no_journal, now_ms)


def _run(spec: str | None = None) -> Run:
    run_id = new_ulid()
    return Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id="r",
        attempt=1,
        trigger_kind="manual",
        status="pending",
        queued_at_ms=now_ms(),
        spec=spec,
    )


def test_command_runner_prepares_argv_or_shell_cwd_and_env() -> None:
    runner = _runners()["command"]
    inv = runner.prepare(_run(), CommandAction(argv=("echo", "hi"), env=(("A", "1"),)))
    assert inv.argv == ("echo", "hi") and inv.stdin is None and dict(inv.env) == {"A": "1"}
    inv = runner.prepare(_run(), CommandAction(shell="echo hi", cwd="~/x"))
    assert inv.argv == ("/bin/sh", "-c", "echo hi")
    assert inv.cwd is not None and not inv.cwd.startswith("~")


def test_prompt_runner_needs_an_agent_command_read_per_run() -> None:
    agent: list[tuple[str, ...] | None] = [None]
    runner = _runners(lambda: agent[0])["prompt"]
    with pytest.raises(ActionUnavailable) as exc:
        runner.prepare(_run(), PromptAction(prompt="hello"))
    assert exc.value.error_kind == "agent_runner_not_configured"
    agent[0] = ("my-agent", "--stdin")  # a palyra.toml reload applies to the next run
    inv = runner.prepare(_run(), PromptAction(prompt="hello"))
    assert inv.argv == ("my-agent", "--stdin") and inv.stdin == b"hello"


def test_skill_runner_reports_the_skill_unavailable() -> None:
    with pytest.raises(ActionUnavailable) as exc:
        _runners()["skill"].prepare(_run(), SkillAction(skill_id="s"))
    assert exc.value.error_kind == "skill_unavailable" and "'s'" in str(exc.value)


def test_build_env_adds_the_palyra_variables() -> None:
    env = build_env(_run(), {"A": "1"}, {"PATH": "/bin", "PALYRA_SCHEDULED_FOR": "stale"})
    assert env["A"] == "1" and env["PATH"] == "/bin" and env["PALYRA_ROUTINE_ID"] == "r"
    assert "PALYRA_SCHEDULED_FOR" not in env


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    context = ServiceContext("test", home, child, "i1", 0)
    yield context
    parent.close()
    child.close()


@pytest.mark.parametrize("spec", ['{"action": {"kind": "teleport"}}', "not json", "[]"])
def test_a_run_whose_spec_cannot_be_read_fails_spawn_failed(ctx: ServiceContext, spec: str) -> None:
    run = _run(spec)
    ctx.journal.runs.insert(run)
    ex = Executor(ctx)
    ex.claim_and_start()
    got = ctx.journal.runs.get(run.run_id)
    assert got is not None and got.status == "failed" and got.error_kind == "spawn_failed"
    assert ex.active == {} and ex.armed == {} and not ctx.home.run_log(run.run_id).exists()
