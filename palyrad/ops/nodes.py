"""The operator's side of pairing and devices (SPEC §4.4): ``palyra node …``.

- ``pair_code`` asks the running daemon for a pairing window over node_rpc's request socket
  (``run/node_rpc.sock``): a PIN lives only in node_rpc's memory (SPEC §5), so no window can
  be opened by writing the journal from here.
- ``pending``, ``approve``/``reject``, ``devices``, ``revoke`` and ``remove`` work on the
  journal, daemon running or not; every change pokes node_rpc, so a node waiting for its
  certificate gets the answer at once and a revoked device's streams close now rather than
  at node_rpc's next registry refresh.

The JSON documents of the commands are built here; the CLI only prints them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palyrad.domain.runs import parse_run_id
from palyrad.runtime.control_client import NotListening, request
from palyrad.runtime.liveness import daemon_alive
from palyrad.runtime.notify import poke_service
from routines.durations import DURATION_EXAMPLES, DurationError, parse_duration_ms
from routines.errors import InvalidInput, PalyraError
from routines.timefmt import format_rfc3339

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.journal.records import Device, PairingRequest
    from palyrad.runtime.home import Home

SOCKET_NAME = "node_rpc.sock"  # node_rpc's request socket in run/ (services.node_rpc.control)
PAIR_CODE_TIMEOUT_S = 10.0  # opening a window may reissue the server certificate (--host)
MIN_TTL_MS = 30_000
MAX_TTL_MS = 24 * 3_600_000
DEFAULT_TTL = "10m"
METHODS = ("pin", "qr")
KEY_PREFIX_HEX = 16  # what `palyra-node pair` prints of its public key's SHA-256
WILDCARD_CHANNEL = "*"


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_rfc3339(ms, always_ms=True)


def _times(out: dict[str, Any], **fields: int | None) -> None:
    """``name`` (RFC 3339) and ``name_unix_ms`` for each field, as runs and approvals have."""
    for name, ms in fields.items():
        out[name] = _time(ms)
        out[f"{name}_unix_ms"] = ms


# --- pair-code ------------------------------------------------------------------------------


def parse_ttl(text: str) -> int:
    """``--ttl`` as milliseconds: ``30s`` … ``24h`` (``10m``, ``1h30m``, plain seconds);
    InvalidInput (exit 2) naming the range otherwise."""
    try:
        ms = parse_duration_ms(text)
    except DurationError as exc:
        raise InvalidInput(f"--ttl: {exc}", f"use {DURATION_EXAMPLES}, from 30s to 24h") from None
    if not MIN_TTL_MS <= ms <= MAX_TTL_MS:
        raise InvalidInput(
            f"--ttl {text.strip()} is out of range", "a pairing window lasts 30s to 24h"
        )
    return ms


def check_pair_host(host: str | None) -> str | None:
    """``--host`` as the daemon will put it in the URI (checked here too, so a typo is exit 2
    whether or not the daemon runs); None when not given."""
    if host is None:
        return None
    # Here, not at the top: palyra_proto.pairing brings spake2 and hashlib, which
    # `node list` and `node pending` do not need.
    from palyra_proto.pairing import PairingFormatError, check_host

    try:
        return check_host(host)
    except PairingFormatError as exc:
        raise InvalidInput(f"--host: {exc}", "give a host name or an IP address") from None


def pair_code(
    home: Home, method: str, ttl_ms: int, auto_approve: bool, host: str | None
) -> dict[str, Any]:
    """Open a pairing window on the running daemon (a new one closes the previous) and
    return ``pair-code --json``'s document: ``{"method", "code", "uri", "address",
    "expires_at", "expires_at_unix_ms"}``.

    Errors: the daemon not running (exit 1, hint ``palyra daemon start``), node_rpc not
    serving (restarting), its refusal of the request (``bad_request``: exit 2 with its
    message), or no answer in time."""
    if method not in METHODS:
        raise InvalidInput(f"--method must be pin or qr, not {method!r}", "use pin or qr")
    if not MIN_TTL_MS <= ttl_ms <= MAX_TTL_MS:
        raise InvalidInput("--ttl is out of range", "a pairing window lasts 30s to 24h")
    message = {
        "op": "open_window",
        "method": method,
        "ttl_ms": ttl_ms,
        "auto_approve": auto_approve,
        "host": check_pair_host(host),
    }
    try:
        reply = request(home.run_dir, message, PAIR_CODE_TIMEOUT_S, name=SOCKET_NAME)
    except NotListening:
        if not daemon_alive(home):
            raise PalyraError("palyrad is not running", "start it: palyra daemon start") from None
        raise PalyraError(
            "node_rpc is not taking pair-code requests (it may be restarting)",
            "see: palyra daemon status",
        ) from None
    except TimeoutError:
        raise PalyraError(
            "the daemon did not answer in time", f"see the daemon log: {home.daemon_log}"
        ) from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise _refusal(home, reply)
    expires = int(reply["expires_at_ms"])
    return {
        "method": reply["method"],
        "code": reply["code"],
        "uri": reply.get("uri"),
        "address": reply["address"],
        "expires_at": _time(expires),
        "expires_at_unix_ms": expires,
    }


def _refusal(home: Home, reply: Any) -> PalyraError:
    error = reply.get("error") if isinstance(reply, dict) else None
    text = reply.get("message") if isinstance(reply, dict) else None
    if error == "bad_request":
        return InvalidInput(
            str(text or "the daemon refused the request"), "see: palyra node pair-code --help"
        )
    if isinstance(text, str) and text:
        # The daemon's message says what to do (it ends with its own parenthesised hint).
        return PalyraError(
            text, None if text.rstrip().endswith(")") else "see: palyra daemon status"
        )
    return PalyraError(
        f"the daemon could not open a pairing window ({error or 'no reason given'})",
        f"see the daemon log: {home.daemon_log}",
    )


def node_pair_command(result: dict[str, Any]) -> str:
    """The command that pairs a node with the window ``pair_code`` opened: for a PIN window
    ``palyra-node pair --host H --port P`` (it asks for the PIN), for a QR one
    ``palyra-node pair --uri -`` (the URI pasted on stdin, out of shell history)."""
    if result["method"] == "qr":
        return "palyra-node pair --uri -"
    import shlex

    from palyra_proto.pairing import parse_address

    host, port = parse_address(result["address"])
    return f"palyra-node pair --host {shlex.quote(host)} --port {port}"


def check_png_target(path: Path) -> None:
    """Refuse a ``--png`` path before a window is opened: its directory must exist, and
    anything already there must be a regular file (it is then replaced). A symbolic link,
    directory, FIFO or device is refused rather than followed or replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise PalyraError(
                f"--png: the directory {path.parent} does not exist", "create it first"
            ) from None
        return
    if not stat.S_ISREG(st.st_mode):
        raise PalyraError(
            f"--png: {path} exists and is not a regular file",
            "give a new file name (an existing regular file is replaced)",
        )


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file, never readable by others for an instant
    (the definitions file's atomic writer: a 0600 temporary, fsynced, renamed over). What
    ``check_png_target`` refuses is refused here too."""
    from routines.definitions_file import atomic_write

    check_png_target(path)
    atomic_write(path, data, keep_backup=False)


# --- pending requests -------------------------------------------------------------------------


def request_json(req: PairingRequest) -> dict[str, Any]:
    """One entry of ``node pending --json``."""
    out: dict[str, Any] = {
        "request_id": req.request_id,
        "device_name": req.device_name,
        "method": req.method,
    }
    _times(out, requested_at=req.requested_ms, expires_at=req.expires_ms)
    out["public_key_sha256"] = req.public_key_sha256
    out["peer"] = req.peer
    return out


def pending(journal: Journal, now_ms: int) -> list[dict[str, Any]]:
    """Requests waiting for the operator (pending, not expired), oldest first."""
    return [request_json(r) for r in journal.pairing.pending_requests(now_ms)]


@dataclass(frozen=True, slots=True)
class Decided:
    request_id: str
    device_name: str
    public_key_sha256: str
    daemon_running: bool  # whether node_rpc was poked (else the note: applies at start)


def approve(home: Home, journal: Journal, request_id: str, now_ms: int) -> Decided:
    """Approve a pending request; the waiting node collects its certificate at once."""
    return _decide(home, journal, request_id, True, now_ms)


def reject(home: Home, journal: Journal, request_id: str, now_ms: int) -> Decided:
    """Reject a pending request; the waiting node is told at once."""
    return _decide(home, journal, request_id, False, now_ms)


def _decide(home: Home, journal: Journal, text: str, approve: bool, now_ms: int) -> Decided:
    request_id = parse_run_id(text) or text.strip()
    if not journal.pairing.decide_request(request_id, approve, now_ms):
        raise PalyraError(
            _why_undecidable(journal, request_id, now_ms),
            "it is unknown, expired or already decided; see: palyra node pending",
        )
    running = poke_service(home.run_dir, "node_rpc")
    req = journal.pairing.get_request(request_id)
    name = req.device_name if req is not None else ""
    key = req.public_key_sha256 if req is not None else ""
    return Decided(request_id, name, key, running)


def _why_undecidable(journal: Journal, request_id: str, now_ms: int) -> str:
    """Why ``decide_request`` said no: unknown, already decided, or expired (read after the
    refused write, so it says what was true then or later)."""
    req = journal.pairing.get_request(request_id)
    if req is None:
        return f"no pairing request {request_id!r}"
    if req.state != "pending":
        return f"pairing request {request_id} is already {req.state}"
    if req.expires_ms <= now_ms:
        return f"pairing request {request_id} expired at {_time(req.expires_ms)}"
    return f"pairing request {request_id} is unknown, expired or already decided"


# --- devices ------------------------------------------------------------------------------------


def device_json(device: Device, channels: list[str]) -> dict[str, Any]:
    """One entry of ``node list --json``."""
    out: dict[str, Any] = {
        "device_id": device.device_id,
        "name": device.name,
        "state": device.state,
    }
    _times(out, paired_at=device.paired_ms, last_seen_at=device.last_seen_ms)
    out["cert_sha256"] = device.cert_sha256
    _times(out, cert_expires_at=device.cert_expires_ms)
    out["channels"] = channels
    return out


def watched_channels(journal: Journal) -> dict[str, list[str]]:
    """Per device id, what its open ``watch`` streams subscribe to: the sorted union of
    their channels, or ``["*"]`` when any of them watches every channel. Devices with no
    open stream are absent."""
    union: dict[str, set[str]] = {}
    for w in journal.devices.watches():
        union.setdefault(w.device_id, set()).update(w.channels)
    return {
        device_id: [WILDCARD_CHANNEL] if WILDCARD_CHANNEL in chans else sorted(chans)
        for device_id, chans in union.items()
    }


def devices(journal: Journal, home: Home | None = None) -> list[dict[str, Any]]:
    """Every paired device, active and revoked, in pairing order. With ``home``, the open
    watches count only while the daemon runs (a crash leaves its stream records behind;
    node_rpc clears them at its next start)."""
    channels = watched_channels(journal) if home is None or daemon_alive(home) else {}
    return [device_json(d, channels.get(d.device_id, [])) for d in journal.devices.all()]


@dataclass(frozen=True, slots=True)
class DeviceChange:
    device_id: str
    name: str
    was_revoked: bool  # it was already revoked before this command
    daemon_running: bool  # whether node_rpc was poked (else the note: applies at start)


def _device(journal: Journal, text: str) -> Device:
    device_id = parse_run_id(text) or text.strip()
    device = journal.devices.get(device_id)
    if device is None:
        raise PalyraError(f"no device {device_id!r}", "see: palyra node list")
    return device


def revoke(home: Home, journal: Journal, device_id: str, now_ms: int) -> DeviceChange:
    """Revoke a device: its next RPC is refused, its open streams close (node_rpc is poked).
    Revoking a revoked device changes nothing and is not an error (``was_revoked``)."""
    device = _device(journal, device_id)
    was_revoked = device.state == "revoked"
    if not was_revoked and not journal.devices.revoke(device.device_id, now_ms, "operator"):
        raise PalyraError(f"no device {device.device_id!r}", "see: palyra node list")  # removed
    running = poke_service(home.run_dir, "node_rpc")
    return DeviceChange(device.device_id, device.name, was_revoked, running)


def remove(home: Home, journal: Journal, device_id: str, now_ms: int) -> DeviceChange:
    """Revoke the device if it is active, then delete its record (with its delivery
    acknowledgements and watch rows)."""
    device = _device(journal, device_id)
    was_revoked = device.state == "revoked"
    if not was_revoked:
        journal.devices.revoke(device.device_id, now_ms, "operator")
    if not journal.devices.remove(device.device_id):
        raise PalyraError(f"no device {device.device_id!r}", "see: palyra node list")  # raced
    running = poke_service(home.run_dir, "node_rpc")
    return DeviceChange(device.device_id, device.name, was_revoked, running)
