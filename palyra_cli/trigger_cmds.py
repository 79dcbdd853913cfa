"""``palyra events emit``, ``palyra hooks fire``, ``palyra routines approve/approvals``.

Imported by ``palyra --help`` and by every ``palyra routines`` command (approve/approvals are
listed there), so the library is imported inside the commands (see routine_cmds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from palyra_cli.common import emit_json, fail, home_option, json_option, note, with_journal

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home


def _check_payload(payload: str | None) -> None:
    if payload is None:
        return
    import orjson

    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        fail(f"--payload is not valid JSON: {exc.msg}", "e.g. --payload '{\"k\": 1}'", code=2)
    if len(payload.encode()) > 64 * 1024:
        fail("--payload is larger than 64 KiB", "pass a path to a file instead", code=2)


def _not_running_note(home: Home) -> None:
    from palyrad.runtime.liveness import daemon_alive

    if not daemon_alive(home):
        note("note: palyrad is not running; the change applies when it starts")


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

    _check_payload(payload)
    full = emit_operator_event(home, journal, name, payload)
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

    _check_payload(payload)
    fire_hook(home, journal, hook_id, event, payload)
    _not_running_note(home)
    click.echo(f"fired hook {hook_id}")


@click.command("approve")
@click.argument("routine_id")
@home_option
@with_journal
def approve_cmd(routine_id: str, home: Home, journal: Journal) -> None:
    """Grant ROUTINE_ID's pending approval (for its current definition)."""
    from palyra_cli.routine_cmds import load_definitions
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
