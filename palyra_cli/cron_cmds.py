"""``palyra cron``: add, list and status of schedule routines, and aliases of ``routines``
commands (pause, resume, delete, run-now, logs).

The aliases are the routines commands themselves, not copies, so this module imports the
command modules that define them; none of them imports this one. ``cron add`` writes
definitions.json the way ``routines upsert`` does (routine_edit_cmds). The library is
imported inside the commands (start-up cost: see routine_cmds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from palyra_cli.common import (
    emit_json,
    fail,
    fail_hinted,
    get_home,
    home_option,
    json_option,
    open_journal,
    with_journal,
)
from palyra_cli.routine_cmds import logs_cmd
from palyra_cli.routine_common import list_routines, load_views, print_routine, zone_hint
from palyra_cli.routine_edit_cmds import delete_cmd, disable_cmd, edit, enable_cmd, parse_one
from palyra_cli.trigger_cmds import run_now_cmd

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home
    from routines.model import Routine


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
    zone = tz if tz is not None else default_timezone(home)  # --tz "" is not "no --tz"
    try:
        get_zone(zone)
    except TimeFormatError as exc:
        fail(str(exc), zone_hint(tz), code=2)
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
        routine = parse_one(home, obj, None, "cron add", hint="see: palyra cron add --help")
        ed.upsert(routine)
        added.append(routine)

    journal = open_journal(home)  # before the write, so that a failed add writes nothing
    try:
        edit(home, journal, change)
        print_routine(journal, added[0], as_json, "added")
    finally:
        journal.close()


@cron_group.command("list")
@json_option
@home_option
@with_journal
def cron_list_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """List schedule routines."""
    list_routines(home, journal, as_json, schedule_only=True)


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

    dash = cron_dashboard(load_views(home, journal, schedule_only=True), now_ms())
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
