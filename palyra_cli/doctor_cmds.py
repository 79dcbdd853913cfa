"""``palyra doctor``: what is wrong with the home and how to fix it (SPEC §4.3).

Thin: the checks, their order, their verdicts and every sentence live in
``palyrad.ops.doctor``; this prints the report (one line per check, the hint and what a
repair did indented below it) and exits 1 when a check failed. Without ``--repair`` nothing
is created or changed: the home is not even created (``get_home(create=False)``).
"""

from __future__ import annotations

import click

from palyra_cli.common import emit_json, get_home, home_option, json_option

MARKS = {"ok": "✓", "warn": "!", "fail": "✗"}


@click.command("doctor")
@json_option
@click.option("--repair", is_flag=True, help="Apply the safe, reversible fixes it finds.")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="CHECK_ID",
    help="Run only this check (repeatable; `palyra doctor` lists the ids).",
)
@home_option
def doctor_cmd(as_json: bool, repair: bool, only: tuple[str, ...]) -> None:
    """What is wrong with the home and daemon, and how to fix it; exit 1 if a check fails."""
    from palyrad.ops.doctor import run_doctor

    home = get_home(create=False)
    # Ids are snake_case; the kebab-case spelling is accepted too (SPEC conventions).
    only = tuple(o.replace("-", "_") for o in only)
    report = run_doctor(home, only=only, repair=repair)  # an unknown --only id: exit 2
    if as_json:
        emit_json(report.to_json())
    else:
        for check in report.checks:
            status = check.status.value
            click.echo(f"{MARKS[status]} {check.check_id}: {check.message}")
            for line in check.details:
                if line not in check.message:
                    click.echo(f"    {line}")
            for done in check.repaired:
                click.echo(f"  repaired: {done}")
            if status != "ok" and check.hint:
                click.echo(f"    hint: {check.hint}")
        click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)
