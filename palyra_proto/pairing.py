"""The pairing handshake's cryptography and formats, shared byte for byte by both ends.

The daemon (``palyrad.services.node_rpc``) and the node (``node/``) both import this module,
so the transcript a MAC covers, the key derivation and the ``palyra://pair`` URI can never
differ between them. SPEC §5 gives the rules; ``docs/pairing.md`` the timelines.

PIN method (SPAKE2, node = role A, daemon = role B)::

    node   -> daemon  PinStart(msg_A)
    daemon -> node    (handshake_id, window_id, msg_B)          # the slot is now taken
    node   -> daemon  PinConfirm(csr, MAC_n)                    # MAC_n first: the node proves
    daemon -> node    (request_id, MAC_d, ca)                   # the daemon answers only then

    K            = SPAKE2 key (32 bytes; equal on both sides only if the PINs are equal)
    k_n, k_d, s  = HKDF-SHA256(K, label) for "node->daemon", "daemon->node", "await"
    T            = lp("palyra-pair-v1", msg_A, msg_B, window_id, ca_spki_sha256, csr_der)
    MAC_n        = HMAC-SHA256(k_n, T)
    MAC_d        = HMAC-SHA256(k_d, T || lp(request_id))

``lp`` joins its parts, each prefixed by its length as 4 bytes big-endian, so no two
different transcripts encode alike. Each MAC key works in one direction only, so a relay
cannot reflect the node's MAC back as the daemon's. ``s`` is the secret the node presents to
collect its certificate once approved (the daemon keeps only its SHA-256).

Nothing here reads the clock or the network; everything is a function of its inputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

PROTOCOL_LABEL = b"palyra-pair-v1"
ID_NODE = b"palyra-node"
ID_DAEMON = b"palyrad"
MAX_PAKE_MESSAGE = 128  # SPAKE2 messages are 33 bytes with the default group

PIN_DIGITS = 6
TOKEN_BYTES = 24  # 192 bits, base64url: 32 characters
MIN_TOKEN_BYTES = 16  # what a node accepts in a URI: ≥ 128 bits
URI_SCHEME = "palyra"
URI_VERSION = "1"


class PairingFormatError(ValueError):
    """A PIN, token or pairing URI that is not well-formed (the message names the field)."""


# --------------------------------------------------------------------------------------
# PINs


def _trivial_pins() -> frozenset[str]:
    repeated = {str(d) * PIN_DIGITS for d in range(10)}
    ascending = {"".join(str(d + i) for i in range(PIN_DIGITS)) for d in range(10 - PIN_DIGITS + 1)}
    descending = {"".join(str(d - i) for i in range(PIN_DIGITS)) for d in range(PIN_DIGITS - 1, 10)}
    return frozenset(repeated | ascending | descending)


TRIVIAL_PINS = _trivial_pins()  # 10 repeated, 012345…456789, 987654…543210: 20 in all


def generate_pin() -> str:
    """A uniformly random 6-digit PIN that is not one of the 20 trivial ones."""
    while True:
        pin = f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"
        if pin not in TRIVIAL_PINS:
            return pin


def check_pin(text: str) -> str:
    """The PIN as typed (spaces and dashes allowed: ``123 456``); PairingFormatError else."""
    pin = re.sub(r"[\s-]", "", text)
    if not re.fullmatch(rf"[0-9]{{{PIN_DIGITS}}}", pin):
        raise PairingFormatError(f"a PIN is {PIN_DIGITS} digits")
    return pin


# --------------------------------------------------------------------------------------
# Key confirmation


def lp(*parts: bytes) -> bytes:
    """Length-prefixed concatenation: an unambiguous encoding of a sequence of byte strings."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _hkdf(key: bytes, label: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) for one 32-byte output: extract with the protocol label as
    salt, expand with ``label`` as info."""
    prk = hmac.new(PROTOCOL_LABEL, key, hashlib.sha256).digest()
    return hmac.new(prk, label + b"\x01", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class ConfirmationKeys:
    """The keys derived from the SPAKE2 key: one MAC key per direction, and the await
    secret. ``repr`` shows nothing: these are secrets."""

    node_to_daemon: bytes
    daemon_to_node: bytes
    await_secret: bytes

    def __repr__(self) -> str:
        return "ConfirmationKeys(<secret>)"

    @classmethod
    def derive(cls, pake_key: bytes) -> ConfirmationKeys:
        return cls(
            node_to_daemon=_hkdf(pake_key, b"palyra pair node->daemon"),
            daemon_to_node=_hkdf(pake_key, b"palyra pair daemon->node"),
            await_secret=_hkdf(pake_key, b"palyra pair await"),
        )


def transcript(
    node_message: bytes, daemon_message: bytes, window_id: str, ca_spki_sha256: str, csr_der: bytes
) -> bytes:
    """What both MACs cover: both PAKE messages, the window, the CA the node was shown and
    the whole CSR."""
    return lp(
        PROTOCOL_LABEL,
        node_message,
        daemon_message,
        window_id.encode(),
        ca_spki_sha256.lower().encode(),
        csr_der,
    )


def node_mac(keys: ConfirmationKeys, transcript_bytes: bytes) -> bytes:
    return hmac.new(keys.node_to_daemon, transcript_bytes, hashlib.sha256).digest()


def daemon_mac(keys: ConfirmationKeys, transcript_bytes: bytes, request_id: str) -> bytes:
    return hmac.new(
        keys.daemon_to_node, transcript_bytes + lp(request_id.encode()), hashlib.sha256
    ).digest()


def macs_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison (a MAC check must not leak how many bytes matched)."""
    return hmac.compare_digest(a, b)


def secret_sha256(secret: bytes) -> str:
    """How an await secret is stored and compared: its SHA-256, hex."""
    return hashlib.sha256(secret).hexdigest()


class PakeError(ValueError):
    """The peer's SPAKE2 message was malformed (not a wrong PIN: that shows at the MAC)."""


class _Pake:
    """One side of SPAKE2. The ``spake2`` package is imported here, not with the module:
    it computes its group parameters at import (~50 ms), which every ``palyra-node``
    command and node_rpc's start-up would pay for a PIN few of them use."""

    _side = ""

    def __init__(self, pin: str) -> None:
        import spake2

        role = spake2.SPAKE2_A if self._side == "A" else spake2.SPAKE2_B
        self._spake = role(check_pin(pin).encode(), idA=ID_NODE, idB=ID_DAEMON)
        self.message: bytes = self._spake.start()

    def finish(self, peer_message: bytes) -> ConfirmationKeys:
        """Keys from the peer's message; PakeError when it is not a valid group element."""
        if not peer_message or len(peer_message) > MAX_PAKE_MESSAGE:
            raise PakeError("bad PAKE message size")
        try:
            key: bytes = self._spake.finish(peer_message)
        except Exception as exc:  # the package raises several types for a bad message
            raise PakeError("bad PAKE message") from exc
        return ConfirmationKeys.derive(key)


class NodePake(_Pake):
    """The node's side (SPAKE2 role A)."""

    _side = "A"


class DaemonPake(_Pake):
    """The daemon's side (SPAKE2 role B)."""

    _side = "B"


# --------------------------------------------------------------------------------------
# The QR URI and addresses


def new_token() -> str:
    """A one-time QR token: 192 random bits, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()


def token_sha256(token: str) -> str:
    """How a token is stored and looked up: its SHA-256, hex (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets (``[::1]:7141``)."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) → (host, port); PairingFormatError when malformed."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]/]+):(\d{1,5})", text.strip())
    if m is None:
        raise PairingFormatError(f"not a host:port address: {text!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    return host, check_port(port)


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise PairingFormatError(f"port {port} is not in 1-65535")
    return port


_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9][A-Za-z0-9-]{0,62}(\.[A-Za-z0-9-]{1,63})*\.?")


def check_host(host: str) -> str:
    """A host name or IP literal a node may dial (no spaces, schemes, paths or ports)."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host):
        raise PairingFormatError(f"not a host name or IP address: {host!r}")
    return host.lower()


@dataclass(frozen=True, slots=True)
class PairUri:
    """``palyra://pair?v=1&host=H&port=P&ca=sha256:<hex>&token=<b64url>&exp=<unix s>``."""

    host: str
    port: int
    ca_spki_sha256: str
    token: str
    expires_unix_s: int

    def __repr__(self) -> str:  # the token is a secret
        return f"PairUri(host={self.host!r}, port={self.port}, ca=sha256:{self.ca_spki_sha256})"

    def to_uri(self) -> str:
        return (
            f"{URI_SCHEME}://pair?v={URI_VERSION}&host={quote(self.host, safe='')}"
            f"&port={self.port}&ca=sha256:{self.ca_spki_sha256}&token={self.token}"
            f"&exp={self.expires_unix_s}"
        )

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


MAX_URI_CHARS = 1024


def parse_pair_uri(text: str) -> PairUri:
    """Parse and check a pairing URI; PairingFormatError naming the bad field."""
    text = text.strip()
    if len(text) > MAX_URI_CHARS:
        raise PairingFormatError("the pairing URI is too long")
    parts = urlsplit(text)
    if parts.scheme != URI_SCHEME or parts.netloc != "pair":
        raise PairingFormatError("a pairing URI starts with palyra://pair?")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)

    def one(name: str) -> str:
        values = query.get(name)
        if not values or len(values) != 1 or not values[0]:
            raise PairingFormatError(f"the pairing URI needs exactly one {name}=")
        return values[0]

    if one("v") != URI_VERSION:
        raise PairingFormatError(f"unsupported pairing URI version v={one('v')}")
    host = check_host(one("host"))
    try:
        port = check_port(int(one("port")))
    except ValueError as exc:
        raise PairingFormatError("port= must be a number in 1-65535") from exc
    ca = one("ca")
    m = re.fullmatch(r"sha256:([0-9a-fA-F]{64})", ca)
    if m is None:
        raise PairingFormatError("ca= must be sha256:<64 hex digits>")
    token = one("token")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise PairingFormatError("token= must be base64url")
    raw_len = len(token) * 6 // 8
    if raw_len < MIN_TOKEN_BYTES:
        raise PairingFormatError("token= is shorter than 128 bits")
    try:
        exp = int(one("exp"))
    except ValueError as exc:
        raise PairingFormatError("exp= must be a Unix time in seconds") from exc
    return PairUri(host, port, m.group(1).lower(), token, exp)
