"""palyra doctor on crafted homes: every check's ok / warn / fail paths, the read-only
guarantee, the repairs, the JSON shape and the exit codes (SPEC §4.3).

Real files, a real SQLite journal, real certificates. Where a check needs a running daemon,
a "supervisor" is played by this process: it holds the pid-file lock (what liveness is
decided by) and writes run/status.json; tests/test_doctor_daemon.py runs the real one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from certs import load_or_create, renew_server
from palyrad.domain.runs import Run, new_ulid
from palyrad.journal import (
    STATE_DEFINITIONS_APPLIED,
    STATE_DEFINITIONS_ERROR,
    ApprovalRequest,
    Device,
    Journal,
    PairingRequest,
    PairingWindow,
    RoutineState,
)
from palyrad.ops.doctor import CHECK_IDS, CheckStatus, DoctorReport, journal_checks, run_doctor
from palyrad.ops.doctor import files as files_module
from palyrad.ops.doctor.check import DoctorCheck
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, ok
from palyrad.ops.doctor.system import DiskCheck, InotifyCheck, disk_status
from palyrad.runtime.clock import ManualClock
from palyrad.runtime.home import Home
from palyrad.runtime.status import DaemonStatus, ProcessStatus, write_status
from routines.timefmt import now_ms
from tests.daemon_harness import palyra

pytestmark = pytest.mark.timeout(60)

DAY = 86_400_000
SERVICES = ("scheduler", "executor", "self_healing", "node_rpc")


# --- helpers -----------------------------------------------------------------------------


def make_home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


def write_defs(home: Home, routines: list[dict[str, Any]]) -> bytes:
    data = orjson.dumps({"schema_version": 1, "routines": routines}, option=orjson.OPT_INDENT_2)
    home.definitions.write_bytes(data)
    return data


def sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def doctor(home: Home, *only: str, repair: bool = False, now: int | None = None) -> DoctorReport:
    clock = ManualClock(now if now is not None else now_ms())
    return run_doctor(home, only=only, repair=repair, clock=clock)


def one(home: Home, check_id: str, **kw: Any) -> CheckResult:
    (result,) = doctor(home, check_id, **kw).checks
    return result


def running_run(routine_id: str, heartbeat_ms: int) -> Run:
    run_id = new_ulid()
    return Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id=routine_id,
        attempt=1,
        trigger_kind="manual",
        status="running",
        queued_at_ms=heartbeat_ms - 1_000,
        started_at_ms=heartbeat_ms - 500,
        heartbeat_ms=heartbeat_ms,
        lease_owner="executor:gone",
        spec='{"retry": {"max_attempts": 1, "backoff_ms": 100, "max_backoff_ms": 1000}}',
    )


def processes(now: int, **states: str) -> tuple[ProcessStatus, ...]:
    out = []
    for name in SERVICES:
        info = {}
        if name == "node_rpc":
            info = {"endpoints": {"pairing": None, "node": None, "webhook": None}}
        out.append(
            ProcessStatus(name, 40_000 + len(out), states.get(name, "running"), 0, now, info)
        )
    return tuple(out)


@contextlib.contextmanager
def fake_daemon(home: Home, procs: tuple[ProcessStatus, ...]) -> Iterator[None]:
    """Play a live supervisor: hold the pid-file lock and publish run/status.json."""
    fd = os.open(home.pid_file, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    started = now_ms() - 60_000
    os.write(fd, orjson.dumps({"pid": os.getpid(), "instance": "t", "started_at_ms": started}))
    write_status(home, DaemonStatus(True, os.getpid(), "t", started, procs))
    try:
        yield
    finally:
        os.close(fd)
        home.pid_file.unlink()


def stale_pid_file(home: Home) -> None:
    home.pid_file.write_bytes(orjson.dumps({"pid": 999_999, "instance": "dead"}))


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its mode, mtime and size — except the WAL and shared
    memory files SQLite itself creates beside a journal opened read-only, and the home's
    own mtime (creating those two files moves it)."""
    out: dict[str, tuple[int, int, int]] = {}
    st = os.lstat(root)
    out["."] = (st.st_mode, 0, 0)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name in ("journal.sqlite3-shm", "journal.sqlite3-wal"):
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_mtime_ns, st.st_size)
    return out


def troubled_home(tmp_path: Path) -> Home:
    """A stopped daemon's home with something wrong for most checks."""
    home = make_home(tmp_path)
    now = now_ms()
    load_or_create(home.certs_dir, ["localhost"], now)
    os.chmod(home.certs_dir / "server.key", 0o644)
    os.chmod(home.certs_dir, 0o777)
    os.rmdir(home.logs_dir)
    stale_pid_file(home)
    write_defs(
        home,
        [
            {
                "id": "ask",
                "trigger": {"kind": "manual"},
                "action": {"kind": "prompt", "prompt": "x"},
            },
            {
                "id": "Bad",
                "trigger": {"kind": "manual"},
                "action": {"kind": "command", "argv": ["true"]},
            },
        ],
    )
    j = Journal(home.journal)
    try:
        j.routines.sync(
            [RoutineState("late", "h", "k", True, now - DAY, now - DAY, now - DAY, None)], [], now
        )
        j.runs.insert(running_run("late", now - 10 * 60_000))
        j.approvals.request([ApprovalRequest("late", "h", "before_enable")], now)
        j.incidents.open(new_ulid(), "disk", "home", "critical", "2% free", now)
    finally:
        j.close()
    return home


# --- the report as a whole -----------------------------------------------------------------


def test_every_check_runs_in_the_stable_order_on_a_home_that_does_not_exist(tmp_path: Path) -> None:
    home = Home(tmp_path / "nowhere")
    report = doctor(home)
    assert [c.check_id for c in report.checks] == list(CHECK_IDS)
    assert CHECK_IDS == (
        "home", "config", "definitions", "skills_index", "journal", "sqlite", "daemon",
        "processes", "overdue", "stuck_runs", "approvals", "incidents", "pki", "devices",
        "rpc", "webhooks", "memory", "inotify", "agent_runner", "disk",
    )  # fmt: skip
    by_id = {c.check_id: c for c in report.checks}
    assert by_id["home"].status is CheckStatus.WARN
    assert by_id["journal"].status is CheckStatus.WARN
    assert "no journal yet" in by_id["journal"].message
    assert by_id["daemon"].status is CheckStatus.WARN
    assert by_id["daemon"].hint == "palyra daemon start"
    assert report.ok  # warnings only
    assert not home.root.exists(), "doctor created the home"
    # --repair does not create a missing home either
    doctor(home, repair=True)
    assert not home.root.exists()


def test_without_repair_nothing_changes_in_a_home_with_problems(tmp_path: Path) -> None:
    home = troubled_home(tmp_path)
    before = snapshot(home.root)
    report = doctor(home)
    assert snapshot(home.root) == before
    statuses = {c.check_id: c.status for c in report.checks}
    for failing in ("home", "definitions", "pki", "incidents", "agent_runner"):
        assert statuses[failing] is CheckStatus.FAIL, failing
    for warning in ("daemon", "overdue", "stuck_runs", "approvals"):
        assert statuses[warning] is CheckStatus.WARN, warning
    for args in (("doctor",), ("doctor", "--json")):
        proc = palyra(home.root, *args, check=False)
        assert proc.returncode == 1, proc.stderr
        assert snapshot(home.root) == before, args


def test_json_shape_exit_codes_and_only(tmp_path: Path) -> None:
    home = troubled_home(tmp_path)
    proc = palyra(home.root, "doctor", "--json", check=False)
    doc = orjson.loads(proc.stdout)
    assert set(doc) == {"ok", "checks"} and doc["ok"] is False and proc.returncode == 1
    assert [c["id"] for c in doc["checks"]] == list(CHECK_IDS)
    for c in doc["checks"]:
        assert {"id", "status", "message", "hint"} <= set(c) <= {
            "id", "status", "message", "hint", "details", "repaired"
        }  # fmt: skip
        assert c["status"] in ("ok", "warn", "fail")
        assert (c["hint"] is None) == (c["status"] == "ok"), c
        assert c["message"]
    # ok is false exactly when something fails; warnings alone exit 0
    proc = palyra(
        home.root, "doctor", "--json", "--only", "daemon", "--only", "approvals", check=False
    )
    doc = orjson.loads(proc.stdout)
    assert proc.returncode == 0 and doc["ok"] is True
    assert [c["id"] for c in doc["checks"]] == ["daemon", "approvals"]  # registry order
    assert [c["status"] for c in doc["checks"]] == ["warn", "warn"]
    # text: one line per check with its mark, hints indented, a summary
    text = palyra(home.root, "doctor", "--only", "home", "--only", "disk", check=False)
    lines = text.stdout.splitlines()
    assert lines[0].startswith("✗ home: ") and text.returncode == 1
    assert any(line.startswith("    hint: chmod 700 ") for line in lines)
    assert any(line.startswith("✓ disk: ") for line in lines)
    assert lines[-1].startswith("2 checks: 1 ok, 1 failure")
    # an unknown id is a usage error naming the known ones
    bad = palyra(home.root, "doctor", "--only", "nope", check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: unknown check id: nope (known: home, config,")
    with pytest.raises(Exception, match="unknown check id"):
        run_doctor(home, only=["nope"])


class Crashing(DoctorCheck):
    check_id = "crashy"

    def run(self, ctx: DoctorContext) -> CheckResult:
        raise RuntimeError("boom")


def test_only_accepts_the_kebab_case_spelling(tmp_path: Path) -> None:
    """SPEC conventions: the CLI also accepts the kebab-case spelling of snake_case ids."""
    home = make_home(tmp_path)
    proc = palyra(home.root, "doctor", "--json", "--only", "stuck-runs", "--only", "disk")
    assert [c["id"] for c in orjson.loads(proc.stdout)["checks"]] == ["stuck_runs", "disk"]


def test_a_crashing_check_is_a_failure_of_its_own_and_the_others_still_run(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    report = run_doctor(home, checks=[Crashing(), DiskCheck()])
    crashed, disk = report.checks
    assert crashed.status is CheckStatus.FAIL and crashed.check_id == "crashy"
    assert crashed.message == "check crashed: RuntimeError: boom"
    assert "palyra doctor --only crashy" in (crashed.hint or "")
    assert disk.check_id == "disk" and not report.ok


# --- repairs -------------------------------------------------------------------------------


def test_repair_fixes_modes_the_stale_pid_file_and_missing_folders(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    load_or_create(home.certs_dir, ["localhost"], now_ms())
    os.chmod(home.root, 0o777)
    os.chmod(home.certs_dir, 0o777)
    os.chmod(home.routines_dir, 0o775)
    os.chmod(home.runs_dir, 0o705)
    os.chmod(home.certs_dir / "ca.key", 0o644)
    os.rmdir(home.logs_dir)
    stale_pid_file(home)
    found = doctor(home, "home", "daemon", "pki")
    assert [c.status for c in found.checks] == [
        CheckStatus.FAIL,
        CheckStatus.WARN,
        CheckStatus.FAIL,
    ]
    assert all(c.repairable for c in found.checks)

    proc = palyra(home.root, "doctor", "--repair", "--json", check=False)
    doc = {c["id"]: c for c in orjson.loads(proc.stdout)["checks"]}
    assert doc["home"]["status"] == "ok"
    assert sorted(doc["home"]["repaired"]) == sorted(
        [
            f"chmod 700 {home.root}",
            f"chmod 700 {home.certs_dir}",
            f"chmod 700 {home.routines_dir}",
            f"chmod 700 {home.runs_dir}",
            f"created {home.logs_dir}/ (0700)",
        ]
    )
    assert doc["daemon"]["repaired"] == [f"removed the stale pid file {home.pid_file}"]
    assert doc["daemon"]["status"] == "warn"  # still not running: that is not doctor's call
    assert doc["pki"] == {
        **doc["pki"],
        "status": "ok",
        "repaired": [f"chmod 600 {home.certs_dir / 'ca.key'}"],
    }
    for d in (home.root, home.certs_dir, home.routines_dir, home.runs_dir, home.logs_dir):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert stat.S_IMODE(os.stat(home.certs_dir / "ca.key").st_mode) == 0o600
    assert not home.pid_file.exists()
    # the text form says what it did
    os.chmod(home.skills_dir, 0o757)
    text = palyra(home.root, "doctor", "--repair", "--only", "home").stdout
    assert f"  repaired: chmod 700 {home.skills_dir}" in text.splitlines()


def test_a_fifo_at_the_pid_file_hangs_nothing(tmp_path: Path) -> None:
    """A FIFO where run/palyrad.pid belongs (a careless ``mkfifo``, or another user in a home
    others can write): opening it for its lock blocked for ever, so ``palyra doctor`` — and
    every command that asks whether the daemon runs — hung. It is no daemon's pid file."""
    home = make_home(tmp_path)
    os.mkfifo(home.pid_file, 0o600)
    proc = palyra(home.root, "doctor", "--json", "--only", "daemon", check=False, timeout=20)
    doc = orjson.loads(proc.stdout)
    assert doc["checks"][0]["status"] == "warn"
    proc = palyra(home.root, "daemon", "status", "--json", check=False, timeout=20)
    assert proc.returncode == 0 and orjson.loads(proc.stdout)["running"] is False
    proc = palyra(home.root, "doctor", "--repair", "--only", "daemon", check=False, timeout=20)
    assert proc.returncode == 0
    assert stat.S_ISFIFO(os.lstat(home.pid_file).st_mode)  # not ours to delete


def test_repair_never_chmods_through_a_symlink_out_of_the_home(tmp_path: Path) -> None:
    """A folder of the home that is a symlink (runs/ on a bigger disk; or one planted by
    someone who could write to the home) is judged by its target, but --repair changed the
    target — anywhere on the machine — while saying it changed the folder in the home."""
    home = make_home(tmp_path)
    outside = tmp_path / "shared"
    outside.mkdir()
    os.chmod(outside, 0o777)
    os.rmdir(home.certs_dir)
    os.symlink(outside, home.certs_dir)
    result = one(home, "home")
    assert result.status is CheckStatus.FAIL  # the daemon still refuses it
    assert f"through the symlink to {outside}" in result.message
    assert f"chmod 700 {outside}" in result.hint
    proc = palyra(home.root, "doctor", "--repair", "--only", "home", "--json", check=False)
    assert proc.returncode == 1
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o777  # untouched
    # A folder swapped for a symlink after doctor looked is refused, not followed.
    from palyrad.runtime.home_safety import UnsafeHome, chmod_private_dir

    with pytest.raises(UnsafeHome):
        chmod_private_dir(home.certs_dir, follow=False)
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o777


def test_the_daemon_refuses_a_home_others_can_write_and_names_the_fix(tmp_path: Path) -> None:
    """The same judgement as the home check (SPEC §1), at the daemon's preflight."""
    from palyrad.ops.daemon_control import preflight
    from palyrad.runtime.home_safety import UnsafeHome

    home = make_home(tmp_path)
    os.chmod(home.skills_dir, 0o777)
    with pytest.raises(UnsafeHome) as caught:
        preflight(home)
    assert str(home.skills_dir) in str(caught.value)
    assert caught.value.hint == f"chmod 700 {home.skills_dir}, or run: palyra doctor --repair"
    proc = palyra(home.root, "daemon", "start", check=False)
    assert proc.returncode == 1 and "can be written by group and other users" in proc.stderr
    os.chmod(home.skills_dir, 0o755)  # readable by others: advice, not a refusal
    preflight(home)
    assert one(home, "home").status is CheckStatus.WARN


# --- files ---------------------------------------------------------------------------------


def test_home_not_ours_or_not_a_directory_fails_without_a_repair(tmp_path: Path) -> None:
    root = tmp_path / "file-home"
    root.write_text("x")
    report = doctor(Home(root))
    result = report.checks[0]
    assert result.status is CheckStatus.FAIL and "is not a directory" in result.message
    assert not result.repairable
    assert not any(c.message.startswith("check crashed") for c in report.checks), report


def test_config(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert one(home, "config").message == "no palyra.toml: every default applies"
    home.config.write_text("[executor]\nmax_concurrent_runs = 4\n")
    assert one(home, "config").status is CheckStatus.OK
    home.config.write_text("[executor]\nmax_concurent_runs = 4\n")
    result = one(home, "config")
    assert result.status is CheckStatus.FAIL
    assert "unknown key [executor] max_concurent_runs" in result.message and result.hint


def test_definitions_invalid_file_names_file_line_col(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert one(home, "definitions").message.startswith("no routines yet")
    home.definitions.write_text(
        '{"schema_version": 1, "routines": [\n  {"id": "a", "trigger": {"kind": "manual"},\n'
        '   "action": {"kind": "command", "argv": ["true"]}, "concurency": "forbid"}]}\n'
    )
    result = one(home, "definitions")
    assert result.status is CheckStatus.FAIL
    where = f"{home.definitions}:3:53"
    assert f"{where}: routines[0].concurency" in result.message
    assert result.hint == f"fix {where}, then run: palyra routines validate"
    assert result.details and result.details[0].startswith(where)
    write_defs(
        home,
        [
            {
                "id": "a",
                "trigger": {"kind": "manual"},
                "action": {"kind": "command", "argv": ["true"]},
            }
        ],
    )
    result = one(home, "definitions")
    assert result.status is CheckStatus.OK
    assert "1 routine, valid (applied at the next daemon start)" in result.message


def test_definitions_trusts_the_hash_the_daemon_applied_and_reports_its_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path)
    data = write_defs(
        home,
        [
            {
                "id": "a",
                "trigger": {"kind": "manual"},
                "action": {"kind": "command", "argv": ["true"]},
            }
        ],
    )
    j = Journal(home.journal)
    now = now_ms()
    j.state.set(
        STATE_DEFINITIONS_APPLIED,
        orjson.dumps({"at_ms": now, "file_hash": sha(data), "count": 1}).decode(),
        now,
    )

    def never(*_a: object, **_k: object) -> object:
        raise AssertionError("validated although the daemon applied these bytes")

    monkeypatch.setattr(files_module, "validate_text", never)
    result = one(home, "definitions")
    assert result.status is CheckStatus.OK and "valid and applied" in result.message
    # the daemon refused these bytes: a failure, with its errors, still without validating
    line = f"{home.definitions}:1:7: routines[0].id: invalid id"
    j.state.set(
        STATE_DEFINITIONS_ERROR,
        orjson.dumps({"at_ms": now, "file_hash": sha(data), "errors": [line]}).decode(),
        now,
    )
    j.close()
    result = one(home, "definitions")
    assert result.status is CheckStatus.FAIL
    assert "refused to apply" in result.message and line in result.message
    assert result.hint == f"fix {home.definitions}:1:7, then run: palyra routines validate"


def test_definitions_missing_after_routines_were_applied_fails(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    home.last_good_definitions.write_text('{"schema_version": 1, "routines": []}')
    result = one(home, "definitions")
    assert result.status is CheckStatus.FAIL and "is missing" in result.message


def test_skills_index(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert one(home, "skills_index").message == "no skills installed"
    home.installed_index.parent.mkdir(parents=True, exist_ok=True)
    home.installed_index.write_text('{"schema_version": 1, "skills": []}')
    assert one(home, "skills_index").status is CheckStatus.OK
    home.installed_index.write_text("{}")
    result = one(home, "skills_index")
    assert result.status is CheckStatus.FAIL
    assert f"{home.installed_index}:1:1" in result.message and "skills" in result.message


def _set_schema(home: Home, version: int) -> None:
    import sqlite3

    db = sqlite3.connect(home.journal)
    with db:
        db.execute("DELETE FROM schema_migrations WHERE version > ?", (version,))
        db.execute("INSERT OR IGNORE INTO schema_migrations VALUES (?, 0)", (version,))
    db.close()


def test_journal_states(tmp_path: Path) -> None:
    from palyrad.journal import SCHEMA_VERSION

    home = make_home(tmp_path)
    Journal(home.journal).close()
    result = one(home, "journal")
    assert result.status is CheckStatus.OK
    assert (
        f"schema {SCHEMA_VERSION}, WAL mode" in result.message and "integrity ok" in result.message
    )
    _set_schema(home, SCHEMA_VERSION - 1)
    result = one(home, "journal")
    assert result.status is CheckStatus.WARN and "migrated to" in result.message
    # the other journal readers do not read an older schema's tables
    assert one(home, "incidents").message.startswith("not checked")
    _set_schema(home, SCHEMA_VERSION + 1)
    result = one(home, "journal")
    assert result.status is CheckStatus.FAIL and "newer than this Palyra" in result.message
    home.journal.write_bytes(b"this is not a database" * 100)
    result = one(home, "journal")
    assert result.status is CheckStatus.FAIL and result.hint
    result = one(home, "overdue")  # not checked, and no crash
    assert result.status is CheckStatus.WARN and result.message.startswith("not checked")


def test_journal_write_failures_the_services_reported(tmp_path: Path) -> None:
    import dataclasses

    home = make_home(tmp_path)
    Journal(home.journal).close()
    now = now_ms()
    procs = processes(now)
    failure = {"at_ms": now - 5_000, "error": "OperationalError: database or disk is full"}
    live = tuple(
        dataclasses.replace(p, journal_error=failure) if p.name == "executor" else p for p in procs
    )
    with fake_daemon(home, live):
        result = one(home, "journal", now=now)
    assert result.status is CheckStatus.FAIL
    assert "executor" in result.message and "disk is full" in result.message
    assert result.hint and "disk" in result.hint
    with fake_daemon(home, live):  # ten minutes later, no new failure: recovered, worth a look
        result = one(home, "journal", now=now + 600_000)
    assert result.status is CheckStatus.WARN and "since recovered" in result.message
    with fake_daemon(home, procs):
        assert one(home, "journal", now=now).status is CheckStatus.OK


def test_a_large_wal_warns_and_repair_checkpoints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path)
    monkeypatch.setattr(journal_checks, "WAL_WARN_BYTES", 16 * 1024)
    writer = Journal(home.journal)  # kept open, so its WAL stays as a daemon's would
    try:
        for i in range(200):
            writer.state.set(f"k{i}", "x" * 500, i)
        wal = Path(f"{home.journal}-wal")
        assert wal.stat().st_size > 16 * 1024
        result = one(home, "journal")
        assert result.status is CheckStatus.WARN and result.repairable
        assert "the WAL is" in result.message
        repaired = one(home, "journal", repair=True)
        assert repaired.status is CheckStatus.OK
        assert repaired.repaired[0].startswith("checkpointed the WAL")
        assert wal.stat().st_size == 0
    finally:
        writer.close()


def test_sqlite_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert one(home, "sqlite").message.startswith("SQLite 3.")
    monkeypatch.setattr(journal_checks, "MIN_SQLITE_VERSION", (99, 0, 0))
    result = one(home, "sqlite")
    assert result.status is CheckStatus.FAIL and "older than 99.0.0" in result.message


# --- daemon, processes, rpc (a played supervisor) --------------------------------------------


def test_daemon_and_processes_with_a_live_supervisor(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    now = now_ms()
    with fake_daemon(home, processes(now)):
        assert one(home, "daemon").message.startswith(f"palyrad running, pid {os.getpid()}")
        assert one(home, "processes").status is CheckStatus.OK
    with fake_daemon(home, processes(now, node_rpc="fatal", executor="restarting")):
        result = one(home, "processes")
        assert result.status is CheckStatus.FAIL and result.repairable
        assert result.message.startswith("node_rpc crashed too often")
        assert "executor is restarting (restart 0)" in result.details
        # nobody reads run/notify here: the repair says so instead of pretending
        repaired = one(home, "processes", repair=True)
        assert repaired.repaired == ("could not reach the supervisor to restart node_rpc",)
    with fake_daemon(home, processes(now, executor="restarting")):
        assert one(home, "processes").status is CheckStatus.WARN
    silent = tuple(
        replace(p, last_heartbeat_ms=now - 60_000) if p.name == "scheduler" else p
        for p in processes(now)
    )
    with fake_daemon(home, silent):
        result = one(home, "processes", now=now)
        assert result.status is CheckStatus.FAIL
        assert "scheduler (pid 40000) silent for 60 s" in result.message


def test_processes_reports_a_wedged_main_loop(tmp_path: Path) -> None:
    """A service whose heartbeat thread lives on while its main loop is wedged journals
    ``stalled``; doctor said "running and heartbeating" (for self_healing, judged by no one,
    that was the only place it could show)."""
    from palyrad.journal import ProcessHeartbeat

    home = make_home(tmp_path)
    now = now_ms()
    procs = processes(now)
    sh = next(p for p in procs if p.name == "self_healing")
    j = Journal(home.journal)
    j.heartbeats.beat(ProcessHeartbeat("self_healing", sh.pid or 0, "t", "stalled", 0, now))
    j.close()
    with fake_daemon(home, procs):
        result = one(home, "processes", now=now)
    assert result.status is CheckStatus.FAIL
    assert "self_healing (pid 40002): its main loop is wedged" in result.message


def test_rpc_reachability(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    now = now_ms()
    assert one(home, "rpc").message == "daemon not running (no listeners)"
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()  # nothing listens there now
    port = listening.getsockname()[1]
    try:

        def with_endpoints(pairing: str | None, node: str | None) -> tuple[ProcessStatus, ...]:
            return tuple(
                replace(p, info={"endpoints": {"pairing": pairing, "node": node}})
                if p.name == "node_rpc"
                else p
                for p in processes(now)
            )

        with fake_daemon(home, with_endpoints(f"127.0.0.1:{port}", f"127.0.0.1:{port}")):
            result = one(home, "rpc")
            assert result.status is CheckStatus.OK and "reachable" in result.message
        with fake_daemon(home, with_endpoints(f"127.0.0.1:{port}", None)):
            result = one(home, "rpc")
            assert result.status is CheckStatus.FAIL
            assert "the node listener is not up" in result.message
        with fake_daemon(home, with_endpoints(f"127.0.0.1:{closed_port}", f"127.0.0.1:{port}")):
            result = one(home, "rpc")
            assert result.status is CheckStatus.FAIL and "unreachable" in result.message
        with fake_daemon(home, processes(now, node_rpc="restarting")):
            assert one(home, "rpc").status is CheckStatus.WARN
    finally:
        listening.close()


# --- work in the journal ---------------------------------------------------------------------


def test_overdue_stuck_approvals_incidents(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    now = now_ms()
    j = Journal(home.journal)
    try:
        for name in ("overdue", "stuck_runs", "approvals", "incidents"):
            assert one(home, name).status is CheckStatus.OK, name
        j.routines.sync(
            [
                RoutineState(
                    "late", "h", "k", True, now - DAY, now - 5 * 60_000, now - 5 * 60_000, None
                ),
                RoutineState("soon", "h", "k", True, now - DAY, now - 30_000, now - 30_000, None),
                RoutineState("off", "h", "k", False, now - DAY, now - DAY, now - DAY, None),
            ],
            [],
            now,
        )
        result = one(home, "overdue", now=now)
        assert result.status is CheckStatus.WARN and result.hint == "palyra daemon start"
        assert result.message.startswith("1 routine overdue (late), the oldest by 5 min")
        stuck = running_run("late", now - 10 * 60_000)
        j.runs.insert(stuck)
        result = one(home, "stuck_runs", now=now)  # daemon stopped: left by a crash
        assert result.status is CheckStatus.WARN and "daemon_crashed" in result.message
        j.approvals.request([ApprovalRequest("late", "h", "before_enable")], now)
        result = one(home, "approvals")
        assert result.status is CheckStatus.WARN
        assert result.hint == "palyra routines approve late (all: palyra routines approvals)"
        warning, _ = j.incidents.open(new_ulid(), "process", "executor", "warning", "silent", now)
        result = one(home, "incidents")
        assert result.status is CheckStatus.WARN
        assert (
            result.hint
            == f"palyra incidents show {warning.incident_id} (all: palyra incidents list)"
        )
        critical, _ = j.incidents.open(new_ulid(), "disk", "home", "critical", "2% free", now)
        result = one(home, "incidents")
        assert result.status is CheckStatus.FAIL and "(1 critical)" in result.message
        assert critical.incident_id in (result.hint or "")

        with fake_daemon(home, processes(now)):
            result = one(home, "overdue", now=now)
            assert result.hint and result.hint.startswith("palyra routines show late")
            result = one(home, "stuck_runs", now=now)
            assert result.status is CheckStatus.FAIL and result.repairable
            assert stuck.run_id in result.message
            repaired = one(home, "stuck_runs", now=now, repair=True)
            assert repaired.status is CheckStatus.OK
            assert repaired.repaired == (
                f"released run {stuck.run_id} (late): failed it as heartbeat_lost",
            )
        run = j.runs.get(stuck.run_id)
        assert run is not None and run.status == "failed" and run.error_kind == "heartbeat_lost"
    finally:
        j.close()


# --- pki, devices ----------------------------------------------------------------------------


def test_pki(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    now = now_ms()
    assert one(home, "pki").message == "not configured (created at the first daemon start)"
    load_or_create(home.certs_dir, ["localhost"], now)
    result = one(home, "pki")
    assert result.status is CheckStatus.OK and result.message.startswith("CA valid for 3649 days")
    (home.certs_dir / "ca.key").rename(tmp_path / "ca.key")
    result = one(home, "pki")
    assert result.status is CheckStatus.FAIL and result.message.startswith("CA key missing")
    assert "restore" in (result.hint or "")

    old = make_home(tmp_path / "old")
    load_or_create(old.certs_dir, ["localhost"], now - 3650 * DAY - DAY)  # expired yesterday
    result = one(old, "pki", now=now)
    assert result.status is CheckStatus.FAIL and "the CA certificate expired" in result.message

    ending = make_home(tmp_path / "ending")
    load_or_create(ending.certs_dir, ["localhost"], now - (3650 - 30) * DAY)
    result = one(ending, "pki", now=now)
    assert result.status is CheckStatus.FAIL  # its 90-day server certificate expired long ago
    assert result.message.startswith("the server certificate expired")
    assert "the CA certificate expires in 29 days" in result.details  # less 5 min backdating
    pki = load_or_create(ending.certs_dir, ["localhost"], now - (3650 - 30) * DAY)
    renew_server(pki, ["localhost"], now)  # what a running daemon does: a warning remains
    result = one(ending, "pki", now=now)
    assert result.status is CheckStatus.WARN
    assert result.message == "the CA certificate expires in 29 days"
    assert result.hint == "palyra daemon restart (it reissues it from the same key)"


def test_pki_repair_never_chmods_through_a_symlinked_key(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    load_or_create(home.certs_dir, ["localhost"], now_ms())
    outside = tmp_path / "elsewhere.key"
    outside.write_bytes(b"not ours to change")
    outside.chmod(0o644)
    server_key = home.certs_dir / "server.key"
    server_key.unlink()
    server_key.symlink_to(outside)
    (home.certs_dir / "ca.key").chmod(0o644)
    report = doctor(home, "pki", repair=True)
    repaired = report.checks[0].repaired
    assert any(line.startswith(f"chmod 600 {home.certs_dir / 'ca.key'}") for line in repaired)
    assert stat.S_IMODE((home.certs_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # the symlink was not followed


def _device(device_id: str, expires_ms: int) -> Device:
    return Device(
        device_id,
        f"{device_id}-phone",
        "active",
        f"pk-{device_id}",
        f"c-{device_id}",
        expires_ms,
        1_000,
        0,
    )


def test_devices(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    now = now_ms()
    j = Journal(home.journal)
    try:
        assert one(home, "devices").message == "no paired devices"
        j.devices.add(_device("fine", now + 20 * DAY))
        assert one(home, "devices").status is CheckStatus.OK
        j.devices.add(_device("stale", now + DAY))
        result = one(home, "devices", now=now)
        assert (
            result.status is CheckStatus.WARN
            and "stale-phone (stale, in 24 h 0 min)" in result.message
        )
        window = PairingWindow("w1", "pin", None, False, None, now - 60_000, now + 600_000)
        j.pairing.open_window(window, now - 60_000)
        for i in range(20):
            j.pairing.record_failure("w1", f"10.0.0.{i % 2}", now - 1_000)
        j.pairing.open_window(replace(window, window_id="w2"), now)
        j.pairing.add_request(
            PairingRequest(
                "req-1",
                "w2",
                "dev-x",
                "laptop",
                "pin",
                "10.0.0.9:5",
                "pk",
                b"der",
                "s",
                now,
                now + 600_000,
            )
        )
        result = one(home, "devices", now=now)
        assert (
            "possible PIN guessing: pairing window w1 closed after 20 failed attempts"
            in result.message
        )
        assert "10.0.0.0, 10.0.0.1" in result.message
        assert "1 pairing request waiting: req-1 (laptop)" in result.message
        assert "palyra node approve req-1" in (result.hint or "")
    finally:
        j.close()


# --- system ----------------------------------------------------------------------------------


def _proc(tmp_path: Path, watches: int, instances: int = 128) -> Path:
    d = tmp_path / "proc"
    d.mkdir(exist_ok=True)
    (d / "max_user_watches").write_text(f"{watches}\n")
    (d / "max_user_instances").write_text(f"{instances}\n")
    return d


def _inotify(home: Home, check: InotifyCheck) -> CheckResult:
    (result,) = run_doctor(home, checks=[check]).checks
    return result


def test_inotify(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert _inotify(home, InotifyCheck(platform="darwin")).message == "not applicable (not Linux)"
    result = _inotify(home, InotifyCheck(_proc(tmp_path, 524_288), platform="linux"))
    assert result.status is CheckStatus.OK
    result = _inotify(home, InotifyCheck(_proc(tmp_path, 4096, 8), platform="linux"))
    assert result.status is CheckStatus.WARN
    assert "max_user_watches is 4096 (below 8192)" in result.message
    assert (result.hint or "").startswith("sudo sysctl fs.inotify.max_user_watches=524288")
    tree = tmp_path / "tree"
    for i in range(30):
        (tree / f"d{i}" / "sub").mkdir(parents=True)
    write_defs(
        home,
        [{"id": "w", "trigger": {"kind": "file_watch", "paths": [str(tree)], "recursive": True},
          "action": {"kind": "command", "argv": ["true"]}}],
    )  # fmt: skip
    result = _inotify(home, InotifyCheck(_proc(tmp_path, 100_000), platform="linux"))
    assert result.status is CheckStatus.OK and "61 folders watched" in result.message
    result = _inotify(home, InotifyCheck(_proc(tmp_path, 40), platform="linux"))
    assert result.status is CheckStatus.WARN and "watches fail" in result.message


def test_agent_runner(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert one(home, "agent_runner").message == "no prompt routines"
    write_defs(
        home,
        [
            {
                "id": "ask",
                "trigger": {"kind": "manual"},
                "action": {"kind": "prompt", "prompt": "hi"},
            }
        ],
    )
    result = one(home, "agent_runner")
    assert result.status is CheckStatus.FAIL and "agent_runner_not_configured" in result.message
    assert "[agent]" in (result.hint or "") and str(home.config) in (result.hint or "")
    home.config.write_text('[agent]\ncommand = ["/nonexistent/agent"]\n')
    result = one(home, "agent_runner")
    assert result.status is CheckStatus.FAIL and "not found" in result.message
    home.config.write_text('[agent]\ncommand = ["cat"]\n')
    result = one(home, "agent_runner")
    assert result.status is CheckStatus.OK and result.message.endswith("cat")


@pytest.mark.parametrize(
    ("free", "total", "status"),
    [
        (400 * 10**6, 10**12, CheckStatus.FAIL),  # under 500 MB
        (4 * 10**9, 100 * 10**9, CheckStatus.FAIL),  # under 5 %
        (900 * 10**6, 2 * 10**9, CheckStatus.WARN),  # under 1 GB
        (8 * 10**9, 100 * 10**9, CheckStatus.WARN),  # under 10 %
        (50 * 10**9, 100 * 10**9, CheckStatus.OK),
    ],
)
def test_disk_thresholds(free: int, total: int, status: CheckStatus) -> None:
    assert disk_status(free, total) is status


def test_disk_reads_the_home_file_system(tmp_path: Path) -> None:
    result = one(make_home(tmp_path), "disk")
    assert "free" in result.message and str(tmp_path) in result.message


def test_report_summary_counts() -> None:
    report = DoctorReport((ok("a", "fine"),))
    assert report.summary() == "1 check: 1 ok" and report.ok and report.exit_code == 0
