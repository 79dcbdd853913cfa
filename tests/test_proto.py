"""The wire contract: committed stubs match the .proto, and the pairing handshake's
cryptography (palyra_proto.pairing) behaves as SPEC §5 says, at the level of bytes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from palyra_proto import generate
from palyra_proto.pairing import (
    TRIVIAL_PINS,
    DaemonPake,
    NodePake,
    PairingFormatError,
    PairUri,
    PakeError,
    check_host,
    check_pin,
    daemon_mac,
    format_address,
    generate_pin,
    macs_equal,
    new_token,
    node_mac,
    parse_address,
    parse_pair_uri,
    transcript,
)

# Lines that carry the generator's own version: a newer grpcio-tools may stamp another one
# without the contract changing.
_VERSION_LINE = re.compile(
    r"Protobuf Python Version|GRPC_GENERATED_VERSION =|^\s*\d+,\s*$|mypy-protobuf|isort:skip_file"
)


def _normalized(text: str) -> list[str]:
    return [line for line in text.splitlines() if not _VERSION_LINE.search(line)]


@pytest.mark.timeout(60)
def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    for path in generate.generate(tmp_path):
        committed = generate.PACKAGE_DIR / path.name
        assert committed.exists(), f"{committed.name} is not committed"
        assert _normalized(committed.read_text()) == _normalized(path.read_text()), (
            f"{committed.name} differs from the .proto: run python -m palyra_proto.generate"
        )


def test_trivial_pins_are_the_twenty_spec_names() -> None:
    assert len(TRIVIAL_PINS) == 20
    assert {"000000", "999999", "012345", "456789", "987654", "543210"} <= TRIVIAL_PINS
    assert "123457" not in TRIVIAL_PINS
    for _ in range(2000):
        pin = generate_pin()
        assert re.fullmatch(r"\d{6}", pin) and pin not in TRIVIAL_PINS


def test_check_pin_accepts_typing_habits_and_refuses_the_rest() -> None:
    assert check_pin(" 123-456 ") == "123456"
    for bad in ("12345", "1234567", "12a456", ""):
        with pytest.raises(PairingFormatError):
            check_pin(bad)


def _handshake(pin_node: str, pin_daemon: str) -> tuple[bool, bool]:
    """Run both sides; return (daemon accepts the node's MAC, node accepts the daemon's)."""
    node, daemon = NodePake(pin_node), DaemonPake(pin_daemon)
    k_daemon = daemon.finish(node.message)
    k_node = node.finish(daemon.message)
    t = transcript(node.message, daemon.message, "w1", "ab" * 32, b"csr")
    n_ok = macs_equal(node_mac(k_node, t), node_mac(k_daemon, t))
    d_ok = macs_equal(daemon_mac(k_daemon, t, "r1"), daemon_mac(k_node, t, "r1"))
    return n_ok, d_ok


def test_same_pin_confirms_both_ways_and_a_wrong_pin_neither() -> None:
    assert _handshake("482913", "482913") == (True, True)
    assert _handshake("482913", "482914") == (False, False)


def test_macs_are_directional_and_cover_every_field() -> None:
    node, daemon = NodePake("482913"), DaemonPake("482913")
    k = daemon.finish(node.message)
    base = ("w1", "ab" * 32, b"csr")
    t = transcript(node.message, daemon.message, *base)
    mac = node_mac(k, t)
    # the daemon's MAC is never the node's (a relay cannot reflect one as the other)
    assert not macs_equal(mac, daemon_mac(k, t, ""))
    for changed in (
        transcript(node.message, daemon.message, "w2", base[1], base[2]),
        transcript(node.message, daemon.message, base[0], "cd" * 32, base[2]),
        transcript(node.message, daemon.message, base[0], base[1], b"csr2"),
        transcript(daemon.message, node.message, *base),
    ):
        assert not macs_equal(mac, node_mac(k, changed))
    assert not macs_equal(daemon_mac(k, t, "r1"), daemon_mac(k, t, "r2"))


def test_a_relay_that_alters_a_pake_message_breaks_confirmation() -> None:
    node, daemon = NodePake("482913"), DaemonPake("482913")
    tampered = bytearray(node.message)
    tampered[5] ^= 0x01
    try:
        k_daemon = daemon.finish(bytes(tampered))
    except PakeError:
        return  # not a group element: refused outright, which is also a failure
    k_node = node.finish(daemon.message)
    t_node = transcript(node.message, daemon.message, "w", "ab" * 32, b"c")
    t_daemon = transcript(bytes(tampered), daemon.message, "w", "ab" * 32, b"c")
    assert not macs_equal(node_mac(k_node, t_node), node_mac(k_daemon, t_daemon))


def test_garbage_pake_messages_raise_pake_error() -> None:
    for bad in (b"", b"\x00" * 33, b"x" * 500):
        with pytest.raises(PakeError):
            DaemonPake("482913").finish(bad)


def test_keys_do_not_print_their_secrets() -> None:
    k = DaemonPake("482913").finish(NodePake("482913").message)
    assert "secret" in repr(k) and k.node_to_daemon.hex() not in repr(k)


def test_pair_uri_round_trip_and_checks() -> None:
    uri = PairUri("192.168.1.5", 7141, "ab" * 32, new_token(), 1_900_000_000)
    back = parse_pair_uri(uri.to_uri())
    assert back == uri
    assert uri.token not in repr(uri)
    v6 = PairUri("::1", 7141, "ab" * 32, new_token(), 1)
    assert parse_pair_uri(v6.to_uri()).host == "::1"
    good = uri.to_uri()
    for bad, field in (
        (good.replace("palyra://", "http://"), "palyra://pair"),
        (good.replace("v=1", "v=2"), "version"),
        (good.replace("port=7141", "port=70000"), "port"),
        (good.replace("ca=sha256:", "ca=md5:"), "ca="),
        (good.replace(f"token={uri.token}", "token=abc"), "128 bits"),
        (good.replace(f"token={uri.token}", "token=a%20b"), "base64url"),
        (good + "&host=evil", "exactly one host"),
        (good.replace("exp=1900000000", "exp=soon"), "exp="),
        ("palyra://pair?" + "x" * 2000, "too long"),
    ):
        with pytest.raises(PairingFormatError, match=field):
            parse_pair_uri(bad)


def test_addresses_and_hosts() -> None:
    assert format_address("::1", 7) == "[::1]:7"
    assert format_address("box.local", 7) == "box.local:7"
    assert parse_address("[::1]:7142") == ("::1", 7142)
    assert parse_address("10.0.0.2:7142") == ("10.0.0.2", 7142)
    assert check_host("[::1]") == "::1"
    assert check_host("Box.Local") == "box.local"
    for bad in ("a b", "http://x", "x:1", ""):
        with pytest.raises(PairingFormatError):
            check_host(bad)
    for bad in ("x", "x:0", "x:99999", "a b:1"):
        with pytest.raises(PairingFormatError):
            parse_address(bad)
