"""``palyra events emit``, ``palyra hooks fire``, ``palyra routines run-now/cancel`` and
``palyra routines approve/approvals``: the commands over ``palyrad.ops.triggers`` and
``palyrad.ops.approvals``, which trigger routines, act on their runs and grant approvals.

Imported by ``palyra --help`` and by every ``palyra routines``/``cron`` command (run-now,
cancel, approve and approvals are listed in ``routines``; ``cron`` aliases run-now), so the
library is imported inside the commands (see routine_cmds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from palyra_cli.common import (
    NOT_RUNNING_NOTE,
    emit_json,
    fail,
    get_home,
    home_option,
    json_option,
    note,
    open_journal,
    with_journal,
)
from palyra_cli.routine_common import load_definitions

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home


def _not_running_note(home: Home) -> None:
    from palyrad.runtime.liveness import daemon_alive

    if not daemon_alive(home):
        note(NOT_RUNNING_NOTE)


@click.group("events")
@home_option
def events_group() -> None:
    """Emit operator events for system_event routines."""


@events_group.command("emit")
@click.argument("name")
@click.option("--payload", metavar="JSON", default=None)
@home_option
@with_journal
def emit_cmd(name: str, payload: str | None, home: Home, journal: Journal) -> None:
    """Emit operator.NAME."""
    from palyrad.ops.triggers import emit_operator_event

    full = emit_operator_event(home, journal, name, payload)  # checks NAME and --payload
    _not_running_note(home)
    click.echo(f"emitted {full}")


@click.group("hooks")
@home_option
def hooks_group() -> None:
    """Fire hook routines."""


@hooks_group.command("fire")
@click.argument("hook_id")
@click.option("--event", default=None)
@click.option("--payload", metavar="JSON", default=None)
@home_option
@with_journal
def fire_cmd(
    hook_id: str, event: str | None, payload: str | None, home: Home, journal: Journal
) -> None:
    """Fire every hook routine with HOOK_ID (and, if given, --event)."""
    from palyrad.ops.triggers import fire_hook

    fire_hook(home, journal, hook_id, event, payload)  # checks HOOK_ID, --event, --payload
    _not_running_note(home)
    click.echo(f"fired hook {hook_id}")


@click.command("approve")
@click.argument("routine_id")
@home_option
@with_journal
def approve_cmd(routine_id: str, home: Home, journal: Journal) -> None:
    """Grant ROUTINE_ID's pending approval (for its current definition)."""
    from palyrad.ops.approvals import ApprovalError, approve

    try:
        granted = approve(home, journal, load_definitions(home), routine_id)
    except ApprovalError as exc:
        fail(str(exc), "see: palyra routines approvals")
    _not_running_note(home)
    extra = " and enabled it" if granted.enabled_now else ""
    click.echo(f"approved {routine_id} ({granted.mode}){extra}")


@click.command("approvals")
@json_option
@home_option
@with_journal
def approvals_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """Pending approvals (at most one per routine and definition)."""
    from palyrad.ops.approvals import pending_approvals

    items = pending_approvals(journal)
    if as_json:
        emit_json({"approvals": items})
        return
    if not items:
        click.echo("no pending approvals")
    for a in items:
        click.echo(f"{a['routine_id']:<24} {a['mode']:<17} requested {a['requested_at']}")


def _run_now(routine_id: str, payload: str | None, as_json: bool) -> None:
    """The hot path (SPEC: trigger → running in ≤ 100 ms): with the daemon running and its
    applied definitions current, it imports only the journal and the trigger code."""
    from palyra_cli.fast_path import run_now_line, run_now_result
    from palyrad.ops.triggers import TriggerRefused, check_payload, run_now

    check_payload(payload)  # exit 2 before anything, daemon running or not (run_now checks too)
    home = get_home()
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


@click.command("run-now")
@click.argument("routine_id")
@click.option("--payload", metavar="JSON", help="Trigger payload (PALYRA_TRIGGER_PAYLOAD).")
@json_option
@home_option
def run_now_cmd(routine_id: str, payload: str | None, as_json: bool) -> None:
    """Trigger a routine now (policies still apply)."""
    _run_now(routine_id, payload, as_json)


@click.command("cancel")
@click.argument("run_id")
@home_option
@with_journal
def cancel_cmd(run_id: str, home: Home, journal: Journal) -> None:
    """Cancel an active run (SIGTERM to its process group, SIGKILL after 10 s)."""
    from palyrad.ops.triggers import CancelOutcome, cancel

    outcome = cancel(home, journal, run_id)  # unknown, or ended otherwise: exit 1
    if outcome is CancelOutcome.REQUESTED:
        click.echo(f"cancelling {run_id}")
        _not_running_note(home)
    else:
        click.echo(f"cancelled {run_id}")
        if outcome is CancelOutcome.ALREADY_CANCELLED:
            note(f"note: {run_id} was already cancelled")
