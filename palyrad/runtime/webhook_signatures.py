"""Webhook request signatures (SPEC §4.5): pure functions of (secret, body, headers, now).

``X-Palyra-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` (GitHub's
``X-Hub-Signature-256`` is the same thing). With ``X-Palyra-Timestamp: <unix seconds>`` the
MAC is over ``b"<timestamp>." + body`` and the timestamp must be within ``MAX_SKEW_S`` of now,
past or future. The listener turns every refusal into a 401; ``Refusal`` says why, for the
daemon log (never the secret, never the expected MAC).

Decisions: the algorithm prefix is exactly ``sha256=`` (lower case, as GitHub sends it); the
64 hex digits may be upper or lower case, since the replay cache keys on the MAC's bytes, not
the header's spelling, so a re-cased copy is still the same signature. The timestamp is 1-12
ASCII digits (no sign, no fraction). When both signature headers are present,
``X-Palyra-Signature`` is the one checked. A body-only signature over a body that starts
with 1-12 digits and a dot is refused (``AMBIGUOUS_BODY``): that is the message of a
timestamped signature, which must not be replayable with its timestamp moved into the body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

SIGNATURE_HEADER = "X-Palyra-Signature"
GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
TIMESTAMP_HEADER = "X-Palyra-Timestamp"
MAX_SKEW_S = 300  # a timestamped request is valid this long either side of now
MAC_BYTES = hashlib.sha256().digest_size

_SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_TIMESTAMPED_MESSAGE = re.compile(rb"[0-9]{1,12}\.")  # how a timestamped MAC's message starts
_OWS = " \t"  # optional whitespace around an HTTP field value (RFC 9110 §5.5)


class Refusal(StrEnum):
    """Why a request's signature was refused (all of them answer 401)."""

    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    TIMESTAMP_REQUIRED = "timestamp_required"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAY = "replay"
    AMBIGUOUS_BODY = "ambiguous_body"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of ``verify``: accepted (``refusal`` None, ``mac`` the verified MAC's
    bytes, the replay cache's key) or refused."""

    refusal: Refusal | None
    mac: bytes = b""
    timestamp: int | None = None  # the verified X-Palyra-Timestamp, when there was one

    @property
    def ok(self) -> bool:
        return self.refusal is None


def pick_signature(palyra: str | None, github: str | None) -> str | None:
    """The signature header value to check: ``X-Palyra-Signature`` when present, else
    ``X-Hub-Signature-256``."""
    return palyra if palyra is not None else github


def parse_signature(value: str) -> bytes | None:
    """The MAC bytes of a ``sha256=<64 hex>`` header value; None when malformed."""
    m = _SIGNATURE_RE.fullmatch(value.strip(_OWS))
    return None if m is None else bytes.fromhex(m.group(1))


def parse_timestamp(value: str) -> int | None:
    """Unix seconds from an ``X-Palyra-Timestamp`` value; None when malformed."""
    text = value.strip(_OWS)
    return int(text) if _TIMESTAMP_RE.fullmatch(text) else None


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value a sender computes (for tests, docs and ``palyra`` itself)."""
    msg = body if timestamp is None else b"%d." % timestamp + body
    return "sha256=" + hmac.new(secret, msg, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_s: float,
    require_timestamp: bool,
) -> Verdict:
    """Check a request's signature (and timestamp) in constant time against ``secret``.

    ``signature`` is the value ``pick_signature`` chose, ``timestamp`` the
    ``X-Palyra-Timestamp`` value (None when absent). A replay check is the caller's, on the
    accepted verdict's ``mac`` (the listener's durable cache, ``journal.webhooks``).
    """
    if signature is None:
        return Verdict(Refusal.MISSING_SIGNATURE)
    given = parse_signature(signature)
    if given is None:
        return Verdict(Refusal.MALFORMED_SIGNATURE)
    ts: int | None = None
    if timestamp is None:
        if require_timestamp:
            return Verdict(Refusal.TIMESTAMP_REQUIRED)
        if _TIMESTAMPED_MESSAGE.match(body):
            # "<digits>." + rest is exactly what a timestamped request signs: accepting it
            # body-only would let a captured timestamped request be replayed forever, its
            # timestamp moved into the body and its header dropped.
            return Verdict(Refusal.AMBIGUOUS_BODY)
        msg = body
    else:
        ts = parse_timestamp(timestamp)
        if ts is None:
            return Verdict(Refusal.MALFORMED_TIMESTAMP)
        if abs(now_s - ts) > MAX_SKEW_S:
            return Verdict(Refusal.STALE_TIMESTAMP)
        # Over the header's digits as sent (leading zeros included): what the sender signed.
        msg = timestamp.strip(_OWS).encode("ascii") + b"." + body
    expected = hmac.new(secret, msg, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        return Verdict(Refusal.BAD_SIGNATURE)
    return Verdict(None, mac=given, timestamp=ts)
