"""The ``palyra`` CLI under a hostile operator (issue 9, items 8a, 9, 10 and 15).

Real ``palyra`` processes against a temp home, as the operator runs them. What is pinned:
a command either succeeds or changes nothing; every failure — OS errors included — is one
stderr line ``error: <what> (<hint>)`` with exit 1 (failed) or 2 (invalid input), never a
traceback; a command that needs no home does not create one.

The tests run as root here, and root ignores permission bits. So the read-only cases run the
child with CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER dropped from its bounding set
(after exec it then obeys the bits like any user; a probe checks that it really does), and
the rest use failures no privilege overrides: a file where a directory belongs (ENOTDIR,
EEXIST) and an injected ENOSPC.
"""

from __future__ import annotations

import ctypes
import errno
import os
import plistlib
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from palyra_cli.app import cli as palyra_app
from palyrad.ops.service_files import launchd_plist, systemd_unit
from palyrad.runtime.home import Home
from routines.errors import storage_error
from tests.daemon_harness import Daemon, shell, wait_until

pytestmark = pytest.mark.timeout(120)

PALYRA = Path(sys.executable).parent / "palyra"
PALYRAD = Path(sys.executable).parent / "palyrad"


@dataclass
class Out:
    code: int
    stdout: str
    stderr: str

    def ok(self) -> Out:
        assert self.code == 0, f"exit {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"
        return self

    def json(self) -> Any:
        return orjson.loads(self.stdout)


def run(
    home: Path | str | None,
    *args: str,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    exe: Path = PALYRA,
) -> Out:
    """The real console script, ``--home`` first when given."""
    argv = [str(exe), *(["--home", str(home)] if home is not None else []), *args]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )
    return Out(proc.returncode, proc.stdout, proc.stderr)


def assert_error(out: Out, code: int, *fragments: str) -> str:
    """Exit ``code``, nothing on stdout, one ``error: what (hint)`` line and no traceback."""
    assert out.code == code, f"exit {out.code} != {code}\n{out.stdout}\n{out.stderr}"
    assert out.stdout == "", out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    stray = [ln for ln in out.stderr.splitlines() if not ln.startswith(("error: ", "note: "))]
    assert stray == [], out.stderr
    assert re.fullmatch(r"error: \S.* \(\S[^\n]*\)", errors[0]), errors[0]
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def cron_add(home: Path, name: str = "Job", *extra: str, **kw: Any) -> Out:
    return run(home, "cron", "add", name, "--schedule", "hourly", "--command", "true", *extra, **kw)


def definitions(home: Path) -> bytes:
    return (home / "routines" / "definitions.json").read_bytes()


def manual(rid: str, action: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "trigger": {"kind": "manual"},
        "action": action or {"kind": "command", "argv": ["true"]},
        **extra,
    }


def upsert(home: Path, obj: dict[str, Any]) -> None:
    path = home.parent / f"{obj['id']}.json"
    path.write_bytes(orjson.dumps(obj))
    run(home, "routines", "upsert", "--file", str(path)).ok()


def status_of(daemon: Daemon, run_id: str) -> str | None:
    run = daemon.journal.runs.get(run_id)
    return None if run is None else run.status


def run_now(home: Path, rid: str, *extra: str) -> str:
    run_id: str = run(home, "routines", "run-now", rid, "--json", *extra).ok().json()["run_id"]
    return run_id


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~``, $PALYRA_HOME and the working directory are the test's directory: a fallback to
    ``~/.palyra`` (or a blank home taken as a relative path) shows up there."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("PALYRA_HOME", str(tmp_path / "env-home"))
    monkeypatch.chdir(tmp_path)  # a blank home read as a relative path lands here


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# --- 8a: a failed command changes nothing --------------------------------------------------


def _break_journal(home: Path) -> None:
    run(home, "routines", "list").ok()  # creates the home and its journal
    (home / "journal.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    for side in ("journal.sqlite3-wal", "journal.sqlite3-shm"):
        (home / side).unlink(missing_ok=True)


def test_cron_add_with_a_corrupt_journal_writes_nothing(home: Path) -> None:
    cron_add(home, "D").ok()
    _break_journal(home)
    before = definitions(home)
    for _ in range(2):  # once wrote "d-2", then "d-3", while failing
        assert_error(cron_add(home, "D"), 1, "journal.sqlite3", "move it aside")
        assert definitions(home) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["cron", "add", "New", "--schedule", "hourly", "--command", "true"],
        ["routines", "upsert", "--file", "ROUTINE"],
        ["routines", "disable", "keep"],
        ["cron", "pause", "keep"],
        ["routines", "delete", "keep"],
    ],
)
def test_every_definitions_edit_checks_the_journal_before_writing(
    home: Path, argv: list[str]
) -> None:
    upsert(home, manual("keep"))
    routine_file = home.parent / "new.json"
    routine_file.write_bytes(orjson.dumps(manual("new")))
    _break_journal(home)
    before = definitions(home)
    argv = [str(routine_file) if a == "ROUTINE" else a for a in argv]
    assert_error(run(home, *argv), 1, "journal.sqlite3")
    assert definitions(home) == before


# --- 9: OS errors are one line with a hint, never a traceback ------------------------------


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3


def _obey_permission_bits() -> None:
    """preexec_fn: after exec the child obeys file permission bits, also as root."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Make directories read-only (``chmod a-w``) for a child run with
    ``_obey_permission_bits``; proves first that such a child cannot write there."""
    made: list[Path] = []

    def make(*paths: Path) -> None:
        for path in paths:
            for p in [path, *path.rglob("*")]:
                if p.is_dir() or p.is_file():
                    p.chmod(p.stat().st_mode & ~0o222)
                    made.append(p)
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(paths[0] / 'probe')!r}, 'w')"],
            preexec_fn=_obey_permission_bits,
            capture_output=True,
            text=True,
        )
        if "prctl" in probe.stderr:
            pytest.skip(f"cannot drop capabilities here: {probe.stderr.strip()}")
        assert probe.returncode != 0 and "PermissionError" in probe.stderr, (
            "the child can still write: the test would not exercise the error path"
        )

    yield make
    for p in made:
        p.chmod(p.stat().st_mode | 0o200)


def test_read_only_home_every_command_fails_in_one_line(
    home: Path, read_only: Callable[..., None]
) -> None:
    upsert(home, manual("job"))
    rid = run_now(home, "job")
    before = definitions(home)
    read_only(home)
    for argv, code in [
        (["cron", "add", "X", "--schedule", "hourly", "--command", "true"], 1),
        (["routines", "disable", "job"], 1),
        (["routines", "run-now", "job"], 1),
        (["events", "emit", "e"], 1),
        (["routines", "cancel", rid], 1),
        (["daemon", "start", "--timeout", "10"], 1),
    ]:
        out = run(home, *argv, preexec_fn=_obey_permission_bits)
        assert_error(out, code, str(home))
    assert definitions(home) == before


def test_read_only_routines_dir_names_the_definitions_file(
    home: Path, read_only: Callable[..., None]
) -> None:
    upsert(home, manual("job"))
    before = definitions(home)
    read_only(home / "routines")
    for argv in (
        ["cron", "add", "X", "--schedule", "hourly", "--command", "true"],
        ["routines", "disable", "job"],
    ):
        line = assert_error(
            run(home, *argv, preexec_fn=_obey_permission_bits),
            1,
            "routines/",
            "permission denied",
            "check the owner and permissions",
        )
        assert ".tmp" not in line  # the file being written, not a temporary name
    assert definitions(home) == before


def test_read_only_run_dir_daemon_start_names_its_stderr_file(
    home: Path, read_only: Callable[..., None]
) -> None:
    run(home, "routines", "list").ok()
    read_only(home / "run")
    assert_error(
        run(home, "daemon", "start", "--timeout", "10", preexec_fn=_obey_permission_bits),
        1,
        "palyrad did not start",
        "palyrad.stderr",
        "permission denied",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["cron", "add", "X", "--schedule", "hourly", "--command", "true"],
        ["routines", "list"],
        ["routines", "run-now", "x"],
        ["events", "emit", "e"],
        ["daemon", "start", "--timeout", "10"],
    ],
)
def test_a_file_where_the_home_needs_a_directory(tmp_path: Path, argv: list[str]) -> None:
    """Fails for root too: ENOTDIR (the home under a file) and EEXIST (``routines`` is a file)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_error(run(blocker / "home", *argv), 1, str(blocker / "home"), "not a directory")
    home = tmp_path / "home"
    home.mkdir()
    (home / "routines").write_text("")
    assert_error(run(home, *argv), 1, str(home / "routines"), "move it aside")


def test_a_full_disk_while_writing_definitions_is_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC from the write (no file name on the OSError): the definitions file is named."""
    runner = CliRunner()
    first = runner.invoke(palyra_app, ["--home", str(home), "routines", "list"])
    assert first.exit_code == 0, first.output

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    result = runner.invoke(
        palyra_app,
        ["--home", str(home), "cron", "add", "X", "--schedule", "hourly", "--command", "true"],
        catch_exceptions=False,
    )
    out = Out(result.exit_code, result.stdout, result.stderr)
    assert_error(out, 1, "definitions.json", "no space left on device", "free some space")


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (errno.EACCES, "permissions"),
        (errno.EPERM, "permissions"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "free some space"),
        (errno.EDQUOT, "free some space"),
        (errno.ENOTDIR, "is a file, not a directory"),
        (errno.EEXIST, "a file is where a directory belongs"),
        (errno.EIO, "I/O error"),
        (errno.ELOOP, "check the path"),
    ],
)
def test_os_error_hints(code: int, fragment: str) -> None:
    err = storage_error(OSError(code, os.strerror(code), "/h/x"), "doing it")
    assert str(err) == f"doing it: /h/x: {os.strerror(code)[:1].lower()}{os.strerror(code)[1:]}"
    assert err.hint is not None and fragment in err.hint and err.exit_code == 1


# --- 10: a blank home is invalid input; commands that need no home create none -------------


@pytest.mark.parametrize("blank", ["", "  "])
@pytest.mark.parametrize(
    "argv",
    [
        ["routines", "list"],
        ["cron", "add", "X", "--schedule", "hourly", "--command", "true"],
        ["routines", "run-now", "x"],  # the run-now shortcut hands a blank home to click
    ],
)
def test_blank_home_option_is_exit_2(tmp_path: Path, blank: str, argv: list[str]) -> None:
    assert_error(run(blank, *argv), 2, "--home is empty")
    assert list(tmp_path.iterdir()) == []  # not ~/.palyra, $PALYRA_HOME or ./"  "


@pytest.mark.parametrize("blank", ["", " "])
def test_blank_palyra_home_env_is_exit_2(tmp_path: Path, blank: str) -> None:
    env = {"PALYRA_HOME": blank}
    assert_error(run(None, "routines", "list", env=env), 2, "$PALYRA_HOME is empty")
    assert_error(run(None, "routines", "run-now", "x", env=env), 2, "$PALYRA_HOME is empty")
    assert_error(run(None, env=env, exe=PALYRAD), 2, "$PALYRA_HOME is empty")
    assert_error(run("", exe=PALYRAD), 2, "--home is empty")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["routines", "schedule-preview", "hourly", "--count", "1"],
        ["daemon", "install-service", "--print"],
        ["daemon", "status"],
        ["daemon", "stop"],
    ],
)
def test_commands_that_need_no_home_create_none(home: Path, argv: list[str]) -> None:
    run(home, *argv).ok()
    assert not home.exists()


# --- 15: install-service quoting -----------------------------------------------------------


AWKWARD = 'my home/with "quotes" %h $HOME back\\slash'


def _systemd_argv(unit: str) -> list[str]:
    """ExecStart= as systemd reads it: %% and $$ unescaped, then words split, quotes and
    backslash escapes removed (the subset of systemd's rules the unit uses)."""
    (line,) = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    value = line.removeprefix("ExecStart=")
    assert re.search(r"(?<!%)%(?!%)", value.replace("%%", "")) is None
    assert re.search(r"(?<!\$)\$(?!\$)", value.replace("$$", "")) is None
    return shlex.split(value.replace("%%", "%").replace("$$", "$"))


def test_install_service_quotes_the_home_in_exec_start(tmp_path: Path) -> None:
    home = tmp_path / AWKWARD
    out = run(home, "daemon", "install-service", "--print").ok()
    argv = _systemd_argv(out.stdout)
    assert argv[argv.index("--home") + 1] == str(home)
    assert argv[-1] == "--no-log-stderr"
    assert not home.exists()


def test_service_files_keep_any_home_path_intact(tmp_path: Path) -> None:
    home = Home(tmp_path / "a & b <c> 'd'" / AWKWARD)
    argv = _systemd_argv(systemd_unit(home, user=True))
    assert argv[argv.index("--home") + 1] == str(home.root)
    plist = plistlib.loads(launchd_plist(home).encode())
    args = plist["ProgramArguments"]
    assert args[args.index("--home") + 1] == str(home.root)


# --- 15: --payload: one check, before anything is recorded --------------------------------


BIG = orjson.dumps({"data": "x" * (64 * 1024)}).decode()


def _payload_argvs(payload: str) -> list[list[str]]:
    return [
        ["routines", "run-now", "job", "--payload", payload],
        ["cron", "run-now", "job", "--payload", payload],
        ["events", "emit", "e", "--payload", payload],
        ["hooks", "fire", "h", "--payload", payload],
    ]


def _recorded(home: Path) -> tuple[int, int]:
    from palyrad.journal import Journal

    journal = Journal(home / "journal.sqlite3")
    try:
        return len(journal.runs.for_routine("job")), len(journal.events.unconsumed(1000))
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("payload", "fragments"),
    [
        (BIG, (f"--payload is {len(BIG)} bytes", "limit is 65536 bytes", "in the payload")),
        ("{bad", ("--payload is not valid JSON",)),
        ("NaN", ("--payload is not valid JSON",)),
    ],
)
def test_payload_is_checked_before_anything_is_recorded(
    home: Path, payload: str, fragments: tuple[str, ...]
) -> None:
    upsert(home, manual("job"))
    for argv in _payload_argvs(payload):
        line = assert_error(run(home, *argv), 2, *fragments)
        assert "pass a path to a file instead" not in line  # was said, yet refused
    assert _recorded(home) == (0, 0)


def test_payload_limit_with_the_daemon_running(daemon: Daemon) -> None:
    daemon.write_definitions([manual("job")])
    daemon.start()
    for argv in _payload_argvs(BIG):
        assert_error(run(daemon.root, *argv), 2, "limit is 65536 bytes", "in the payload")
    assert _recorded(daemon.root) == (0, 0)
    exactly = orjson.dumps("y" * (64 * 1024 - 2)).decode()
    assert len(exactly.encode()) == 64 * 1024
    run(daemon.root, "routines", "run-now", "job", "--payload", exactly).ok()


# --- 15: empty zone, names, ids ------------------------------------------------------------


def test_empty_tz_is_exit_2(home: Path) -> None:
    assert_error(cron_add(home, "X", "--tz", ""), 2, "time zone", "empty")
    assert not (home / "routines" / "definitions.json").exists()
    assert_error(run(home, "routines", "schedule-preview", "hourly", "--tz", ""), 2, "empty")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["events", "emit", ""], "the event name is empty"),
        (["events", "emit", "operator."], "the event name is empty"),
        (["hooks", "fire", ""], "the hook id is empty"),
        (["hooks", "fire", "h", "--event", ""], "--event is empty"),
    ],
)
def test_empty_event_and_hook_names_are_exit_2(home: Path, argv: list[str], fragment: str) -> None:
    assert_error(run(home, *argv), 2, fragment)
    assert _recorded(home)[1] == 0


def test_logs_before_must_be_a_run_of_the_routine(home: Path) -> None:
    upsert(home, manual("job"))
    upsert(home, manual("other"))
    ids = [run_now(home, "job") for _ in range(3)]
    foreign = run_now(home, "other")
    assert_error(run(home, "routines", "logs", "job", "--before", "UNKNOWN"), 2, "not a run id")
    assert_error(
        run(home, "routines", "logs", "job", "--before", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        1,
        "no run 01ARZ3NDEKTSV4RRFFQ69G5FAV of routine 'job'",
    )
    assert_error(run(home, "routines", "logs", "job", "--before", foreign), 1, "'other'")
    page = run(home, "routines", "logs", "job", "--before", ids[2].lower(), "--json").ok()
    assert [r["run_id"] for r in page.json()["runs"]] == ids[1::-1]


def test_schedule_preview_validates_the_id(home: Path) -> None:
    base = ["routines", "schedule-preview", "hourly", "--jitter-ms", "5000", "--json"]
    assert_error(run(home, *base, "--id", "bad id"), 2, 'invalid id "bad id"', 'try "bad-id"')
    assert_error(run(home, *base, "--id", "Backup"), 2, "invalid id")
    assert len(run(home, *base, "--id", "backup").ok().json()["fires"]) == 5


# --- 15: cancel, runs show --output, messages ------------------------------------------------


def test_cancel_decides_from_the_record_whatever_the_daemon_does(daemon: Daemon) -> None:
    """SPEC §4.2: cancel is for active runs. An active run: exit 0 (cancelled, or cancelling
    while the executor stops it); already cancelled: exit 0 and a note (what was asked for
    holds); ended otherwise or unknown: exit 1. The same with the daemon running or stopped."""
    daemon.write_definitions(
        [manual("quick"), manual("slow", shell("sleep 30"), concurrency="forbid")]
    )
    home = daemon.root
    queued = run_now(home, "quick")  # daemon stopped: pending until it starts
    out = run(home, "routines", "cancel", queued).ok()
    assert out.stdout == f"cancelled {queued}\n"
    daemon.start()
    done = run_now(home, "quick")
    wait_until(lambda: status_of(daemon, done) == "succeeded")
    slow = run_now(home, "slow")
    wait_until(lambda: status_of(daemon, slow) == "running")
    skipped = run(home, "routines", "run-now", "slow", "--json").ok().json()
    assert skipped["status"] == "skipped"
    assert run(home, "routines", "cancel", slow).ok().stdout == f"cancelling {slow}\n"
    wait_until(lambda: status_of(daemon, slow) == "cancelled")

    def check() -> None:
        for rid in (queued, slow):
            out = run(home, "routines", "cancel", rid).ok()
            assert out.stdout == f"cancelled {rid}\n"
            assert out.stderr == f"note: {rid} was already cancelled\n"
        assert_error(run(home, "routines", "cancel", done), 1, "already ended (succeeded)")
        assert_error(
            run(home, "routines", "cancel", skipped["run_id"]), 1, "already ended (skipped)"
        )
        assert_error(run(home, "routines", "cancel", "01ARZ3NDEKTSV4RRFFQ69G5FAV"), 1, "no run")

    check()
    daemon.stop()
    check()


def test_runs_show_output_says_why_there_is_none(daemon: Daemon) -> None:
    """A run that has not started: exit 0, nothing on stdout, a note. A run that never
    started (cancelled while pending, skipped) or whose log is gone: exit 1 saying so."""
    daemon.write_definitions(
        [manual("echo", shell("echo hello")), manual("slow", shell("sleep 30"))]
    )
    home = daemon.root
    pending = run_now(home, "echo")
    out = run(home, "runs", "show", pending, "--output").ok()
    assert out.stdout == "" and out.stderr.startswith(f"note: run {pending} has not started yet")
    cancelled = run_now(home, "echo")
    run(home, "routines", "cancel", cancelled).ok()
    for flag in ("--output", "--follow"):
        assert_error(
            run(home, "runs", "show", cancelled, flag), 1, "never started (cancelled)", "see why"
        )
    daemon.start()
    wait_until(lambda: status_of(daemon, pending) == "succeeded")
    assert run(home, "runs", "show", pending, "--output").ok().stdout == "hello\n"
    slow = run_now(home, "slow")
    wait_until(lambda: status_of(daemon, slow) == "running")
    skipped = run(home, "routines", "run-now", "slow", "--json").ok().json()["run_id"]
    assert_error(
        run(home, "runs", "show", skipped, "--output"),
        1,
        "never started (skipped: concurrency_forbid)",
    )
    run(home, "routines", "cancel", slow).ok()
    log = Path(run(home, "runs", "show", pending, "--json").ok().json()["log_path"])
    log.unlink()
    for flag in ("--output", "--follow"):
        assert_error(
            run(home, "runs", "show", pending, flag), 1, "is gone", str(log), "output_tail"
        )


def test_confirmations_read_the_same_way(home: Path) -> None:
    """One form for what a command did: a lower-case past-tense verb, then what it acted on."""
    upsert_file = home.parent / "job.json"
    upsert_file.write_bytes(orjson.dumps(manual("job")))
    lines = [
        cron_add(home, "Nightly").ok().stdout.splitlines()[0],
        run(home, "routines", "upsert", "--file", str(upsert_file)).ok().stdout.splitlines()[0],
        run(home, "routines", "upsert", "--file", str(upsert_file)).ok().stdout.splitlines()[0],
        run(home, "routines", "disable", "nightly").ok().stdout.strip(),
        run(home, "cron", "resume", "nightly").ok().stdout.strip(),
        run(home, "events", "emit", "done").ok().stdout.strip(),
        run(home, "hooks", "fire", "deploy").ok().stdout.strip(),
        run(home, "routines", "cancel", run_now(home, "job")).ok().stdout.strip(),
        run(home, "cron", "delete", "nightly").ok().stdout.strip(),
    ]
    assert [ln.split()[0] for ln in lines] == [
        "added",
        "added",
        "replaced",
        "disabled",
        "enabled",
        "emitted",
        "fired",
        "cancelled",
        "deleted",
    ]
    assert lines[3] == "disabled nightly" and lines[-1] == "deleted nightly"
