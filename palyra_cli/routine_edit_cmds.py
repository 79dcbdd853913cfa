"""``palyra routines upsert/enable/disable/delete``: the commands that write definitions.json.

Separate from the read commands (routine_cmds) because they share a way of writing — through
``palyrad.ops.edits``, a broken file reported as its first error, then a note when palyrad is
not running or has not confirmed the change — that the read commands never need. ``cron add``
writes the same way (``parse_one`` and ``edit`` below). The ``routines`` group lists these
commands and the ``cron`` group aliases enable/disable/delete, so this module imports neither
of them. The library is imported inside the commands (start-up cost: see routine_cmds).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from palyra_cli.common import (
    NOT_RUNNING_NOTE,
    fail,
    get_home,
    home_option,
    json_option,
    note,
    open_journal,
    with_journal,
)
from palyra_cli.routine_common import display_name, print_routine

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.ops.edits import EditOutcome
    from palyrad.runtime.home import Home
    from routines.definitions_file import DefinitionsError
    from routines.model import Routine


def _definitions_error(home: Home, exc: DefinitionsError) -> NoReturn:
    from routines.validate import format_issue

    name = display_name(home, home.definitions)
    first = format_issue(name, exc.issues[0]) if exc.issues else str(exc)
    fail(first, exc.summary or "run: palyra routines validate", code=2)


def _report_edit(outcome: EditOutcome) -> None:
    if not outcome.daemon_running:
        note(NOT_RUNNING_NOTE)
    elif not outcome.applied:
        note("note: palyrad has not confirmed the change yet; run: palyra doctor")


def edit(home: Home, journal: Journal, change: Any) -> None:
    """Apply ``change(editor)`` to definitions.json and say whether palyrad has it.

    ``journal`` is opened by the caller first: whatever the command needs after the write
    must be known to work before it (see ``palyrad.ops.edits.apply_edit``)."""
    from palyrad.ops.edits import apply_edit
    from routines.definitions_file import DefinitionsError

    try:
        outcome = apply_edit(home, journal, change)
    except DefinitionsError as exc:
        _definitions_error(home, exc)
    _report_edit(outcome)


def parse_one(
    home: Home,
    obj: object,
    text: str | None,
    name: str,
    hint: str = "fix the routine and try again",
) -> Routine:
    """One routine from its JSON object, or exit 2 naming its first error."""
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


@click.command("upsert")
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
    routine = parse_one(home, obj, text, name)
    journal = open_journal(home)  # before the write: see edit()
    try:
        added: list[bool] = []
        edit(home, journal, lambda ed: added.append(ed.upsert(routine)))
        print_routine(journal, routine, as_json, "added" if added and added[0] else "replaced")
    finally:
        journal.close()


def _no_routine(routine_id: str) -> NoReturn:
    fail(f"no routine {routine_id!r}", "see: palyra routines list")


def _set_enabled(home: Home, journal: Journal, routine_id: str, enabled: bool) -> None:
    from dataclasses import replace

    def change(ed: Any) -> None:
        r = ed.get(routine_id)
        if r is None:
            _no_routine(routine_id)  # raised under the lock: nothing is written
        if r.enabled != enabled:
            ed.upsert(replace(r, enabled=enabled))

    edit(home, journal, change)
    click.echo(f"{'enabled' if enabled else 'disabled'} {routine_id}")


def _delete(home: Home, journal: Journal, routine_id: str) -> None:
    def change(ed: Any) -> None:
        if not ed.remove(routine_id):
            _no_routine(routine_id)

    edit(home, journal, change)
    click.echo(f"deleted {routine_id}")


@click.command("enable")
@click.argument("routine_id")
@home_option
@with_journal
def enable_cmd(routine_id: str, home: Home, journal: Journal) -> None:
    """Enable a routine."""
    _set_enabled(home, journal, routine_id, True)


@click.command("disable")
@click.argument("routine_id")
@home_option
@with_journal
def disable_cmd(routine_id: str, home: Home, journal: Journal) -> None:
    """Disable a routine (it never fires; run-now is refused)."""
    _set_enabled(home, journal, routine_id, False)


@click.command("delete")
@click.argument("routine_id")
@home_option
@with_journal
def delete_cmd(routine_id: str, home: Home, journal: Journal) -> None:
    """Delete a routine from definitions.json (its run history stays until pruned)."""
    _delete(home, journal, routine_id)
