"""A briefly missing definitions.json does not empty the daemon (issue 9 item 5): the last
good definitions keep running and every schedule keeps its place; an empty ``routines`` list
is how the operator removes them all."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from palyrad.journal import STATE_DEFINITIONS_ERROR
from tests.daemon_harness import Daemon, palyra, routine, shell, wait_until

pytestmark = pytest.mark.timeout(90)

UNANCHORED = {"kind": "schedule", "schedule": {"type": "every", "interval_ms": 3_600_000}}


def _error(d: Daemon) -> str:
    raw = d.journal.state.get(STATE_DEFINITIONS_ERROR)
    return "" if raw is None else " ".join(orjson.loads(raw)["errors"])


def test_a_missing_file_keeps_the_last_good_definitions(daemon: Daemon) -> None:
    daemon.write_definitions([routine("hourly", UNANCHORED, shell("true"))])
    daemon.start()
    before = daemon.journal.routines.get("hourly")
    assert before is not None
    path = daemon.home.definitions
    os.rename(path, path.with_name("away.json"))
    wait_until(lambda: "the file is missing" in _error(daemon))
    assert daemon.journal.routines.get("hourly") == before  # nothing deleted or re-anchored
    os.rename(path.with_name("away.json"), path)
    wait_until(lambda: _error(daemon) == "")
    assert daemon.journal.routines.get("hourly") == before  # same anchor, same next fire
    listed = orjson.loads(palyra(daemon.root, "routines", "list", "--json").stdout)
    assert [r["id"] for r in listed["routines"]] == ["hourly"]
    # an explicit empty list does remove them
    daemon.write_definitions([])
    wait_until(lambda: daemon.journal.routines.get("hourly") is None)


def test_a_missing_file_at_start_runs_the_last_good_definitions(daemon: Daemon) -> None:
    daemon.write_definitions([routine("hourly", UNANCHORED, shell("true"))])
    daemon.start()
    wait_until(lambda: (daemon.home.routines_dir / ".definitions.last-good.json").exists())
    daemon.stop()
    daemon.home.definitions.unlink()
    daemon.start()
    assert daemon.journal.routines.get("hourly") is not None
    assert "the file is missing" in _error(daemon)


def test_read_commands_on_a_broken_file_show_what_the_daemon_runs(daemon: Daemon) -> None:
    """Issue 9 item 14: list/show/cron list/cron status show the applied definitions with a
    warning naming the first error, instead of exit 2."""
    daemon.write_definitions([routine("hourly", UNANCHORED, shell("true"))])
    daemon.start()
    wait_until(lambda: (daemon.home.routines_dir / ".definitions.last-good.json").exists())
    daemon.write_raw(b'{"schema_version": 1, "routines": [ {"id": "hourly",,, ]}')
    for args in (["routines", "list"], ["routines", "show", "hourly"], ["cron", "list"]):
        proc = palyra(daemon.root, *args)
        assert "hourly" in proc.stdout, args
        assert proc.stderr.startswith("warning: routines/definitions.json:1:"), proc.stderr
        assert "showing the definitions palyrad last applied" in proc.stderr
    status = palyra(daemon.root, "cron", "status", "--json")
    assert orjson.loads(status.stdout) and "warning:" in status.stderr
    # edits still refuse the broken file
    assert palyra(daemon.root, "routines", "disable", "hourly", check=False).returncode == 2


def test_an_edit_while_the_file_is_missing_is_refused(daemon: Daemon) -> None:
    """An edit from "no routines" would write a file that drops every routine the daemon
    still runs; it is refused until the file is restored."""
    daemon.write_definitions([routine("hourly", UNANCHORED, shell("true"))])
    daemon.start()
    wait_until(lambda: (daemon.home.routines_dir / ".definitions.last-good.json").exists())
    daemon.home.definitions.unlink()
    proc = palyra(
        daemon.root,
        "cron",
        "add",
        "c",
        "--schedule",
        "every 1h",
        "--command",
        "true",
        check=False,
    )
    assert proc.returncode == 2 and "is missing" in proc.stderr and "cp " in proc.stderr
    assert not daemon.home.definitions.exists()
    assert daemon.journal.routines.get("hourly") is not None


def test_a_fifo_at_palyra_toml_is_refused_without_blocking(tmp_path: Path) -> None:
    from palyrad.runtime.config import ConfigError, load_config

    fifo = tmp_path / "palyra.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="FIFO"):
        load_config(fifo)
