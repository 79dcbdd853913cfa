"""``palyra node …``: pairing windows, pending requests and paired devices (SPEC §4.4).

Thin commands over ``palyrad.ops.nodes``; what is left here is printing (the PIN in big
digits, the QR code in the terminal and as PNG through segno, the tables). ``pair-code``
needs the running daemon (the PIN lives only in node_rpc's memory); ``pending``, ``approve``,
``reject``, ``list``, ``revoke`` and ``remove`` work on the journal, daemon running or not.

Imported by ``palyra --help``: the library (and segno) is imported inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from palyra_cli.common import (
    NOT_RUNNING_NOTE,
    emit_json,
    fail,
    get_home,
    home_option,
    json_option,
    note,
    with_journal,
)
from palyra_cli.tables import clip, short_time, table

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home


@click.group("node")
@home_option
def node_group() -> None:
    """Pair devices (palyra-node) and manage paired ones."""


# --- pair-code ------------------------------------------------------------------------------

# 3×5 digits, each pixel two characters wide: readable across a room, copyable below.
_DIGITS = {
    "0": ("###", "# #", "# #", "# #", "###"),
    "1": (" # ", "## ", " # ", " # ", "###"),
    "2": ("###", "  #", "###", "#  ", "###"),
    "3": ("###", "  #", "###", "  #", "###"),
    "4": ("# #", "# #", "###", "  #", "  #"),
    "5": ("###", "#  ", "###", "  #", "###"),
    "6": ("###", "#  ", "###", "# #", "###"),
    "7": ("###", "  #", "  #", "  #", "  #"),
    "8": ("###", "# #", "###", "# #", "###"),
    "9": ("###", "# #", "###", "  #", "###"),
}


def _can_print(text: str) -> bool:
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def big_digits(pin: str) -> list[str]:
    """The PIN drawn in block characters (``#`` where the terminal cannot show ``█``),
    grouped 3 + 3 like the plain spelling."""
    on = "██" if _can_print("█") else "##"
    rows = []
    for r in range(5):
        line = ""
        for i, ch in enumerate(pin):
            gap = "" if i == 0 else "      " if i % 3 == 0 else "  "
            glyph = _DIGITS.get(ch, ("   ",) * 5)[r]
            line += gap + "".join(on if px == "#" else "  " for px in glyph)
        rows.append("    " + line.rstrip())
    return rows


def _draw_qr(uri: str) -> None:
    import segno

    qr = segno.make(uri, error="m")
    # Half blocks (two modules per character) keep it small enough for a terminal; segno
    # draws them light-on-dark. Without them, its ANSI-coloured full-size version.
    qr.terminal(out=sys.stdout, compact=_can_print("█▀▄"))
    sys.stdout.flush()


def _png_bytes(uri: str) -> bytes:
    import io

    import segno

    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="png", scale=8, border=4)
    return buf.getvalue()


@node_group.command("pair-code")
@click.option(
    "--method",
    type=click.Choice(["pin", "qr"], case_sensitive=False),
    default="pin",
    show_default=True,
    help="A 6-digit PIN to type on the device, or a QR code (palyra:// URI) to scan/paste.",
)
@click.option(
    "--ttl", default="10m", show_default=True, help="How long the window stays open (30s to 24h)."
)
@click.option(
    "--auto-approve", is_flag=True, help="Approve the device that proves the code without asking."
)
@click.option(
    "--host", default=None, metavar="H", help="Host name or IP put in the pairing address."
)
@click.option(
    "--png",
    "png",
    default=None,
    metavar="FILE",
    help="Also write the QR code as a PNG (0600; an existing regular file is replaced).",
)
@json_option
@home_option
def pair_code_cmd(
    method: str, ttl: str, auto_approve: bool, host: str | None, png: str | None, as_json: bool
) -> None:
    """Open a pairing window (closing the previous one) and print its code."""
    from palyrad.ops import nodes
    from routines.durations import format_duration_ms

    method = method.lower()
    ttl_ms = nodes.parse_ttl(ttl)  # exit 2 before anything else
    if png is not None and method != "qr":
        fail("--png needs --method qr (a PIN window has no QR code)", "add --method qr", code=2)
    nodes.check_pair_host(host)
    png_path = Path(png) if png is not None else None
    if png_path is not None:
        nodes.check_png_target(png_path)  # refuse before a window is opened
    home = get_home()
    result = nodes.pair_code(home, method, ttl_ms, auto_approve, host)
    if png_path is not None:
        nodes.write_private_file(png_path, _png_bytes(result["uri"]))
    if as_json:
        emit_json(result)
        return
    expires = f"{result['expires_at']} (in {format_duration_ms(ttl_ms)})"
    command = nodes.node_pair_command(result)
    if result["method"] == "pin":
        pin = result["code"]
        click.echo("pairing PIN:\n")
        for row in big_digits(pin):
            click.echo(row)
        click.echo(f"\n    {pin[:3]} {pin[3:]}\n")
        click.echo(f"address:        {result['address']}")
        click.echo(f"expires:        {expires}")
        click.echo(f"on the device:  {command}   (it asks for the PIN)")
    else:
        _draw_qr(result["uri"])
        click.echo(result["uri"])
        click.echo("")
        click.echo(f"address:        {result['address']}")
        click.echo(f"expires:        {expires}")
        click.echo(f"on the device:  scan the code, or run {command} and paste the URI above")
        if png_path is not None:
            click.echo(f"png:            {png_path}")
    click.echo("the window admits one device; a new pair-code closes it")
    if auto_approve:
        click.echo("auto-approve: the device that proves the code is approved without asking")
    else:
        click.echo("then: palyra node pending, and palyra node approve REQUEST_ID")


# --- requests -------------------------------------------------------------------------------


@node_group.command("pending")
@json_option
@home_option
@with_journal
def pending_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """Pairing requests waiting for approval."""
    from palyrad.ops import nodes
    from routines.timefmt import now_ms

    items = nodes.pending(journal, now_ms())
    if as_json:
        emit_json({"requests": items})
        return
    if not items:
        click.echo("no pending pairing requests")
        return
    n = nodes.KEY_PREFIX_HEX
    click.echo(f"compare KEY with the {n} hex digits palyra-node pair printed on the device:")
    table(
        ["REQUEST ID", "KEY", "DEVICE", "METHOD", "PEER", "EXPIRES"],
        [
            [
                r["request_id"],
                r["public_key_sha256"][:n],
                clip(r["device_name"], 24),
                r["method"],
                r["peer"],
                short_time(r["expires_at"]),
            ]
            for r in items
        ],
    )
    click.echo("then: palyra node approve REQUEST_ID (or reject REQUEST_ID)")


def _decide(request_id: str, home: Home, journal: Journal, *, approve: bool) -> None:
    from palyrad.ops import nodes
    from routines.timefmt import now_ms

    decide = nodes.approve if approve else nodes.reject
    done = decide(home, journal, request_id, now_ms())  # unknown, expired, decided: exit 1
    verb = "approved" if approve else "rejected"
    click.echo(
        f"{verb} {done.request_id} ({done.device_name}, key "
        f"{done.public_key_sha256[: nodes.KEY_PREFIX_HEX]})"
    )
    if not done.daemon_running:
        note(NOT_RUNNING_NOTE)


@node_group.command("approve")
@click.argument("request_id")
@home_option
@with_journal
def approve_cmd(request_id: str, home: Home, journal: Journal) -> None:
    """Approve a pairing request (the node then receives its certificate)."""
    _decide(request_id, home, journal, approve=True)


@node_group.command("reject")
@click.argument("request_id")
@home_option
@with_journal
def reject_cmd(request_id: str, home: Home, journal: Journal) -> None:
    """Reject a pairing request."""
    _decide(request_id, home, journal, approve=False)


# --- devices --------------------------------------------------------------------------------


@node_group.command("list")
@json_option
@home_option
@with_journal
def list_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """Paired devices, active and revoked."""
    from palyrad.ops import nodes

    items: list[dict[str, Any]] = nodes.devices(journal, home)
    if as_json:
        emit_json({"devices": items})
        return
    if not items:
        click.echo("no paired devices (pair one: palyra node pair-code)")
        return
    table(
        ["DEVICE ID", "NAME", "STATE", "PAIRED", "LAST SEEN", "CERT EXPIRES", "CHANNELS"],
        [
            [
                d["device_id"],
                clip(d["name"], 24),
                d["state"],
                short_time(d["paired_at"]),
                short_time(d["last_seen_at"]),
                short_time(d["cert_expires_at"]),
                ",".join(d["channels"]) or "-",
            ]
            for d in items
        ],
    )


@node_group.command("revoke")
@click.argument("device_id")
@home_option
@with_journal
def revoke_cmd(device_id: str, home: Home, journal: Journal) -> None:
    """Revoke a device: its next call is refused and its streams close; the record stays."""
    from palyrad.ops import nodes
    from routines.timefmt import now_ms

    done = nodes.revoke(home, journal, device_id, now_ms())  # unknown: exit 1
    click.echo(f"revoked {done.device_id} ({done.name})")
    if done.was_revoked:
        note(f"note: {done.device_id} was already revoked")
    elif not done.daemon_running:
        note(NOT_RUNNING_NOTE)


@node_group.command("remove")
@click.argument("device_id")
@home_option
@with_journal
def remove_cmd(device_id: str, home: Home, journal: Journal) -> None:
    """Revoke a device if needed, then delete its record."""
    from palyrad.ops import nodes
    from routines.timefmt import now_ms

    done = nodes.remove(home, journal, device_id, now_ms())  # unknown: exit 1
    verb = "removed" if done.was_revoked else "revoked and removed"
    click.echo(f"{verb} {done.device_id} ({done.name})")
    if not done.daemon_running:
        note(NOT_RUNNING_NOTE)
