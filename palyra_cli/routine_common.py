"""What the ``routines``, ``cron`` and trigger command modules share: the home's definitions
(or exit 2 naming the first error), routine views, and how a routine view is printed.

A module of its own so that there is no import cycle: routine_cmds imports the command
modules whose commands its group lists (routine_edit_cmds, trigger_cmds), and those take what
they share with it from here, a module that imports none of them. Like the command modules it
imports only click and ``palyra_cli.common`` at module level; the library is imported inside
the functions (start-up cost: see routine_cmds).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from palyra_cli.common import emit_json, fail

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.ops.routine_views import RoutineView
    from palyrad.runtime.home import Home
    from routines.model import Definitions, Routine


def display_name(home: Home, path: Path) -> str:
    """A path as the operator reads it: relative to the home when inside it."""
    try:
        return str(path.resolve().relative_to(home.root.resolve()))
    except ValueError:
        return str(path)


def zone_hint(tz_option: str | None) -> str:
    """Where a bad zone came from: --tz, or [scheduler] timezone in palyra.toml."""
    if tz_option is None:
        return "set [scheduler] timezone in palyra.toml to an IANA name such as Europe/Prague"
    return "use an IANA name such as Europe/Prague"


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
        first = format_issue(display_name(home, home.definitions), result.errors[0])
        more = f" and {len(result.errors) - 1} more" if len(result.errors) > 1 else ""
        fail(f"{first}{more}", "run: palyra routines validate", code=2)
    return result.definitions


def load_views(
    home: Home, journal: Journal, *, schedule_only: bool = False, ids: set[str] | None = None
) -> list[RoutineView]:
    from palyrad.ops.applied import definitions_to_show
    from palyrad.ops.routine_views import routine_views
    from routines.timefmt import now_ms

    now = now_ms()
    shown = definitions_to_show(
        home, now_ms=now, env=os.environ, display_name=display_name(home, home.definitions)
    )
    if shown.warning:
        click.echo(f"warning: {shown.warning}", err=True)
    views = routine_views(shown.definitions, journal, now, ids=ids)
    if schedule_only:
        views = [v for v in views if v.routine.schedule is not None]
    return views


def print_view(view: RoutineView, *, verbose: bool = False) -> None:
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
        click.echo(f"  why: {why(view)}")


def why(view: RoutineView) -> str:
    """In words: why the last trigger did or did not run."""
    run = view.last_run
    if run is None:
        return "it has not been triggered yet"
    from routines.kinds import explain

    return explain(
        run.status,
        run.error_kind,
        exit_code=run.exit_code,
        error_message=run.error_message,
        missed_count=run.missed_count,
    )


def list_routines(home: Home, journal: Journal, as_json: bool, *, schedule_only: bool) -> None:
    """``routines list`` and ``cron list`` (schedule routines only)."""
    views = load_views(home, journal, schedule_only=schedule_only)
    if as_json:
        emit_json({"routines": [v.to_json() for v in views]})
        return
    if not views:
        click.echo("no routines (add one: palyra cron add NAME --schedule ... --command ...)")
    for v in views:
        print_view(v)


def print_routine(journal: Journal, routine: Routine, as_json: bool, verb: str) -> None:
    """A routine just written (``routines upsert``, ``cron add``): its view, with its next run.
    ``journal`` was opened before the write, so that nothing can fail after it."""
    from palyrad.ops.routine_views import routine_views
    from routines.model import Definitions
    from routines.timefmt import now_ms

    view = routine_views(Definitions((routine,)), journal, now_ms())[0]
    if as_json:
        emit_json(view.to_json())
    else:
        click.echo(f"{verb} {routine.id}")
        print_view(view, verbose=True)
