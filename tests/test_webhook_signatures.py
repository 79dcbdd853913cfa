"""Webhook signatures (SPEC §4.5): the header forms, timestamp mode and its window, replay."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from palyrad.runtime.webhook_signatures import (
    MAX_SKEW_S,
    Refusal,
    Verdict,
    parse_signature,
    parse_timestamp,
    pick_signature,
    sign,
    verify,
)

SECRET = b"0123456789abcdef-secret"
BODY = b'{"action": "opened"}'
NOW = 1_774_000_000


def _mac(msg: bytes, secret: bytes = SECRET) -> str:
    # Computed here independently of the module under test.
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def test_sign_matches_an_independent_hmac() -> None:
    assert sign(SECRET, BODY) == "sha256=" + _mac(BODY)
    assert sign(SECRET, BODY, NOW) == "sha256=" + _mac(b"%d." % NOW + BODY)


def test_body_only_signature_from_either_header() -> None:
    value = "sha256=" + _mac(BODY)
    for header in (pick_signature(value, None), pick_signature(None, value)):
        v = verify(SECRET, BODY, header, None, NOW, False)
        assert v == Verdict(None, mac=bytes.fromhex(_mac(BODY)), timestamp=None)
        assert v.ok


def test_the_palyra_header_wins_when_both_are_sent() -> None:
    assert pick_signature("a", "b") == "a"
    assert pick_signature(None, None) is None
    good, bad = sign(SECRET, BODY), sign(b"another secret!!", BODY)
    assert not verify(SECRET, BODY, pick_signature(bad, good), None, NOW, False).ok


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("sha256=" + "ab" * 32, True),
        ("sha256=" + "AB" * 32, True),  # upper-case hex: the same bytes, the same replay key
        ("  sha256=" + "ab" * 32 + "\t", True),  # HTTP optional whitespace
        ("SHA256=" + "ab" * 32, False),
        ("sha1=" + "ab" * 20, False),
        ("sha256=" + "ab" * 31, False),  # too short
        ("sha256=" + "ab" * 33, False),  # too long
        ("sha256=" + "zz" * 32, False),  # not hex
        ("sha256=" + "ab" * 16 + " " + "ab" * 16, False),  # bytes.fromhex would allow it
        ("ab" * 32, False),  # no prefix
        ("sha256=", False),
        ("", False),
    ],
)
def test_parse_signature(value: str, valid: bool) -> None:
    got = parse_signature(value)
    assert (got is not None) == valid
    if valid:
        assert got == b"\xab" * 32


def test_upper_case_hex_verifies() -> None:
    v = verify(SECRET, BODY, "sha256=" + _mac(BODY).upper(), None, NOW, False)
    assert v.ok and v.mac == bytes.fromhex(_mac(BODY))


@pytest.mark.parametrize(
    ("signature", "refusal"),
    [
        (None, Refusal.MISSING_SIGNATURE),
        ("sha256=" + _mac(BODY)[:-2], Refusal.MALFORMED_SIGNATURE),
        ("sha256=" + _mac(BODY)[:-1] + "g", Refusal.MALFORMED_SIGNATURE),
        ("sha256=" + _mac(b"another body"), Refusal.BAD_SIGNATURE),
        ("sha256=" + _mac(BODY, b"the wrong secret"), Refusal.BAD_SIGNATURE),
        ("sha256=" + _mac(b"%d." % NOW + BODY), Refusal.BAD_SIGNATURE),  # ts mode, no ts
    ],
)
def test_body_only_refusals(signature: str | None, refusal: Refusal) -> None:
    v = verify(SECRET, BODY, signature, None, NOW, False)
    assert v == Verdict(refusal) and not v.ok and v.mac == b""


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(0, True), (-MAX_SKEW_S, True), (MAX_SKEW_S, True), (-301, False), (301, False)],
)
def test_timestamp_window(offset: int, ok: bool) -> None:
    ts = NOW + offset
    v = verify(SECRET, BODY, sign(SECRET, BODY, ts), str(ts), NOW, False)
    assert v == (
        Verdict(None, bytes.fromhex(_mac(b"%d." % ts + BODY)), ts)
        if ok
        else Verdict(Refusal.STALE_TIMESTAMP)
    )


def test_fractional_now_past_the_window() -> None:
    ts = NOW - MAX_SKEW_S
    assert not verify(SECRET, BODY, sign(SECRET, BODY, ts), str(ts), NOW + 0.5, False).ok


def test_timestamp_mode_signs_the_timestamp() -> None:
    # A body-only signature sent with a timestamp is refused: the MAC must cover it.
    assert verify(SECRET, BODY, sign(SECRET, BODY), str(NOW), NOW, False) == Verdict(
        Refusal.BAD_SIGNATURE
    )
    # Another timestamp than the signed one.
    assert verify(SECRET, BODY, sign(SECRET, BODY, NOW), str(NOW + 1), NOW, False) == Verdict(
        Refusal.BAD_SIGNATURE
    )
    # A signature of another body with the right timestamp.
    assert not verify(SECRET, BODY, sign(SECRET, b"{}", NOW), str(NOW), NOW, False).ok


def test_require_timestamp() -> None:
    assert verify(SECRET, BODY, sign(SECRET, BODY), None, NOW, True) == Verdict(
        Refusal.TIMESTAMP_REQUIRED
    )
    assert verify(SECRET, BODY, sign(SECRET, BODY, NOW), str(NOW), NOW, True).ok


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1774000000", 1_774_000_000),
        (" 1774000000 ", 1_774_000_000),
        ("-5", None),
        ("+1774000000", None),
        ("1774000000.5", None),
        ("1774000000000", None),  # milliseconds (13 digits): not unix seconds
        ("", None),
        ("abc", None),
        ("١٢٣", None),  # Unicode digits are not ASCII digits
    ],
)
def test_parse_timestamp(value: str, expected: int | None) -> None:
    assert parse_timestamp(value) == expected


def test_malformed_timestamp_is_refused() -> None:
    assert verify(SECRET, BODY, sign(SECRET, BODY), "soon", NOW, False) == Verdict(
        Refusal.MALFORMED_TIMESTAMP
    )


def test_a_timestamped_message_is_never_a_body_only_one() -> None:
    """``"<ts>." + body`` is what a timestamped signature covers: as a body-only request it
    would replay a captured timestamped one forever, timestamp moved into the body."""
    captured = sign(SECRET, BODY, NOW)
    forged = b"%d." % NOW + BODY
    assert verify(SECRET, forged, captured, None, NOW, False) == Verdict(Refusal.AMBIGUOUS_BODY)
    # The timestamped request itself, and bodies that merely contain digits, still verify.
    assert verify(SECRET, BODY, captured, str(NOW), NOW, False).ok
    for body in (b"12", b'{"n": 1.5}', b"v1.2 released", b" 12.5"):
        assert verify(SECRET, body, sign(SECRET, body), None, NOW, False).ok
