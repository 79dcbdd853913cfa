"""``palyra routines …`` and ``palyra cron …``: thin wrappers over routines/ and palyrad/.

The library is imported inside the commands and helpers that use it, not here: this module
is imported by every ``palyra routines``/``cron`` invocation and by ``palyra --help``, and
the definitions validator, cron engine and model (routines.validate, .cron, .model, ~60 ms
without cached bytecode) are needed by some commands only — ``run-now`` on a daemon that
has applied the definitions needs none of them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from palyra_cli.common import (
    NOT_RUNNING_NOTE,
    emit_json,
    fail,
    fail_hinted,
    get_home,
    home_option,
    json_option,
    note,
    open_journal,
    with_journal,
)
from palyra_cli.trigger_cmds import approvals_cmd, approve_cmd

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.ops.edits import EditOutcome
    from palyrad.ops.routine_views import RoutineView
    from palyrad.runtime.home import Home
    from routines.definitions_file import DefinitionsError
    from routines.model import Definitions, Routine
    from routines.validate import Issue

MAX_PREVIEW = 1_000
MAX_LOGS = 1_000


# --- helpers ------------------------------------------------------------------------------


def _display_name(home: Home, path: Path) -> str:
    """A path as the operator reads it: relative to the home when inside it."""
    try:
        return str(path.resolve().relative_to(home.root.resolve()))
    except ValueError:
        return str(path)


def _zone_hint(tz_option: str | None) -> str:
    """Where a bad zone came from: --tz, or [scheduler] timezone in palyra.toml."""
    if tz_option is None:
        return "set [scheduler] timezone in palyra.toml to an IANA name such as Europe/Prague"
    return "use an IANA name such as Europe/Prague"


def _issue_json(issue: Issue) -> dict[str, Any]:
    return {
        "path": issue.path,
        "line": issue.line,
        "column": issue.column,
        "message": issue.message,
    }


def load_definitions(home: Home) -> Definitions:
    """The home's valid definitions, or exit 2 naming the first error and the fix."""
    from palyrad.ops.edits import default_timezone
    from routines.definitions_file import load
    from routines.timefmt import now_ms
    from routines.validate import format_issue

    result = load(
        home.definitions, now_ms=now_ms(), env=os.environ, default_timezone=default_timezone(home)
    )
    if result.definitions is None:
        first = format_issue(_display_name(home, home.definitions), result.errors[0])
        more = f" and {len(result.errors) - 1} more" if len(result.errors) > 1 else ""
        fail(f"{first}{more}", "run: palyra routines validate", code=2)
    return result.definitions


def _definitions_error(home: Home, exc: DefinitionsError) -> None:
    from routines.validate import format_issue

    name = _display_name(home, home.definitions)
    first = format_issue(name, exc.issues[0]) if exc.issues else str(exc)
    fail(first, exc.summary or "run: palyra routines validate", code=2)


def _report_edit(outcome: EditOutcome) -> None:
    if not outcome.daemon_running:
        note(NOT_RUNNING_NOTE)
    elif not outcome.applied:
        note("note: palyrad has not confirmed the change yet; run: palyra doctor")


def _edit(home: Home, change: Any) -> EditOutcome:
    from palyrad.ops.edits import apply_edit
    from routines.definitions_file import DefinitionsError

    try:
        outcome = apply_edit(home, change)
    except DefinitionsError as exc:
        _definitions_error(home, exc)
    _report_edit(outcome)
    return outcome


def _print_view(view: RoutineView, *, verbose: bool = False) -> None:
    r = view.routine
    nxt = view.to_json()["next_run_at"] or "-"
    last = view.last_run
    last_txt = "never run" if last is None else f"last {last.status}"
    if last is not None and last.error_kind:
        last_txt += f" ({last.error_kind})"
    click.echo(f"{r.id:<24} {view.state:<18} next {nxt:<27} {last_txt}")
    if verbose:
        if r.schedule is not None:
            from routines.schedules import explain

            click.echo(f"  schedule: {explain(r.schedule)}")
        click.echo(f"  trigger: {r.trigger.kind}; action: {r.action.kind}")
        click.echo(f"  concurrency: {r.concurrency.value}; misfire: {r.misfire.policy.value}")
        click.echo(f"  why: {_why(view)}")


def _why(view: RoutineView) -> str:
    """In words: why the last trigger did or did not run."""
    run = view.last_run
    if run is None:
        return "it has not been triggered yet"
    reasons = {
        "concurrency_forbid": "it was skipped because another run was active (concurrency: forbid)",
        "concurrency_queue_full": "it was skipped because one run was active and one queued",
        "misfire_skipped": f"{run.missed_count or 0} tick(s) were missed (daemon down, asleep "
        "or quiet hours) and the misfire policy is skip",
        "quiet_hours": "it arrived inside the routine's quiet hours",
        "cooldown_active": "it arrived inside the cooldown after the previous run",
        "approval_required": "the definition is waiting for approval (palyra routines approve)",
        "routine_disabled": "the routine was disabled when the trigger was decided",
        "daemon_crashed": "the daemon died while it ran",
        "heartbeat_lost": "its executor stopped heartbeating, so it was failed and killed",
        "timeout": "it ran past its timeout_ms and was stopped",
        "exit_code": f"it ran and exited with code {run.exit_code}",
        "cancelled": "it was cancelled",
        "spawn_failed": f"its command could not be started: {run.error_message}",
    }
    if run.status == "succeeded":
        return "it ran and succeeded"
    if run.status in ("pending", "running"):
        return f"it is {run.status}"
    return reasons.get(run.error_kind or "", f"{run.status}: {run.error_message or ''}".strip())


def _views(
    home: Home, journal: Journal, *, schedule_only: bool = False, ids: set[str] | None = None
) -> list[RoutineView]:
    from palyrad.ops.routine_views import routine_views
    from routines.timefmt import now_ms

    defs = load_definitions(home)
    views = routine_views(defs, journal, now_ms(), ids=ids)
    if schedule_only:
        views = [v for v in views if v.routine.schedule is not None]
    return views


# --- routines -----------------------------------------------------------------------------


@click.group("routines")
@home_option
def routines_group() -> None:
    """Define, inspect and trigger routines."""


@routines_group.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@json_option
@home_option
def validate_cmd(file: str | None, as_json: bool) -> None:
    """Check a definitions file (default: the home's) and report every error."""
    from palyrad.ops.edits import default_timezone
    from routines.timefmt import now_ms
    from routines.validate import format_issue, validate_text

    home = get_home()
    path = Path(file) if file else home.definitions
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if file:
            fail(f"{file}: no such file", "give the path of a definitions.json", code=2)
        data = b'{"schema_version": 1, "routines": []}'
    except OSError as exc:
        fail(f"{path}: {exc.strerror}", "give the path of a readable definitions.json", code=2)
    name = file if file else _display_name(home, path)
    result = validate_text(
        data,
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
    from routines.model import CronSchedule, schedule_to_json
    from routines.phrases import PhraseError, resolve_phrase
    from routines.schedules import explain, upcoming
    from routines.timefmt import TimeFormatError, format_rfc3339, get_zone, now_ms, parse_rfc3339

    home = get_home()
    zone_name = tz or default_timezone(home)
    try:
        zone = get_zone(zone_name)
    except TimeFormatError as exc:
        fail(str(exc), _zone_hint(tz), code=2)
    if not 1 <= count <= MAX_PREVIEW:
        fail(f"--count {count} is out of range", f"use 1-{MAX_PREVIEW}", code=2)
    if jitter_ms is not None and (routine_id is None or not 0 <= jitter_ms <= 60_000):
        fail(
            "--jitter-ms needs --id and a value in 0-60000",
            "e.g. --jitter-ms 5000 --id backup",
            code=2,
        )
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


@routines_group.command("upsert")
@click.option("--file", "file", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("dash", required=False)
@json_option
@home_option
def upsert_cmd(file: str | None, dash: str | None, as_json: bool) -> None:
    """Add or replace one routine (any trigger kind) from JSON (--file F, or - for stdin)."""
    import orjson

    home = get_home()
    source = file or dash
    if source is None:
        fail("no routine given", "use --file routine.json or - to read stdin", code=2)
    name = "<stdin>" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{name}: cannot read: {exc}", "give a UTF-8 JSON file with one routine", code=2)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        fail(
            f"{name}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
            "fix the JSON and try again",
            code=2,
        )
    routine = _parse_one(home, obj, text, name)
    added: list[bool] = []
    outcome = _edit(home, lambda ed: added.append(ed.upsert(routine)))
    _print_routine(home, routine, as_json, "added" if added and added[0] else "replaced", outcome)


def _parse_one(
    home: Home,
    obj: object,
    text: str | None,
    name: str,
    hint: str = "fix the routine and try again",
) -> Routine:
    from palyrad.ops.edits import default_timezone
    from routines.timefmt import now_ms
    from routines.validate import format_issue, parse_routine

    routine, errors, warnings = parse_routine(
        obj,
        now_ms=now_ms(),
        env=os.environ,
        default_timezone=default_timezone(home),
        source_text=text,
        filename=name,
    )
    for w in warnings:
        note(f"warning: {format_issue(name, w)}")
    if routine is None:
        # One error line (SPEC §4); the other errors follow as notes so none is hidden.
        for e in errors[1:]:
            note(f"note: also: {format_issue(name, e)}")
        more = f" and {len(errors) - 1} more (listed above)" if len(errors) > 1 else ""
        fail(format_issue(name, errors[0]) + more, hint, code=2)
    return routine


def _print_routine(
    home: Home, routine: Routine, as_json: bool, verb: str, outcome: EditOutcome | None = None
) -> None:
    from palyrad.ops.routine_views import routine_views
    from routines.model import Definitions
    from routines.timefmt import now_ms

    journal = open_journal(home)
    try:
        view = routine_views(Definitions((routine,)), journal, now_ms())[0]
    finally:
        journal.close()
    if as_json:
        emit_json(view.to_json())
    else:
        click.echo(f"{verb} {routine.id}")
        _print_view(view, verbose=True)


@routines_group.command("list")
@json_option
@home_option
@with_journal
def list_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """List every routine with its next run, last run and state."""
    _list(home, journal, as_json, schedule_only=False)


def _list(home: Home, journal: Journal, as_json: bool, *, schedule_only: bool) -> None:
    views = _views(home, journal, schedule_only=schedule_only)
    if as_json:
        emit_json({"routines": [v.to_json() for v in views]})
        return
    if not views:
        click.echo("no routines (add one: palyra cron add NAME --schedule ... --command ...)")
    for v in views:
        _print_view(v)


@routines_group.command("show")
@click.argument("routine_id")
@json_option
@home_option
@with_journal
def show_cmd(routine_id: str, as_json: bool, home: Home, journal: Journal) -> None:
    """One routine (its list entry) and, in words, why its last trigger did or did not run."""
    views = _views(home, journal, ids={routine_id})
    if not views:
        fail(f"no routine {routine_id!r}", "see: palyra routines list")
    if as_json:
        emit_json(views[0].to_json())
    else:
        _print_view(views[0], verbose=True)


def _set_enabled(routine_id: str, enabled: bool) -> None:
    from dataclasses import replace

    from palyrad.ops.edits import edit_definitions
    from routines.definitions_file import DefinitionsError

    home = get_home()
    found: list[bool] = []

    def change(ed: Any) -> None:
        r = ed.get(routine_id)
        if r is None:
            return
        found.append(True)
        if r.enabled != enabled:
            ed.upsert(replace(r, enabled=enabled))

    try:
        with edit_definitions(home) as ed:
            change(ed)
    except DefinitionsError as exc:
        _definitions_error(home, exc)
    if not found:
        fail(f"no routine {routine_id!r}", "see: palyra routines list")
    _after_write(home)
    click.echo(f"{routine_id}: {'enabled' if enabled else 'disabled'}")


def _after_write(home: Home) -> None:
    from palyrad.ops.edits import wait_applied
    from palyrad.runtime.liveness import daemon_alive

    if not daemon_alive(home):
        note(NOT_RUNNING_NOTE)
    elif not wait_applied(home):
        note("note: palyrad has not confirmed the change yet; run: palyra doctor")


def _delete(routine_id: str) -> None:
    from palyrad.ops.edits import edit_definitions
    from routines.definitions_file import DefinitionsError

    home = get_home()
    try:
        with edit_definitions(home) as ed:
            removed = ed.remove(routine_id)
    except DefinitionsError as exc:
        _definitions_error(home, exc)
    if not removed:
        fail(f"no routine {routine_id!r}", "see: palyra routines list")
    _after_write(home)
    click.echo(f"{routine_id}: deleted")


@routines_group.command("enable")
@click.argument("routine_id")
@home_option
def enable_cmd(routine_id: str) -> None:
    """Enable a routine."""
    _set_enabled(routine_id, True)


@routines_group.command("disable")
@click.argument("routine_id")
@home_option
def disable_cmd(routine_id: str) -> None:
    """Disable a routine (it never fires; run-now is refused)."""
    _set_enabled(routine_id, False)


@routines_group.command("delete")
@click.argument("routine_id")
@home_option
def delete_cmd(routine_id: str) -> None:
    """Delete a routine from definitions.json (its run history stays until pruned)."""
    _delete(routine_id)


def _run_now(routine_id: str, payload: str | None, as_json: bool) -> None:
    """The hot path (SPEC: trigger → running in ≤ 100 ms): with the daemon running and its
    applied definitions current, it imports only the journal and the trigger code."""
    import orjson

    from palyra_cli.fast_path import run_now_line, run_now_result
    from palyrad.ops.triggers import TriggerRefused, run_now

    home = get_home()
    if payload is not None:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            fail(f"--payload is not valid JSON: {exc.msg}", "e.g. --payload '{\"k\": 1}'", code=2)
    journal = open_journal(home)
    try:
        run, running = run_now(home, journal, routine_id, payload, lambda: load_definitions(home))
    except TriggerRefused as exc:
        fail(str(exc), "see: palyra routines list")
    finally:
        journal.close()
    if not running:
        note(NOT_RUNNING_NOTE)
    result = run_now_result(run.run_id, run.status, run.error_kind)
    if as_json:
        emit_json(result)
    else:
        click.echo(run_now_line(result))


@routines_group.command("run-now")
@click.argument("routine_id")
@click.option("--payload", metavar="JSON", help="Trigger payload (PALYRA_TRIGGER_PAYLOAD).")
@json_option
@home_option
def run_now_cmd(routine_id: str, payload: str | None, as_json: bool) -> None:
    """Trigger a routine now (policies still apply)."""
    _run_now(routine_id, payload, as_json)


@routines_group.command("cancel")
@click.argument("run_id")
@home_option
@with_journal
def cancel_cmd(run_id: str, home: Home, journal: Journal) -> None:
    """Cancel an active run (SIGTERM to its process group, SIGKILL after 10 s)."""
    from palyrad.ops.triggers import cancel

    run = cancel(home, journal, run_id)
    if run is None:
        fail(f"no run {run_id!r}", "see: palyra routines logs ROUTINE_ID")
    if run.status not in ("pending", "running", "cancelled"):
        fail(f"run {run_id} already ended ({run.status})", "nothing to cancel")
    click.echo(f"{run_id}: {'cancelled' if run.status == 'cancelled' else 'cancelling'}")


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

    if not 1 <= limit <= MAX_LOGS:
        fail(f"--limit {limit} is out of range", f"use 1-{MAX_LOGS}", code=2)
    runs = journal.runs.for_routine(routine_id, limit=limit, before_run_id=before, status=status)
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


# approve/approvals are defined with the other trigger-side commands but listed here.
routines_group.add_command(approve_cmd)
routines_group.add_command(approvals_cmd)


# --- cron ---------------------------------------------------------------------------------


@click.group("cron")
@home_option
def cron_group() -> None:
    """Schedule routines (cron, intervals, one-shots)."""


@cron_group.command("add")
@click.argument("name")
@click.option("--schedule", "schedule_text", required=True, help="Cron, phrase or timestamp.")
@click.option("--tz", default=None, help="IANA time zone (default: config or UTC).")
@click.option("--command", "shell", default=None, help="Shell command (/bin/sh -c).")
@click.option("--argv", "argv", multiple=True, help="Argument (repeat; no shell).")
@click.option("--prompt", default=None, help="Prompt for the agent runner.")
@click.option("--id", "routine_id", default=None)
@click.option("--concurrency", default=None)
@click.option("--misfire", default=None)
@click.option("--grace-ms", type=int, default=None)
@click.option("--jitter-ms", type=int, default=None)
@click.option("--max-attempts", type=int, default=None)
@click.option("--backoff-ms", type=int, default=None)
@click.option("--quiet-hours", default=None, metavar="HH:MM-HH:MM")
@click.option("--approval", default=None)
@click.option("--disabled", is_flag=True)
@json_option
@home_option
def cron_add_cmd(
    name: str,
    schedule_text: str,
    tz: str | None,
    shell: str | None,
    argv: tuple[str, ...],
    prompt: str | None,
    routine_id: str | None,
    concurrency: str | None,
    misfire: str | None,
    grace_ms: int | None,
    jitter_ms: int | None,
    max_attempts: int | None,
    backoff_ms: int | None,
    quiet_hours: str | None,
    approval: str | None,
    disabled: bool,
    as_json: bool,
) -> None:
    """Add a schedule routine; prints it with its next run."""
    from palyrad.ops.edits import default_timezone
    from routines.builder import command_action, schedule_routine_object, unique_id
    from routines.model import slugify
    from routines.phrases import PhraseError
    from routines.timefmt import TimeFormatError, get_zone, now_ms

    home = get_home()
    zone = tz or default_timezone(home)
    try:
        get_zone(zone)
    except TimeFormatError as exc:
        fail(str(exc), _zone_hint(tz), code=2)
    try:
        action = command_action(shell=shell, argv=argv or None, prompt=prompt)
    except ValueError as exc:
        fail(str(exc), "see: palyra cron add --help", code=2)
    added: list[Routine] = []

    def change(ed: Any) -> None:
        taken = {r.id for r in ed.definitions.routines}
        if routine_id is not None and routine_id in taken:
            fail(
                f"routine {routine_id!r} already exists",
                "use: palyra routines upsert to replace it",
            )
        rid = routine_id or unique_id(slugify(name), taken)
        try:
            obj = schedule_routine_object(
                routine_id=rid,
                name=name,
                schedule_text=schedule_text,
                zone=zone,
                now_ms=now_ms(),
                action=action,
                enabled=not disabled,
                concurrency=concurrency,
                misfire=misfire,
                grace_ms=grace_ms,
                jitter_ms=jitter_ms,
                max_attempts=max_attempts,
                backoff_ms=backoff_ms,
                quiet_hours=quiet_hours,
                approval=approval,
            )
        except (PhraseError, ValueError) as exc:
            fail_hinted(str(exc), "see: palyra routines schedule-preview --help", code=2)
        routine = _parse_one(home, obj, None, "cron add", hint="see: palyra cron add --help")
        ed.upsert(routine)
        added.append(routine)

    outcome = _edit(home, change)
    _print_routine(home, added[0], as_json, "added", outcome)


@cron_group.command("list")
@json_option
@home_option
@with_journal
def cron_list_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """List schedule routines."""
    _list(home, journal, as_json, schedule_only=True)


# The cron group's aliases are the routines commands themselves, not copies of them.
cron_group.add_command(disable_cmd, "pause")
cron_group.add_command(enable_cmd, "resume")
cron_group.add_command(delete_cmd, "delete")
cron_group.add_command(run_now_cmd, "run-now")
cron_group.add_command(logs_cmd, "logs")


@cron_group.command("status")
@json_option
@home_option
@with_journal
def cron_status_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """Dashboard: counts, overdue and soon-due routines, last outcomes, next runs."""
    from palyrad.ops.dashboard import cron_dashboard
    from routines.timefmt import now_ms

    dash = cron_dashboard(_views(home, journal, schedule_only=True), now_ms())
    if as_json:
        emit_json(dash)
        return
    c = dash["counts"]
    click.echo(
        f"enabled {c['enabled']}  disabled {c['disabled']}  overdue {c['overdue']}  "
        f"due within 15 min {c['due_within_15m']}"
    )
    for n in dash["next_runs"]:
        click.echo(f"  next  {n['next_run_at']}  {n['routine_id']}")
    for o in dash["overdue"]:
        click.echo(f"  overdue since {o['next_run_at']}  {o['routine_id']}")
    for r in dash["routines"]:
        click.echo(f"  {r['routine_id']:<24} last: {r['last_status'] or 'never run'}")
