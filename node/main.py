"""``palyra-node``: the device side (SPEC §4.4). Thin click commands: parse, call, print.

Pairing is ``node.pairing``; every other command goes over mutual TLS through
``node.client.open_client`` (which renews the certificate first when it is due) or
``node.watch``.
"""

from __future__ import annotations

import os
from typing import Any

# gRPC's C core logs connection failures to stderr on its own; palyra-node reports every
# failure itself, as one line, so the core's logging is off unless asked for.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import click

from node.cli_support import (
    NodeGroup,
    check_payload,
    emit_json,
    emit_line,
    home_option,
    json_option,
    node_context,
    read_secret_arg,
)
from node.errors import invalid

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(cls=NodeGroup, context_settings=CONTEXT)
@home_option
def cli() -> None:
    """Palyra node: pair with a palyrad, then query it and watch its results over mTLS."""


# -------------------------------------------------------------------------------------
# pair


@cli.command("pair")
@click.option("--uri", metavar="URI", help="The palyra://pair URI of a QR code (- reads stdin).")
@click.option("--host", metavar="H", help="The pairing listener's host (PIN method).")
@click.option("--port", metavar="P", type=int, help="The pairing listener's port (PIN method).")
@click.option("--pin", metavar="PIN", help="The 6-digit PIN (- reads stdin; omitted: prompted).")
@click.option("--name", metavar="NAME", help="This device's name (default: the host name).")
@click.option(
    "--wait",
    "wait_s",
    metavar="S",
    type=click.IntRange(0, 86_400),
    default=300,
    show_default=True,
    help="Seconds to wait for the operator's approval.",
)
@json_option
@home_option
def pair_cmd(
    uri: str | None,
    host: str | None,
    port: int | None,
    pin: str | None,
    name: str | None,
    wait_s: int,
    as_json: bool,
) -> None:
    """Pair with a daemon: --uri URI (QR), or --host H --port P [--pin PIN]."""
    from node import pairing

    device_name = pairing.check_name(name) if name is not None else pairing.default_name()
    if (uri is None) == (host is None):
        raise invalid("give either --uri or --host and --port", "see: palyra-node pair --help")
    ctx = node_context()
    if uri is not None:
        if port is not None or pin is not None:
            raise invalid("--port and --pin belong to the PIN method, not --uri")
        result = pairing.pair_with_uri(ctx, read_secret_arg(uri, "URI"), device_name, wait_s)
    else:
        assert host is not None
        if port is None:
            raise invalid("--host needs --port", "the address palyra node pair-code printed")
        pairing.check_target(host, port)  # exit 2 before asking for the PIN
        if pin is None:
            try:
                pin = click.prompt("PIN", hide_input=True, err=True)
            except click.exceptions.Abort:
                raise invalid("no PIN given", "type it at the prompt, or use --pin -") from None
        else:
            pin = read_secret_arg(pin, "PIN")
        result = pairing.pair_with_pin(ctx, host, port, str(pin), device_name, wait_s)
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(
            f"paired as {result.device_id} ({result.name}) with the daemon at {result.address}; "
            f"certificate valid until {result.cert_expires_at}"
        )


# -------------------------------------------------------------------------------------
# status, routines, run-now, hooks


@cli.command("status")
@json_option
@home_option
def status_cmd(as_json: bool) -> None:
    """This device and its daemon, over mTLS."""
    from node.client import open_client

    with open_client(node_context()) as client:
        status = client.status()
        address = client.address
    if not isinstance(status, dict):
        status = {"daemon": status}
    status = {"device_id": status.get("device_id"), "address": address, **status}
    status["address"] = address
    if as_json:
        emit_json(status)
        return
    raw = status.get("daemon")
    daemon: dict[str, Any] = raw if isinstance(raw, dict) else {}
    state = f"running (pid {daemon.get('pid')})" if daemon.get("running") else "not running"
    click.echo(f"device       {status.get('device_id')}")
    click.echo(f"daemon       {address}  {state}")
    click.echo(f"certificate  valid until {status.get('cert_expires_at')}")
    for proc in daemon.get("processes") or []:
        if isinstance(proc, dict):
            click.echo(f"  {proc.get('name', '?'):<14} {proc.get('state', '?')}")


def _print_routines(listing: Any) -> None:
    routines = listing.get("routines") if isinstance(listing, dict) else None
    if not routines:
        click.echo("no routines")
        return
    for r in routines:
        last = r.get("last_run")
        last_txt = "never run" if not last else f"last {last.get('status')}"
        if last and last.get("error_kind"):
            last_txt += f" ({last['error_kind']})"
        nxt = r.get("next_run_at") or "-"
        click.echo(f"{r.get('id', '?'):<24} {r.get('state', '?'):<18} next {nxt:<27} {last_txt}")


@cli.group("routines", cls=NodeGroup, invoke_without_command=True)
@json_option
@home_option
@click.pass_context
def routines_group(ctx: click.Context, as_json: bool) -> None:
    """The daemon's routines (exactly `palyra routines list --json`); pause/resume one."""
    if ctx.invoked_subcommand is not None:
        return
    from node.client import open_client

    with open_client(node_context()) as client:
        listing = client.list_routines()
    if as_json:
        emit_json(listing)
    else:
        _print_routines(listing)


def _set_enabled(routine_id: str, enabled: bool, as_json: bool) -> None:
    from node.client import open_client

    with open_client(node_context()) as client:
        result = client.set_routine_enabled(routine_id, enabled)
    if as_json:
        emit_json(result)
        return
    verb = "enabled" if enabled else "disabled"
    changed = result.get("changed", True) if isinstance(result, dict) else True
    click.echo(f"{verb} {routine_id}" if changed else f"{routine_id} was already {verb}")


@routines_group.command("pause")
@click.argument("routine_id")
@json_option
@home_option
def pause_cmd(routine_id: str, as_json: bool) -> None:
    """Disable a routine (as `palyra cron pause`)."""
    _set_enabled(routine_id, False, as_json)


@routines_group.command("resume")
@click.argument("routine_id")
@json_option
@home_option
def resume_cmd(routine_id: str, as_json: bool) -> None:
    """Enable a routine (as `palyra cron resume`)."""
    _set_enabled(routine_id, True, as_json)


@cli.command("run-now")
@click.argument("routine_id")
@click.option("--payload", metavar="JSON", help="Trigger payload (PALYRA_TRIGGER_PAYLOAD).")
@json_option
@home_option
def run_now_cmd(routine_id: str, payload: str | None, as_json: bool) -> None:
    """Trigger a routine now (policies still apply), as `palyra routines run-now`."""
    from node.client import open_client

    payload = check_payload(payload)
    with open_client(node_context()) as client:
        result = client.run_now(routine_id, payload)
    if as_json:
        emit_json(result)
        return
    if isinstance(result, dict):
        extra = f" ({result['error_kind']})" if result.get("error_kind") else ""
        click.echo(f"{result.get('run_id')} {result.get('status')}{extra}")
    else:
        click.echo(str(result))


@cli.group("hooks", cls=NodeGroup)
@home_option
def hooks_group() -> None:
    """Fire hook routines."""


@hooks_group.command("fire")
@click.argument("hook_id")
@click.option("--event", default=None)
@click.option("--payload", metavar="JSON", default=None)
@json_option
@home_option
def fire_cmd(hook_id: str, event: str | None, payload: str | None, as_json: bool) -> None:
    """Fire every hook routine with HOOK_ID (and, if given, --event)."""
    from node.client import open_client

    if not hook_id.strip():
        raise invalid("the hook id is empty")
    if event is not None and not event.strip():
        raise invalid("--event is empty", "leave it out for the default")
    payload = check_payload(payload)
    with open_client(node_context()) as client:
        result = client.fire_hook(hook_id, event, payload)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"fired hook {hook_id}")


# -------------------------------------------------------------------------------------
# watch


@cli.command("watch")
@click.option("--channel", "channels", multiple=True, metavar="C", help="Only this channel.")
@click.option("--events", is_flag=True, help="Also print system events.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after N lines.")
@json_option
@home_option
def watch_cmd(channels: tuple[str, ...], events: bool, count: int | None, as_json: bool) -> None:
    """Print delivered results (and events) as they come; acknowledge each."""
    from node.watch import run_watch

    for c in channels:
        if not c.strip():
            raise invalid("--channel is empty")
    ctx = node_context()
    try:
        run_watch(ctx, channels, events, count, as_json, emit_line)
    except KeyboardInterrupt:
        raise SystemExit(0) from None


def main() -> None:
    cli(prog_name="palyra-node")
