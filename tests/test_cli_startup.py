"""The CLI stays cheap to start: ``routines run-now`` has 100 ms, process start included.

No timing thresholds: each test runs the CLI in a fresh interpreter and checks which modules
it loaded, so an eager import of a heavy module (the definitions model and validator, the cron
engine, the daemon's status types, ...) is caught wherever it creeps back in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from palyra_cli.fast_path import parse_run_now
from palyrad.runtime.home import Home
from tests.daemon_harness import Daemon, routine, shell

# Run the CLI as the console script does, then report the loaded modules on stderr.
_CHILD = """
import sys
from palyra_cli.main import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print("MODULES " + " ".join(sorted(sys.modules)), file=sys.stderr)
raise SystemExit(code)
"""

# Never needed to start the CLI or print help (~100 ms without cached bytecode).
LIBRARY_PREFIXES = ("palyrad", "routines")
HEAVY_THIRD_PARTY = {"orjson", "sqlite3", "zoneinfo", "tomllib", "cronsim", "secrets", "hashlib"}

# Not needed by run-now when the daemon has applied the file on disk.
RUN_NOW_NEVER = {
    "routines.model",
    "routines.validate",
    "routines.definitions_file",
    "routines.jsonpos",
    "routines.cron",
    "routines.schedules",
    "routines.phrases",
    "routines.walltime",
    "cronsim",
    "palyrad.ops.edits",
    "palyrad.runtime.config",
    "palyrad.runtime.status",
    "palyrad.ops.routine_views",
    "palyrad.ops.approvals",
    "zoneinfo",
    "tomllib",
    "secrets",
    "difflib",
}


def _loaded(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PALYRA_HOME"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env
    )
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    return set(line.split()[1:]), proc


def _library(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if m.split(".")[0] in LIBRARY_PREFIXES or m in HEAVY_THIRD_PARTY
    )


def test_importing_the_cli_loads_no_library() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import palyra_cli.main, sys; print(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert _library(set(proc.stdout.split())) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["routines", "--help"],
        ["cron", "--help"],
        ["daemon", "--help"],
        ["node", "--help"],
    ],
)
def test_help_loads_no_library_and_lists_every_command(args: list[str]) -> None:
    modules, proc = _loaded(*args)
    assert _library(modules) == []
    assert proc.returncode == 0
    if args == ["--help"]:
        for name in ("cron", "daemon", "events", "hooks", "node", "routines", "runs"):
            assert f"  {name} " in proc.stdout
        assert "Define, inspect and trigger routines." in proc.stdout
    if args == ["routines", "--help"]:
        for name in ("approvals", "approve", "run-now", "schedule-preview", "validate"):
            assert f"  {name} " in proc.stdout
    if args == ["node", "--help"]:
        for name in ("pair-code", "pending", "approve", "reject", "list", "revoke", "remove"):
            assert f"  {name} " in proc.stdout


def test_a_command_loads_only_its_own_group(tmp_path: Path) -> None:
    modules, proc = _loaded("--home", str(tmp_path), "routines", "approvals", "--json")
    assert proc.returncode == 0, proc.stderr
    assert not {"palyra_cli.daemon_cmds", "palyra_cli.run_cmds"} & modules


def test_run_now_on_an_applied_file_skips_the_definitions(daemon: Daemon) -> None:
    daemon.write_definitions([routine("manual", {"kind": "manual"}, shell("true"))])
    daemon.start()
    modules, proc = _loaded("--home", str(daemon.root), "routines", "run-now", "manual", "--json")
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["status"] in ("pending", "running", "succeeded")
    assert sorted(RUN_NOW_NEVER & modules) == []
    assert "palyrad.runtime.control_client" in modules  # the test did reach run-now
    # Served by palyra_cli.fast_path through the daemon's socket: no click, no SQLite, no
    # journal, no dataclasses (inspect), no orjson, not even typing.
    heavy = {"click", "sqlite3", "palyrad.journal", "dataclasses", "orjson", "typing", "logging"}
    assert sorted(heavy & modules) == []


def test_run_now_shortcut_hands_errors_to_click_before_recording(daemon: Daemon) -> None:
    daemon.write_definitions([routine("manual", {"kind": "manual"}, shell("true"))])
    daemon.start()
    modules, proc = _loaded("--home", str(daemon.root), "routines", "run-now", "nope", "--json")
    assert proc.returncode == 1 and "no routine 'nope'" in proc.stderr
    assert "click" in modules
    modules, proc = _loaded(
        "--home", str(daemon.root), "routines", "run-now", "manual", "--payload", "{bad"
    )
    assert proc.returncode == 2 and "--payload is not valid JSON" in proc.stderr
    assert daemon.runs("manual") == [] and daemon.runs("nope") == []


def test_run_now_still_validates_when_the_daemon_is_stopped(tmp_path: Path) -> None:
    home = Home.at(tmp_path / "home").ensure()
    home.definitions.write_bytes(
        orjson.dumps(
            {
                "schema_version": 1,
                "routines": [routine("manual", {"kind": "manual"}, shell("true"))],
            }
        )
    )
    modules, proc = _loaded("--home", str(home.root), "routines", "run-now", "manual", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "routines.validate" in modules
    assert "palyrad is not running" in proc.stderr
    assert "click" in modules  # no daemon: the click command handles it


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["routines", "run-now", "r"], (None, "r", False, None)),
        (["--home", "/h", "routines", "run-now", "r", "--json"], ("/h", "r", True, None)),
        (["routines", "run-now", "r", "--home=/h", "--payload", "{}"], ("/h", "r", False, "{}")),
        (["routines", "run-now", "r", "--payload={}", "--json"], (None, "r", True, "{}")),
        (["routines", "run-now"], None),
        (["routines", "run-now", "--help"], None),
        (["routines", "run-now", "r", "--help"], None),
        (["routines", "run-now", "r", "extra"], None),
        (["routines", "run-now", "r", "--payload"], None),
        (["--json", "routines", "run-now", "r"], None),  # click rejects --json there
        (["cron", "run-now", "r"], None),
        (["routines", "show", "r"], None),
        ([], None),
    ],
)
def test_run_now_shortcut_recognises_only_its_own_shape(
    argv: list[str], expected: tuple[str | None, str, bool, str | None] | None
) -> None:
    assert parse_run_now(argv) == expected
