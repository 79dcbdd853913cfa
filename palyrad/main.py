"""``palyrad``: run the daemon in the foreground (for systemd/launchd, or ``daemon start``)."""

from __future__ import annotations

import sys

import click

from palyrad.ops.daemon_control import preflight
from palyrad.runtime.config import ConfigError
from palyrad.runtime.daemon_log import setup_logging
from palyrad.runtime.home import Home
from palyrad.supervisor.supervisor import AlreadyRunning, run_supervisor
from routines.errors import PalyraError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", help="Palyra home (default $PALYRA_HOME or ~/.palyra).")
@click.option("--log-stderr/--no-log-stderr", default=None, help="Also log to stderr.")
def main(home: str | None, log_stderr: bool | None) -> None:
    """Run palyrad in the foreground; SIGTERM/SIGINT stop it gracefully, SIGHUP reloads."""
    try:
        h = Home.at(home).ensure()  # a blank --home/$PALYRA_HOME, a home it cannot create
        config = preflight(h)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except PalyraError as exc:  # the home or the journal cannot be used: names it and the fix
        click.echo(f"error: {exc}" + (f" ({exc.hint})" if exc.hint else ""), err=True)
        sys.exit(exc.exit_code)
    to_stderr = sys.stderr.isatty() if log_stderr is None else log_stderr
    setup_logging(h.daemon_log, "supervisor", to_stderr=to_stderr)
    try:
        code = run_supervisor(h, config)
    except AlreadyRunning as exc:
        click.echo(f"error: {exc} (stop it with: palyra daemon stop)", err=True)
        sys.exit(1)
    sys.exit(code)
