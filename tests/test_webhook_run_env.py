"""A webhook secret variable is removed from every run's environment (SPEC §4.5): the
scheduler stamps the definitions' secret variables into each run's spec, the executor drops
them from the daemon's environment it hands the run."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from palyrad.domain.run_spec import RunSpec
from palyrad.domain.runs import Run, new_ulid
from palyrad.runtime.home import Home
from palyrad.services.context import ServiceContext
from palyrad.services.executor.actions import build_env
from palyrad.services.executor.service import Executor
from palyrad.services.scheduler.service import Scheduler
from routines.model import CommandAction
from routines.timefmt import now_ms
from tests.daemon_harness import every


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    context = ServiceContext("test", home, child, "i1", 0)
    yield context
    parent.close()
    child.close()


def _run(spec: str | None) -> Run:
    run_id = new_ulid()
    return Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id="plain",
        attempt=1,
        trigger_kind="manual",
        status="pending",
        queued_at_ms=now_ms(),
        spec=spec,
    )


def test_build_env_scrubs_the_daemon_variables_only() -> None:
    base = {"PATH": "/bin", "HOOK_A": "daemon secret", "HOOK_B": "other", "KEEP": "1"}
    env = build_env(_run(None), {"HOOK_B": "the action's own"}, base, ("HOOK_A", "HOOK_B"))
    assert "HOOK_A" not in env and env["KEEP"] == "1" and env["PATH"] == "/bin"
    # An action's explicit env is the definition's value, not the daemon's secret.
    assert env["HOOK_B"] == "the action's own"
    assert base["HOOK_A"] == "daemon secret"  # the daemon's copy is untouched


def test_spec_round_trip_keeps_the_stored_form_without_secrets() -> None:
    action = CommandAction(argv=("true",))
    plain = RunSpec(action)
    assert "scrub_env" not in orjson.loads(plain.to_json())  # specs stored before it existed
    assert RunSpec.from_json(plain.to_json()) == plain
    spec = RunSpec(action, scrub_env=("HOOK_A", "HOOK_B"))
    assert orjson.loads(spec.to_json())["scrub_env"] == ["HOOK_A", "HOOK_B"]
    assert RunSpec.from_json(spec.to_json()) == spec


def test_every_run_is_kept_from_every_webhook_secret(ctx: ServiceContext) -> None:
    prompt = {"kind": "prompt", "prompt": "x"}
    routines = [
        {"id": "hook-b", "trigger": {"kind": "webhook", "secret_env": "HOOK_B"}, "action": prompt},
        {"id": "hook-a", "trigger": {"kind": "webhook", "secret_env": "HOOK_A"}, "action": prompt},
        {"id": "hook-f", "trigger": {"kind": "webhook", "secret_file": "/nope"}, "action": prompt},
        {
            "id": "plain",
            "trigger": every(60_000),
            "action": {"kind": "command", "argv": ["/bin/true"]},
        },
    ]
    ctx.home.definitions.write_bytes(orjson.dumps({"schema_version": 1, "routines": routines}))
    sched = Scheduler(ctx)
    sched.reload(startup=True)
    loaded = sched.state.routines
    for rid in ("plain", "hook-a", "hook-f"):
        spec = RunSpec.from_json(loaded[rid].spec)
        assert spec is not None and spec.scrub_env == ("HOOK_A", "HOOK_B"), rid

    ex = Executor(ctx)
    ex.launcher._base_env = {"PATH": "/usr/bin:/bin", "HOOK_A": "a" * 20, "HOOK_B": "b" * 20}
    prepared = ex.launcher.prepare(_run(loaded["plain"].spec))
    assert prepared is not None
    try:
        assert "HOOK_A" not in prepared.env and "HOOK_B" not in prepared.env
        assert prepared.env["PATH"] == "/usr/bin:/bin"
        assert prepared.env["PALYRA_ROUTINE_ID"] == "plain"
    finally:
        prepared.discard()


def test_a_payload_too_large_for_the_environment_goes_to_a_file(tmp_path: Path) -> None:
    """Linux refuses an environment string over 128 KiB (E2BIG at exec): a megabyte webhook
    body must still reach the run, whole."""
    from dataclasses import replace

    from palyrad.services.executor.actions.env import INLINE_PAYLOAD_BYTES, payload_too_large

    small = replace(_run(None), trigger_payload='{"body": "x"}')
    assert not payload_too_large(small)
    env = build_env(small, {}, {"PALYRA_TRIGGER_PAYLOAD_FILE": "stale"})
    assert env["PALYRA_TRIGGER_PAYLOAD"] == '{"body": "x"}'
    assert "PALYRA_TRIGGER_PAYLOAD_FILE" not in env  # never inherited from the daemon
    big_payload = orjson.dumps({"body": "é" * INLINE_PAYLOAD_BYTES}).decode()
    big = replace(_run(None), trigger_payload=big_payload)
    assert payload_too_large(big)
    where = tmp_path / "run.payload.json"
    env = build_env(big, {}, {}, (), where)
    assert env["PALYRA_TRIGGER_PAYLOAD_FILE"] == str(where)
    assert orjson.loads(env["PALYRA_TRIGGER_PAYLOAD"]) == {
        "payload_file": str(where),
        "bytes": len(big_payload.encode()),
    }
