"""``palyra routines``: the group, and its commands that only read — validate,
schedule-preview, list, show, logs.

The group lists commands defined elsewhere too: upsert/enable/disable/delete
(routine_edit_cmds), run-now/cancel/approve/approvals (trigger_cmds). What they share with these
commands (the home's definitions, the routine views and how they print) is in routine_common,
which imports none of the command modules, so there is no import cycle between them. The
``cron`` group (cron_cmds) aliases some of these commands.

The library is imported inside the commands and helpers that use it, not here: this module
is imported by every ``palyra routines``/``cron`` invocation and by ``palyra --help``, and
the definitions validator, cron engine and model (routines.validate, .cron, .model, ~60 ms
without cached bytecode) are needed by some commands only — ``run-now`` on a daemon that
has applied the definitions needs none of them. The same holds for every module this one
imports (click and palyra_cli modules only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from palyra_cli.common import (
    emit_json,
    fail,
    fail_hinted,
    get_home,
    home_option,
    json_option,
    with_journal,
)
from palyra_cli.routine_common import display_name, list_routines, load_views, print_view, zone_hint
from palyra_cli.routine_edit_cmds import delete_cmd, disable_cmd, enable_cmd, upsert_cmd
from palyra_cli.trigger_cmds import approvals_cmd, approve_cmd, cancel_cmd, run_now_cmd

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home
    from routines.validate import Issue

MAX_PREVIEW = 1_000


@click.group("routines")
@home_option
def routines_group() -> None:
    """Define, inspect and trigger routines."""


# The commands that write definitions.json, and the trigger-side ones, are defined in their
# own modules but listed here.
routines_group.add_command(upsert_cmd)
routines_group.add_command(enable_cmd)
routines_group.add_command(disable_cmd)
routines_group.add_command(delete_cmd)
routines_group.add_command(run_now_cmd)
routines_group.add_command(cancel_cmd)
routines_group.add_command(approve_cmd)
routines_group.add_command(approvals_cmd)


def _issue_json(issue: Issue) -> dict[str, Any]:
    return {
        "path": issue.path,
        "line": issue.line,
        "column": issue.column,
        "message": issue.message,
    }


@routines_group.command("validate")
@click.argument("file", required=False, type=click.Path())  # a directory: an invalid document
@json_option
@home_option
def validate_cmd(file: str | None, as_json: bool) -> None:
    """Check a definitions file (default: the home's) and report every error."""
    from palyrad.ops.edits import default_timezone
    from routines.definitions_file import read_document
    from routines.timefmt import now_ms
    from routines.validate import ValidationResult, format_issue, printable, validate_text

    home = get_home()
    path = Path(file) if file else home.definitions
    read = read_document(path)  # never blocks on a FIFO; a directory or device is an issue
    if read.missing and file:
        fail(f"{file}: no such file", "give the path of a definitions.json", code=2)
    name = printable(file if file else display_name(home, path))  # argv may not be UTF-8
    if read.issue is not None:
        result = ValidationResult(None, [read.issue])
    else:
        result = validate_text(
            b'{"schema_version": 1, "routines": []}' if read.data is None else read.data,
            filename=name,
            now_ms=now_ms(),
            env=os.environ,
            default_timezone=default_timezone(home),
        )
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "errors": [_issue_json(e) for e in result.errors],
                "warnings": [_issue_json(w) for w in result.warnings],
            }
        )
    else:
        for e in result.errors:
            click.echo(format_issue(name, e), err=True)
        for w in result.warnings:
            click.echo(f"warning: {format_issue(name, w)}", err=True)
        if result.ok:
            count = len(result.definitions.routines) if result.definitions else 0
            click.echo(f"{name}: ok ({count} routines, {len(result.warnings)} warnings)")
        else:
            click.echo(f"{name}: {len(result.errors)} error(s); nothing was applied", err=True)
    if not result.ok:
        sys.exit(2)


@routines_group.command("schedule-preview")
@click.argument("schedule")
@click.option("--tz", help="Time zone for phrases and output (default: config or UTC).")
@click.option("--from", "from_", metavar="ISO", help="Preview after this instant (default now).")
@click.option("--count", default=5, show_default=True, type=int)
@click.option("--jitter-ms", type=int, default=None)
@click.option("--id", "routine_id", default=None, help="Routine id (for --jitter-ms).")
@json_option
@home_option
def schedule_preview_cmd(
    schedule: str,
    tz: str | None,
    from_: str | None,
    count: int,
    jitter_ms: int | None,
    routine_id: str | None,
    as_json: bool,
) -> None:
    """Show how a schedule resolves and when it fires next."""
    import orjson

    from palyrad.ops.edits import default_timezone
    from routines.jitter import fire_at_ms
    from routines.model import CronSchedule, check_routine_id, schedule_to_json
    from routines.phrases import PhraseError, resolve_phrase
    from routines.schedules import explain, upcoming
    from routines.timefmt import TimeFormatError, format_rfc3339, get_zone, now_ms, parse_rfc3339

    home = get_home(create=False)  # reads palyra.toml if there is one; writes nothing
    zone_name = tz if tz is not None else default_timezone(home)  # --tz "" is not "no --tz"
    try:
        zone = get_zone(zone_name)
    except TimeFormatError as exc:
        fail(str(exc), zone_hint(tz), code=2)
    if not 1 <= count <= MAX_PREVIEW:
        fail(f"--count {count} is out of range", f"use 1-{MAX_PREVIEW}", code=2)
    if jitter_ms is not None and (routine_id is None or not 0 <= jitter_ms <= 60_000):
        fail(
            "--jitter-ms needs --id and a value in 0-60000",
            "e.g. --jitter-ms 5000 --id backup",
            code=2,
        )
    if routine_id is not None:
        check_routine_id(routine_id)  # the jitter of an id no routine can have is no preview
    try:
        start = now_ms() if from_ is None else parse_rfc3339(from_, default_zone=zone)
    except TimeFormatError as exc:
        fail(str(exc), "use e.g. 2026-03-29T09:00:00+02:00", code=2)
    try:
        resolved = resolve_phrase(schedule, zone_name=zone_name, now_ms=start)
    except (PhraseError, ValueError) as exc:
        fail_hinted(str(exc), "see: palyra routines schedule-preview --help", code=2)
    fires = upcoming(resolved, start, count, first_seen_ms=start)
    out_zone = get_zone(resolved.timezone) if isinstance(resolved, CronSchedule) else zone
    if jitter_ms and routine_id:
        fires = [fire_at_ms(routine_id, f, jitter_ms) for f in fires]
    rendered = [format_rfc3339(f, out_zone) for f in fires]
    explanation = explain(resolved)
    if as_json:
        emit_json(
            {
                "input": schedule,
                "schedule": schedule_to_json(resolved),
                "explanation": explanation,
                "fires": rendered,
            }
        )
        return
    click.echo(f"{schedule!r} → {orjson.dumps(schedule_to_json(resolved)).decode()}")
    click.echo(explanation)
    for f in rendered:
        click.echo(f"  {f}")
    if not rendered:
        click.echo("  (no future fires)")


@routines_group.command("list")
@json_option
@home_option
@with_journal
def list_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """List every routine with its next run, last run and state."""
    list_routines(home, journal, as_json, schedule_only=False)


@routines_group.command("show")
@click.argument("routine_id")
@json_option
@home_option
@with_journal
def show_cmd(routine_id: str, as_json: bool, home: Home, journal: Journal) -> None:
    """One routine (its list entry) and, in words, why its last trigger did or did not run."""
    views = load_views(home, journal, ids={routine_id})
    if not views:
        fail(f"no routine {routine_id!r}", "see: palyra routines list")
    if as_json:
        emit_json(views[0].to_json())
    else:
        print_view(views[0], verbose=True)


def _is_defined(home: Home, routine_id: str) -> bool:
    """Whether the id is defined (a broken definitions file counts as "maybe": True)."""
    from palyrad.ops.edits import default_timezone
    from routines.definitions_file import load
    from routines.timefmt import now_ms

    result = load(
        home.definitions, now_ms=now_ms(), env=os.environ, default_timezone=default_timezone(home)
    )
    return result.definitions is None or routine_id in result.definitions.by_id()


def _logs(
    home: Home,
    journal: Journal,
    routine_id: str,
    limit: int,
    before: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    from palyrad.domain.runs import run_to_json
    from palyrad.ops.run_history import routine_runs

    runs = routine_runs(journal, routine_id, limit=limit, before=before, status=status)
    if not runs and before is None and status is None and not _is_defined(home, routine_id):
        fail(f"no routine {routine_id!r}", "see: palyra routines list")
    if as_json:
        emit_json({"runs": [run_to_json(r) for r in runs]})
        return
    if not runs:
        click.echo(f"no runs of {routine_id}")
    for r in runs:
        when = run_to_json(r)["started_at"] or run_to_json(r)["queued_at"]
        extra = f" {r.error_kind}" if r.error_kind else ""
        code = "" if r.exit_code is None else f" exit={r.exit_code}"
        click.echo(f"{r.run_id} {when} attempt={r.attempt} {r.status}{extra}{code}")


# routines.kinds.RunStatus spelled out: the option is built when `palyra routines --help`
# loads this module, which must import no library (tests/test_cli_startup.py); a test checks
# the two lists agree.
_STATUS_CHOICE = click.Choice(
    ["pending", "running", "succeeded", "failed", "cancelled", "skipped", "denied"]
)


@routines_group.command("logs")
@click.argument("routine_id")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--before", metavar="RUN_ID", default=None)
@click.option("--status", type=_STATUS_CHOICE, default=None)
@json_option
@home_option
@with_journal
def logs_cmd(
    routine_id: str,
    limit: int,
    before: str | None,
    status: str | None,
    as_json: bool,
    home: Home,
    journal: Journal,
) -> None:
    """A routine's runs, newest first."""
    _logs(home, journal, routine_id, limit, before, status, as_json)
