"""``palyra``: the operator's command line (click). Thin: parse, call a library, print."""

from __future__ import annotations

import click

from palyra_cli.common import PalyraGroup, home_option
from palyra_cli.daemon_cmds import daemon_group
from palyra_cli.routine_cmds import cron_group, routines_group
from palyra_cli.run_cmds import runs_group
from palyra_cli.trigger_cmds import approvals_cmd, approve_cmd, events_group, hooks_group


@click.group(cls=PalyraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@home_option
@click.version_option(package_name="palyra")
def cli() -> None:
    """Palyra: routines on schedules, files, webhooks and events — with real policies."""


cli.add_command(daemon_group)
cli.add_command(routines_group)
cli.add_command(cron_group)
cli.add_command(runs_group)
cli.add_command(events_group)
cli.add_command(hooks_group)
routines_group.add_command(approve_cmd)
routines_group.add_command(approvals_cmd)


def main() -> None:
    cli(prog_name="palyra")
