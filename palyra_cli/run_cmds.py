"""``palyra runs show``: one run, its captured output, or a live follow of it.

Imported by ``palyra --help``: palyrad.domain.runs is imported by the command itself.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from palyra_cli.common import emit_json, fail, home_option, json_option, note, with_journal

if TYPE_CHECKING:
    from palyrad.domain.runs import Run
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home

FOLLOW_POLL_S = 0.1


@click.group("runs")
@home_option
def runs_group() -> None:
    """Inspect runs."""


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


@runs_group.command("show")
@click.argument("run_id")
@click.option("--output", is_flag=True, help="Print the run's captured output.")
@click.option("--follow", is_flag=True, help="Stream the output until the run ends.")
@json_option
@home_option
@with_journal
def show_cmd(
    run_id: str, output: bool, follow: bool, as_json: bool, home: Home, journal: Journal
) -> None:
    """One run's record (and with --output/--follow, what it printed)."""
    from palyrad.domain.runs import run_to_json
    from palyrad.ops.run_history import log_path as run_log_path
    from palyrad.ops.run_history import read_output

    run = journal.runs.get(run_id)
    if run is None:
        fail(f"no run {run_id!r}", "see: palyra routines logs ROUTINE_ID")
    log_path = run_log_path(home, run)
    if follow and not run.is_active:  # ended: all there is, or why there is none
        sys.stdout.buffer.write(read_output(home, run).data)
        sys.stdout.buffer.flush()
        return
    if follow:
        offset = 0
        current: Run | None = run
        while True:
            data, offset = _read_from(log_path, offset)
            if data:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            if current is None or not current.is_active:
                data, offset = _read_from(log_path, offset)
                sys.stdout.buffer.write(data)
                break
            time.sleep(FOLLOW_POLL_S)
            current = journal.runs.get(run_id)
        sys.stdout.buffer.flush()
        return
    if as_json:
        body = run_to_json(run)
        if output:
            data, _ = _read_from(log_path, 0)
            body["output"] = data.decode("utf-8", errors="replace")
        emit_json(body)
        return
    if output:
        captured = read_output(home, run)  # NoOutput: exit 1 saying why there is none
        if captured.note:
            note(captured.note)
        sys.stdout.buffer.write(captured.data)
        return
    for key, value in run_to_json(run).items():
        if value is not None and not key.endswith("_unix_ms"):
            click.echo(f"{key:<16} {value}")
