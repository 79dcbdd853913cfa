"""palyra doctor against one real palyrad (shared by the module): every check with the daemon
running and stopped, a definitions edit the daemon refuses, a stuck run and a fatal service
repaired by ``--repair``.

The daemon runs with short heartbeats and ``stale_run_ms``; the stopped-daemon test runs
last. Timing: deadlines and polling only, no sleep is an assertion.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyrad.journal import STATE_DEFINITIONS_APPLIED, STATE_DEFINITIONS_ERROR
from palyrad.ops.doctor import CHECK_IDS, CheckStatus, run_doctor
from tests.daemon_harness import RPC_ANY_PORTS, Daemon, palyra, routine, shell, wait_until

pytestmark = pytest.mark.timeout(120)

CONFIG = (
    RPC_ANY_PORTS
    + "[executor]\nheartbeat_interval_ms = 250\n"
    # observe_only: self-healing must leave the stuck run to doctor (the test also stops
    # the self_healing process, for a branch where it does not look at the mode yet)
    + '[self_healing]\nmode = "observe_only"\nstale_run_ms = 1500\n'
)
ROUTINES = [routine("sleeper", {"kind": "manual"}, shell("sleep 60"))]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path_factory.mktemp("doctor") / "home")
    daemon.home.config.write_text(CONFIG)
    daemon.write_definitions(ROUTINES)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


def doctor_json(d: Daemon, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = palyra(d.root, "doctor", "--json", *args, check=False)
    doc = orjson.loads(proc.stdout)
    assert doc["ok"] is (proc.returncode == 0), proc.stdout
    return proc.returncode, {c["id"]: c for c in doc["checks"]}


def failing(checks: dict[str, dict[str, Any]]) -> set[str]:
    """The ids that fail, except ``incidents``: the self-healing process may hold an incident
    about what a test just did (a fatal service) open until its next sweep sees it cleared —
    that is its business, not the repair's."""
    return {k for k, c in checks.items() if c["status"] == "fail"} - {"incidents"}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def state_hash(d: Daemon, key: str) -> str | None:
    raw = d.journal.state.get(key)
    return None if raw is None else orjson.loads(raw).get("file_hash")


def test_every_check_with_the_daemon_running(d: Daemon) -> None:
    code, checks = doctor_json(d)
    assert list(checks) == list(CHECK_IDS)
    assert code == 0, checks
    for name in ("home", "definitions", "journal", "daemon", "processes", "rpc", "pki"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["definitions"]["message"].endswith("1 routine, valid and applied")
    assert "reachable" in checks["rpc"]["message"]


def test_a_definitions_edit_the_daemon_refuses_fails_with_its_position(d: Daemon) -> None:
    broken = b'{"schema_version": 1, "routines": [\n  {"id": "x", "trigger": {"kind": "nope"}}]}\n'
    d.write_raw(broken)
    try:
        wait_until(lambda: state_hash(d, STATE_DEFINITIONS_ERROR) == sha(broken), timeout=20)
        (result,) = run_doctor(d.home, only=["definitions"]).checks
        assert result.status is CheckStatus.FAIL
        assert "palyrad refused to apply" in result.message
        where = f"{d.home.definitions}:2:"
        assert where in result.message and (result.hint or "").startswith(f"fix {where}")
        assert result.details and all(
            line.startswith(str(d.home.definitions)) for line in result.details
        )
    finally:
        d.write_definitions(ROUTINES)
    good = d.home.definitions.read_bytes()
    wait_until(lambda: state_hash(d, STATE_DEFINITIONS_APPLIED) == sha(good), timeout=20)
    (result,) = run_doctor(d.home, only=["definitions"]).checks
    assert result.status is CheckStatus.OK and "valid and applied" in result.message


@contextlib.contextmanager
def frozen(d: Daemon, *names: str) -> Iterator[None]:
    """SIGSTOP these services (as a hung process would be), SIGCONT them afterwards."""
    pids = []
    for name in names:
        p = d.status().process(name)
        assert p is not None and p.pid is not None
        pids.append(p.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_a_stuck_run_is_released_by_repair(d: Daemon) -> None:
    body = orjson.loads(palyra(d.root, "routines", "run-now", "sleeper", "--json").stdout)
    run_id = body["run_id"]
    run = wait_until(
        lambda: (r := d.journal.runs.get(run_id)) and r.status == "running" and r.pid and r,
        timeout=20,
    )
    with frozen(d, "executor", "self_healing"):
        wait_until(
            lambda: run_doctor(d.home, only=["stuck_runs"]).checks[0].status is CheckStatus.FAIL,
            timeout=20,
            interval=0.2,
        )
        code, checks = doctor_json(d, "--only", "stuck_runs")
        assert code == 1 and run_id in checks["stuck_runs"]["message"]
        assert checks["stuck_runs"]["hint"].startswith("palyra doctor --repair")
        code, checks = doctor_json(d, "--repair", "--only", "stuck_runs")
        assert code == 0, checks
        (done,) = checks["stuck_runs"]["repaired"]
        assert done.startswith(f"released run {run_id} (sleeper): failed it as heartbeat_lost")
        assert "killed its process group" in done
        after = d.journal.runs.get(run_id)
        assert after is not None and after.status == "failed"
        assert after.error_kind == "heartbeat_lost"
    # the executor, thawed, reaps the killed `sleep` and carries on
    wait_until(lambda: not _alive(run.pid), timeout=20)
    wait_until(lambda: d.status().all_ready, timeout=20)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_fatal_service_is_restarted_by_repair(d: Daemon) -> None:
    """node_rpc refuses a certs/ folder others can write: killed, it crash-loops until the
    supervisor gives up (fatal). One --repair fixes the folder, then restarts it."""
    rpc = d.status().process("node_rpc")
    assert rpc is not None and rpc.pid is not None
    os.chmod(d.home.certs_dir, 0o770)
    try:
        os.kill(rpc.pid, signal.SIGKILL)
        wait_until(
            lambda: (p := d.status().process("node_rpc")) is not None and p.state == "fatal",
            timeout=60,
            interval=0.2,
        )
        code, checks = doctor_json(d)
        assert code == 1
        assert checks["processes"]["status"] == "fail"
        assert checks["processes"]["message"].startswith("node_rpc crashed too often")
        assert checks["home"]["status"] == "fail"
        assert checks["rpc"]["status"] == "warn"
        _code, checks = doctor_json(d, "--repair")
        assert failing(checks) == set(), checks
        assert checks["home"]["repaired"] == [f"chmod 700 {d.home.certs_dir}"]
        assert checks["processes"]["repaired"] == ["restarted node_rpc: running"]
        assert checks["processes"]["status"] == "ok"
        assert checks["rpc"]["status"] == "ok"  # looked at again after the restart
    finally:
        os.chmod(d.home.certs_dir, 0o700)
    p = d.status().process("node_rpc")
    assert p is not None and p.state == "running"


def test_webhook_secrets_are_judged_as_the_listener_reads_them(d: Daemon) -> None:
    secret = d.root.parent / "hook.secret"
    secret.write_text("s" * 32)
    secret.chmod(0o644)
    hooks = [
        routine("hook-file", {"kind": "webhook", "secret_file": str(secret)}, shell("true")),
        routine("hook-env", {"kind": "webhook", "secret_env": "PALYRA_NOT_SET_X"}, shell("true")),
    ]
    for r in hooks:
        palyra(d.root, "routines", "upsert", "-", input_data=orjson.dumps(r).decode())
    try:
        _, checks = doctor_json(d, "--only", "webhooks")
        result = checks["webhooks"]
        assert result["status"] == "fail", result
        assert "hook-file: secret file" in result["message"]
        assert "hook-env: environment variable PALYRA_NOT_SET_X is not set" in result["message"]
        secret.chmod(0o600)
        palyra(d.root, "routines", "delete", "hook-env")
        _, checks = doctor_json(d, "--only", "webhooks")
        assert checks["webhooks"]["status"] == "ok", checks["webhooks"]
        assert "1 webhook routine, secrets usable" in checks["webhooks"]["message"]
    finally:
        for r in hooks:
            palyra(d.root, "routines", "delete", str(r["id"]), check=False)


def test_every_check_with_the_daemon_stopped(d: Daemon) -> None:
    d.stop()
    wait_until(lambda: not d.status().running, timeout=30)
    _code, checks = doctor_json(d)
    assert list(checks) == list(CHECK_IDS)
    assert failing(checks) == set(), checks
    assert checks["daemon"] == {
        "id": "daemon",
        "status": "warn",
        "message": "palyrad is not running",
        "hint": "palyra daemon start",
    }
    assert checks["processes"]["message"] == "daemon not running"
    assert checks["rpc"]["message"] == "daemon not running (no listeners)"
    # the journal keeps what the daemon applied: the hash shortcut still answers
    assert checks["definitions"]["message"].endswith("1 routine, valid and applied")
    assert checks["journal"]["status"] == "ok" and checks["pki"]["status"] == "ok"
    assert checks["stuck_runs"]["status"] == "ok"  # the stop ended the runs it had
    assert Path(d.home.pid_file).exists() is False
