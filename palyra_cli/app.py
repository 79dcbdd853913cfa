"""``palyra``'s click application. Thin: parse, call a library, print.

The command groups are loaded lazily (``PalyraGroup.lazy_subcommands``): ``palyra routines
run-now`` imports the routines commands only, not the daemon, runs or events ones. Each
command module is itself cheap to import (its library imports sit in the command bodies),
so ``palyra --help`` lists every group with its help text without loading the library.
"""

from __future__ import annotations

import click

from palyra_cli.common import PalyraGroup, home_option

# name → "module:attribute" of its click group, imported when the name is looked up.
SUBCOMMANDS = {
    "daemon": "palyra_cli.daemon_cmds:daemon_group",
    "routines": "palyra_cli.routine_cmds:routines_group",
    "cron": "palyra_cli.cron_cmds:cron_group",
    "runs": "palyra_cli.run_cmds:runs_group",
    "events": "palyra_cli.trigger_cmds:events_group",
    "hooks": "palyra_cli.trigger_cmds:hooks_group",
    "node": "palyra_cli.node_cmds:node_group",
    "incidents": "palyra_cli.incident_cmds:incidents_group",
    "tasks": "palyra_cli.task_cmds:tasks_group",
    "skills": "palyra_cli.skill_cmds:skills_group",
    "memory": "palyra_cli.memory_cmds:memory_group",
    "doctor": "palyra_cli.doctor_cmds:doctor_cmd",
}


@click.group(
    cls=PalyraGroup,
    lazy_subcommands=SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@home_option
@click.version_option(package_name="palyra")
def cli() -> None:
    """Palyra: routines on schedules, files, webhooks and events — with real policies."""
