"""``palyra skills …``: install, trust, audit and quarantine signed skills (SPEC §4.7).

Thin over ``palyrad.ops.skills`` (imported inside the commands): every command works with
the daemon stopped, and what it changed is audited and recorded before it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from palyra_cli.common import emit_json, home_option, json_option, with_journal
from palyra_cli.tables import clip, short_time, table

if TYPE_CHECKING:
    from palyrad.domain.skill_audit import AuditResult
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home


def _now() -> int:
    from routines.timefmt import now_ms

    return now_ms()


@click.group("skills")
@home_option
def skills_group() -> None:
    """Signed skills: installed versions, trusted publishers, audits and quarantine."""


@skills_group.command("list")
@json_option
@home_option
@with_journal
def list_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """Every installed version, with its state (active or quarantined) and why."""
    from palyrad.ops.skills import read_index, views

    items = views(read_index(home), journal)
    if as_json:
        emit_json({"skills": [v.to_json() for v in items]})
        return
    if not items:
        click.echo("no skills installed")
        return
    table(
        ["SKILL", "VERSION", "PUBLISHER", "CURRENT", "STATE", "AUDITED", "REASON"],
        [
            [
                v.skill_id,
                v.version,
                clip(v.publisher, 20),
                "yes" if v.current else "",
                v.state + (" (operator)" if v.manual else ""),
                short_time(v.to_json()["last_audit_at"]) if v.last_audit_ms else "-",
                clip(v.reason or "", 60),
            ]
            for v in items
        ],
    )


@skills_group.command("install")
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--id", "skill_id", required=True, help="The skill id (as routines name it).")
@click.option("--version", "version", required=True, help="This artifact's version.")
@click.option("--publisher", required=True, help="Who signed it (a trusted publisher).")
@click.option("--signature", required=True, help="Base64 Ed25519 signature (SPEC §6).")
@json_option
@home_option
@with_journal
def install_cmd(
    artifact: Path,
    skill_id: str,
    version: str,
    publisher: str,
    signature: str,
    as_json: bool,
    home: Home,
    journal: Journal,
) -> None:
    """Install ARTIFACT as the current version of a skill, and audit it at once."""
    from palyrad.ops.skills import install

    view = install(
        home,
        journal,
        artifact,
        skill_id=skill_id,
        version=version,
        publisher=publisher,
        signature=signature,
        now_ms=_now(),
    )
    if as_json:
        emit_json(view.to_json())
        return
    click.echo(f"installed {skill_id} {version}: {view.state}")
    if view.reason:
        click.echo(f"  reason: {view.reason}", err=True)


@skills_group.command("trust")
@click.argument("publisher")
@click.option("--public-key", required=True, help="Base64 of the 32-byte Ed25519 public key.")
@home_option
@with_journal
def trust_cmd(publisher: str, public_key: str, home: Home, journal: Journal) -> None:
    """Trust PUBLISHER's key (its skills are audited again at once)."""
    from palyrad.ops.skills import trust

    trust(home, journal, publisher, public_key, _now())
    click.echo(f"trusted {publisher}")


@skills_group.command("untrust")
@click.argument("publisher")
@home_option
@with_journal
def untrust_cmd(publisher: str, home: Home, journal: Journal) -> None:
    """Stop trusting PUBLISHER (its skills are quarantined by the re-audit)."""
    from palyrad.ops.skills import untrust

    if untrust(home, journal, publisher, _now()):
        click.echo(f"untrusted {publisher}")
    else:
        click.echo(f"{publisher} was not trusted")


def _print_audits(results: list[AuditResult], as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "skills": [
                    {
                        "skill_id": r.skill_id,
                        "version": r.version,
                        "state": r.state,
                        "reason": r.reason,
                    }
                    for r in results
                ]
            }
        )
        return
    if not results:
        click.echo("no skills installed")
    for r in results:
        why = f" ({r.reason})" if r.reason else ""
        click.echo(f"{r.skill_id} {r.version}: {r.state}{why}")


@skills_group.command("audit")
@click.argument("skill_id", required=False)
@json_option
@home_option
@with_journal
def audit_cmd(skill_id: str | None, as_json: bool, home: Home, journal: Journal) -> None:
    """Audit now (every skill, or SKILL_ID): artifact, hash, signature, publisher."""
    from palyrad.ops.skills import audit_now

    _print_audits(audit_now(home, journal, skill_id, _now()), as_json)


@skills_group.command("quarantine")
@click.argument("skill_id")
@click.option("--reason", help="Why (shown by list).")
@home_option
@with_journal
def quarantine_cmd(skill_id: str, reason: str | None, home: Home, journal: Journal) -> None:
    """Quarantine every version of SKILL_ID until released (audits never lift it)."""
    from palyrad.ops.skills import quarantine

    quarantine(home, journal, skill_id, reason, _now())
    click.echo(f"quarantined {skill_id}")


@skills_group.command("release")
@click.argument("skill_id")
@json_option
@home_option
@with_journal
def release_cmd(skill_id: str, as_json: bool, home: Home, journal: Journal) -> None:
    """Lift an operator's quarantine of SKILL_ID; it is audited at once (the result decides)."""
    from palyrad.ops.skills import release

    _print_audits(release(home, journal, skill_id, _now()), as_json)
