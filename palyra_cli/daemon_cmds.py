"""``palyra daemon …``: start/stop/restart/status/install-service.

Imported by ``palyra --help``: palyrad.ops.daemon_control, runtime.status and
ops.service_files (subprocess, the status dataclasses, unit templates) are imported by the
commands that use them.
"""

from __future__ import annotations

import sys

import click

from palyra_cli.common import emit_json, fail, get_home, home_option, json_option, note


@click.group("daemon")
@home_option
def daemon_group() -> None:
    """Start, stop and inspect palyrad."""


@daemon_group.command("start")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for ready.")
@json_option
@home_option
def start_cmd(timeout: float, as_json: bool) -> None:
    """Start palyrad in the background; returns once every process is ready."""
    from palyrad.ops.daemon_control import DaemonControlError, start_daemon

    home = get_home()
    try:
        status, started = start_daemon(home, timeout_s=timeout)
    except DaemonControlError as exc:
        fail(f"palyrad did not start: {exc}", exc.hint)
    if as_json:
        emit_json(status.to_json())
    elif started:
        click.echo(f"palyrad started (pid {status.pid}, home {home.root})")
    else:
        note(f"note: palyrad is already running (pid {status.pid})")


@daemon_group.command("stop")
@click.option(
    "--timeout",
    type=click.FloatRange(0, 86_400),
    default=None,
    help="Seconds runs get between SIGTERM and SIGKILL [default: [daemon] stop_timeout_ms]",
)
@home_option
def stop_cmd(timeout: float | None) -> None:
    """Graceful stop (running runs get SIGTERM, then SIGKILL after the timeout)."""
    from palyrad.ops.daemon_control import stop_daemon

    home = get_home(create=False)
    if stop_daemon(home, timeout_s=timeout):
        click.echo("palyrad stopped")
    else:
        note("note: palyrad is not running")


@daemon_group.command("restart")
@click.option(
    "--timeout",
    type=click.FloatRange(0, 86_400),
    default=None,
    help="Seconds runs get between SIGTERM and SIGKILL [default: [daemon] stop_timeout_ms]",
)
@home_option
def restart_cmd(timeout: float | None) -> None:
    """Stop (if running), then start — unless palyra.toml or the journal would keep the new
    daemon from starting: then nothing is stopped."""
    from palyrad.ops.daemon_control import DaemonControlError, preflight, start_daemon, stop_daemon

    home = get_home()
    preflight(home)  # ConfigError / DaemonControlError: exit with the reason, nothing stopped
    stop_daemon(home, timeout_s=timeout)
    try:
        status, _ = start_daemon(home)
    except DaemonControlError as exc:
        fail(f"palyrad did not start: {exc}", exc.hint)
    click.echo(f"palyrad restarted (pid {status.pid})")


@daemon_group.command("status")
@json_option
@home_option
def status_cmd(as_json: bool) -> None:
    """Whether palyrad runs, and the state of each of its processes (exit 0 either way)."""
    from palyrad.runtime.status import read_status

    home = get_home(create=False)
    status = read_status(home)
    if as_json:
        emit_json(status.to_json())
        return
    if not status.running:
        click.echo("palyrad is not running (start it: palyra daemon start)")
        return
    data = status.to_json()
    click.echo(f"palyrad running, pid {status.pid}, since {data['started_at']}")
    for p in data["processes"]:
        click.echo(
            f"  {p['name']:<13} {p['state']:<10} pid {p['pid']}  restarts {p['restarts']}"
            f"  heartbeat {p['last_heartbeat_at'] or '-'}"
            + (f"  next try {p['retry_at']}" if p["retry_at"] else "")
        )
    listeners = data["endpoints"]
    click.echo(
        "  listeners     " + "  ".join(f"{name} {addr or '-'}" for name, addr in listeners.items())
    )
    for p in data["processes"]:
        if p["state"] == "fatal":
            click.echo(
                f"warning: {p['name']} crashed too often and is stopped until {p['retry_at']};"
                f" read {home.daemon_log} or run: palyra doctor"
            )


@daemon_group.command("install-service")
@click.option("--user/--system", default=True, help="Per-user (default) or system-wide unit.")
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing.")
@home_option
def install_service_cmd(user: bool, print_only: bool) -> None:
    """Write a systemd unit (Linux) or launchd plist (macOS) that runs palyrad."""
    from palyrad.ops.service_files import install_service

    home = get_home(create=False)  # the unit names the home; palyrad creates it at start
    try:
        path, text, hint = install_service(home, user=user, write=not print_only)
    except OSError as exc:
        fail(f"cannot write the service file: {exc}", "try --user, or run as root for --system")
    if print_only:
        sys.stdout.write(text)
        return
    click.echo(f"wrote {path}")
    note(f"note: {hint}")
