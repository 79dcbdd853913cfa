"""``palyra incidents …``: what the self-healing process found and did (SPEC §4.6).

Reads the journal only, so it works with the daemon stopped. Thin over
``palyrad.ops.incidents``; the library is imported inside the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from palyra_cli.common import emit_json, home_option, json_option, with_journal
from palyra_cli.tables import clip, short_time, table

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home


@click.group("incidents")
@home_option
def incidents_group() -> None:
    """Incidents the self-healing process opened, and what it did about them."""


@incidents_group.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Resolved incidents too.")
@json_option
@home_option
@with_journal
def list_cmd(include_resolved: bool, as_json: bool, home: Home, journal: Journal) -> None:
    """Open incidents, newest first (--all: resolved ones too)."""
    from palyrad.ops.incidents import list_incidents

    items = list_incidents(journal, include_resolved=include_resolved)
    if as_json:
        emit_json({"incidents": items})
        return
    if not items:
        click.echo("no incidents" if include_resolved else "no open incidents")
        return
    table(
        ["INCIDENT ID", "DOMAIN", "SUBJECT", "SEVERITY", "STATE", "OPENED", "SUMMARY"],
        [
            [
                i["incident_id"],
                i["domain"],
                clip(i["subject"], 28),
                i["severity"],
                i["state"],
                short_time(i["opened_at"]),
                clip(i["summary"], 70),
            ]
            for i in items
        ],
    )


@incidents_group.command("show")
@click.argument("incident_id")
@json_option
@home_option
@with_journal
def show_cmd(incident_id: str, as_json: bool, home: Home, journal: Journal) -> None:
    """One incident with its remediation attempts."""
    from palyrad.ops.incidents import show_incident

    item: dict[str, Any] = show_incident(journal, incident_id)
    if as_json:
        emit_json(item)
        return
    click.echo(f"incident {item['incident_id']}: {item['domain']} {item['subject']}")
    click.echo(f"  severity  {item['severity']}")
    click.echo(f"  state     {item['state']}")
    click.echo(f"  opened    {item['opened_at']}")
    if item["resolved_at"]:
        click.echo(f"  resolved  {item['resolved_at']}")
    click.echo(f"  summary   {item['summary']}")
    if not item["remediations"]:
        click.echo("  no remediation attempts")
    for a in item["remediations"]:
        click.echo(f"  {short_time(a['at'])}  {a['action']}: {a['outcome']} — {a['detail']}")
