"""``palyra node …`` (SPEC §4.4): the operator's side of pairing and devices.

Offline part: a real journal in a temp home, records inserted through the journal API, the
click app run in-process (CliRunner). Integration part: one real palyrad (module-scoped, so
the suite stays fast) with both listeners on free ports, for ``pair-code`` and
``daemon status``'s endpoints.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from certs import load_certificate, spki_sha256
from palyra_proto.pairing import TRIVIAL_PINS, parse_pair_uri, token_sha256
from palyrad.domain.runs import new_ulid
from palyrad.journal import Device, Journal, PairingRequest, PairingWindow
from palyrad.ops import nodes
from routines.durations import DurationError, format_duration_ms, parse_duration_ms
from routines.errors import InvalidInput, PalyraError
from routines.timefmt import now_ms, parse_rfc3339
from tests.daemon_harness import Daemon, started_with_listeners
from tests.test_cli_offline import NOTE, Out, assert_error, run, run_bin

pytestmark = pytest.mark.timeout(60)

MIN = 60_000
DAY = 86_400_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

REQUEST_KEYS = {
    "request_id",
    "device_name",
    "method",
    "requested_at",
    "expires_at",
    "public_key_sha256",
    "peer",
}
DEVICE_KEYS = {
    "device_id",
    "name",
    "state",
    "paired_at",
    "last_seen_at",
    "cert_sha256",
    "cert_expires_at",
    "channels",
}
PAIR_CODE_KEYS = {"method", "code", "uri", "address", "expires_at"}


def _unix_ms_extras(keys: set[str]) -> set[str]:
    """SPEC's time fields each come with ``*_unix_ms`` (the project's convention)."""
    return {f"{k}_unix_ms" for k in keys if k.endswith("_at")}


def _sha(n: int) -> str:
    return f"{n:064x}"


# --- records -------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def journal(home: Path) -> Iterator[Journal]:
    run(home, "node", "list").ok()  # creates the home and the journal as the CLI does
    j = Journal(home / "journal.sqlite3")
    try:
        yield j
    finally:
        j.close()


def add_request(
    j: Journal, *, name: str = "phone", key: str | None = None, requested_ms: int | None = None,
    ttl_ms: int = 10 * MIN, state: str = "pending", method: str = "pin",
) -> PairingRequest:  # fmt: skip
    now = now_ms() if requested_ms is None else requested_ms
    token = _sha(2) if method == "qr" else None
    window = PairingWindow(new_ulid(), method, token, False, "127.0.0.1", now, now + ttl_ms)
    j.pairing.open_window(window, now)
    req = PairingRequest(
        request_id=new_ulid(),
        window_id=window.window_id,
        device_id=new_ulid(),
        device_name=name,
        method=method,
        peer="10.0.0.5",
        public_key_sha256=key or _sha(int.from_bytes(os.urandom(8))),
        public_key_der=b"\x30der",
        await_secret_sha256=_sha(1),
        requested_ms=now,
        expires_ms=now + ttl_ms,
        state=state,
    )
    j.pairing.add_request(req)
    return req


def add_device(j: Journal, name: str = "laptop", **kw: Any) -> Device:
    device_id = new_ulid()
    base = Device(
        device_id=device_id,
        name=name,
        state="active",
        public_key_sha256=_sha(int.from_bytes(os.urandom(8))),
        cert_sha256=_sha(int.from_bytes(os.urandom(8))),
        cert_expires_ms=now_ms() + 30 * DAY,
        paired_ms=now_ms(),
        delivery_floor=0,
    )
    device = replace(base, **kw)
    j.devices.add(device)
    return device


# --- ttl ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30s", 30_000),
        ("10m", 600_000),
        ("2h", 7_200_000),
        ("1h30m", 5_400_000),
        ("24h", DAY),
        ("90", 90_000),
        (" 1H 30M ", 5_400_000),
        ("1d", DAY),
    ],
)
def test_ttl_accepts_the_usual_spellings(text: str, ms: int) -> None:
    assert nodes.parse_ttl(text) == ms


@pytest.mark.parametrize("text", ["29s", "24h1s", "2d", "0", "0s"])
def test_ttl_out_of_range_is_invalid_input_naming_the_range(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        nodes.parse_ttl(text)
    assert "30s to 24h" in (exc.value.hint or "")


@pytest.mark.parametrize("text", ["", "1.5h", "10ms", "m", "30m1h", "-5m", "1h1h", "ten", "1e3"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration_ms(text)
    with pytest.raises(InvalidInput):
        nodes.parse_ttl(text)


@pytest.mark.parametrize("ms", [0, 30_000, 600_000, 5_400_000, DAY + 61_000])
def test_format_duration_reads_back(ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(ms)) == ms


# --- pending, approve, reject --------------------------------------------------------------


def test_empty_home(home: Path) -> None:
    assert run(home, "node", "pending", "--json").ok().json() == {"requests": []}
    assert run(home, "node", "list", "--json").ok().json() == {"devices": []}
    assert "no pending pairing requests" in run(home, "node", "pending").ok().stdout
    assert "no paired devices" in run(home, "node", "list").ok().stdout


def test_pending_lists_waiting_requests_in_the_spec_shape(home: Path, journal: Journal) -> None:
    old = add_request(journal, name="old", requested_ms=now_ms() - 20 * MIN)  # expired
    done = add_request(journal, name="done", state="rejected")
    key = "ab12cd34ef56ab78" + "0" * 48
    req = add_request(journal, name="phone", key=key, method="qr")
    out = run(home, "node", "pending", "--json").ok()
    assert out.stderr == ""
    doc = out.json()
    assert list(doc) == ["requests"]
    (item,) = doc["requests"]
    assert set(item) == REQUEST_KEYS | _unix_ms_extras(REQUEST_KEYS)
    assert item["request_id"] == req.request_id
    assert (item["device_name"], item["method"], item["peer"]) == ("phone", "qr", "10.0.0.5")
    assert item["public_key_sha256"] == key
    assert parse_rfc3339(item["requested_at"]) == item["requested_at_unix_ms"] == req.requested_ms
    assert parse_rfc3339(item["expires_at"]) == item["expires_at_unix_ms"] == req.expires_ms
    assert old.request_id not in out.stdout and done.request_id not in out.stdout

    text = run(home, "node", "pending").ok().stdout
    assert "ab12cd34ef56ab78" in text and key not in text  # the first 16 hex digits
    assert "compare KEY" in text and req.request_id in text


def test_approve_and_reject_decide_once(home: Path, journal: Journal) -> None:
    a = add_request(journal, name="tablet")
    out = run(home, "node", "approve", a.request_id.lower()).ok()  # ids in any case
    assert out.stdout.startswith(f"approved {a.request_id} (tablet, key ")
    assert NOTE in out.stderr  # the daemon is stopped: the node gets it once it runs
    got = journal.pairing.get_request(a.request_id)
    assert got is not None and got.state == "approved"
    assert run(home, "node", "pending", "--json").ok().json() == {"requests": []}

    line = assert_error(run(home, "node", "approve", a.request_id), 1, "already approved")
    assert "palyra node pending" in line
    assert_error(run(home, "node", "reject", a.request_id), 1, "already approved")

    b = add_request(journal, name="watch")
    assert run(home, "node", "reject", b.request_id).ok().stdout.startswith("rejected ")
    got = journal.pairing.get_request(b.request_id)
    assert got is not None and got.state == "rejected"


def test_approve_refuses_unknown_and_expired_requests(home: Path, journal: Journal) -> None:
    assert_error(run(home, "node", "approve", new_ulid()), 1, "no pairing request")
    assert_error(run(home, "node", "reject", "not-an-id"), 1, "no pairing request")
    late = add_request(journal, requested_ms=now_ms() - 20 * MIN)
    assert_error(run(home, "node", "approve", late.request_id), 1, "expired")
    got = journal.pairing.get_request(late.request_id)
    assert got is not None and got.state == "pending"


# --- list, revoke, remove --------------------------------------------------------------------


def test_list_shows_devices_and_the_channels_of_their_open_watches(
    home: Path, journal: Journal
) -> None:
    now = now_ms()
    a = add_device(journal, "a", last_seen_ms=now)
    b = add_device(journal, "b")
    c = add_device(journal, "c")
    r = add_device(journal, "r")
    journal.devices.revoke(r.device_id, now)
    journal.devices.open_watch("s1", a.device_id, ["ops", "backup"], now)
    journal.devices.open_watch("s2", a.device_id, ["backup", "alerts"], now)
    journal.devices.open_watch("s3", b.device_id, ["ops"], now)
    journal.devices.open_watch("s4", b.device_id, ["*"], now)

    doc = run(home, "node", "list", "--json").ok().json()
    assert list(doc) == ["devices"]
    by_name = {d["name"]: d for d in doc["devices"]}
    assert [d["name"] for d in doc["devices"]] == ["a", "b", "c", "r"]  # pairing order
    for d in doc["devices"]:
        assert set(d) == DEVICE_KEYS | _unix_ms_extras(DEVICE_KEYS)
    # no daemon: stream records are what a crash left behind, and nothing is watching
    assert all(d["channels"] == [] for d in doc["devices"])
    from palyrad.ops.nodes import devices

    live = {d["name"]: d["channels"] for d in devices(journal)}  # as node_rpc keeps them
    assert live["a"] == ["alerts", "backup", "ops"]
    assert live["b"] == ["*"]
    assert live["c"] == []
    assert by_name["a"]["last_seen_at_unix_ms"] == now
    assert parse_rfc3339(by_name["a"]["last_seen_at"]) == now
    assert by_name["c"]["last_seen_at"] is None and by_name["c"]["last_seen_at_unix_ms"] is None
    assert by_name["c"]["device_id"] == c.device_id
    assert by_name["c"]["cert_sha256"] == c.cert_sha256
    assert by_name["c"]["cert_expires_at_unix_ms"] == c.cert_expires_ms
    assert parse_rfc3339(by_name["c"]["paired_at"]) == c.paired_ms
    assert [d["state"] for d in doc["devices"]] == ["active", "active", "active", "revoked"]

    text = run(home, "node", "list").ok().stdout
    assert a.device_id in text and "revoked" in text


def test_revoke_keeps_the_record_and_is_idempotent(home: Path, journal: Journal) -> None:
    d = add_device(journal, "laptop")
    version = journal.devices.version()
    out = run(home, "node", "revoke", d.device_id).ok()
    assert out.stdout == f"revoked {d.device_id} (laptop)\n"
    assert NOTE in out.stderr
    got = journal.devices.get(d.device_id)
    assert got is not None and got.state == "revoked" and got.revoke_reason == "operator"
    assert journal.devices.version() > version  # node_rpc's registry notices

    again = run(home, "node", "revoke", d.device_id.lower()).ok()
    assert again.stdout == f"revoked {d.device_id} (laptop)\n"
    assert f"note: {d.device_id} was already revoked" in again.stderr
    assert run(home, "node", "list", "--json").ok().json()["devices"][0]["state"] == "revoked"

    assert_error(run(home, "node", "revoke", new_ulid()), 1, "no device")


def test_remove_revokes_then_deletes(home: Path, journal: Journal) -> None:
    active = add_device(journal, "active")
    revoked = add_device(journal, "revoked")
    journal.devices.revoke(revoked.device_id, now_ms())
    journal.devices.open_watch("s1", active.device_id, ["ops"], now_ms())

    out = run(home, "node", "remove", active.device_id).ok()
    assert out.stdout == f"revoked and removed {active.device_id} (active)\n"
    assert NOTE in out.stderr
    out = run(home, "node", "remove", revoked.device_id).ok()
    assert out.stdout == f"removed {revoked.device_id} (revoked)\n"
    assert journal.devices.all() == [] and journal.devices.watches() == []
    assert run(home, "node", "list", "--json").ok().json() == {"devices": []}

    assert_error(run(home, "node", "remove", active.device_id), 1, "no device")


# --- pair-code without a daemon ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--ttl", "10x"], "--ttl"),
        (["--ttl", "5s"], "--ttl"),
        (["--ttl", "25h"], "--ttl"),
        (["--png", "qr.png"], "--png needs --method qr"),
        (["--method", "pin", "--png", "qr.png"], "--png needs --method qr"),
        (["--host", "not a host"], "--host"),
        (["--host", "http://x/"], "--host"),
        (["--method", "morse"], "invalid value"),
    ],
)
def test_pair_code_invalid_input_is_exit_2(home: Path, args: list[str], fragment: str) -> None:
    assert_error(run(home, "node", "pair-code", *args), 2, fragment)


def test_pair_code_needs_the_daemon(home: Path) -> None:
    out = run_bin("--home", str(home), "node", "pair-code", "--json")
    line = assert_error(out, 1, "palyrad is not running")
    assert "palyra daemon start" in line


def test_pair_code_refuses_a_png_path_that_is_not_a_regular_file(
    home: Path, tmp_path: Path
) -> None:
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "target.png")
    for name in ("dir.png", "link.png"):
        path = tmp_path / name
        args = ["node", "pair-code", "--method", "qr", "--png", str(path)]
        assert_error(run(home, *args), 1, "not a regular file")
    assert not (tmp_path / "target.png").exists()  # the link was not followed
    missing = tmp_path / "nowhere" / "qr.png"
    args = ["node", "pair-code", "--method", "qr", "--png", str(missing)]
    assert_error(run(home, *args), 1, "does not exist")


@pytest.mark.parametrize(
    ("reply", "code", "fragment"),
    [
        ({"ok": False, "error": "bad_request", "message": "bad ttl"}, 2, "bad ttl"),
        (
            {"ok": False, "error": "unavailable", "message": "not up (see the log)"},
            1,
            "not up (see the log)",
        ),
        ({"ok": False, "error": "internal"}, 1, "(internal)"),
    ],
)
def test_pair_code_reports_the_daemons_refusal(
    home: Path, monkeypatch: pytest.MonkeyPatch, reply: dict[str, Any], code: int, fragment: str
) -> None:
    monkeypatch.setattr(nodes, "request", lambda *a, **k: reply)
    assert_error(run(home, "node", "pair-code"), code, fragment)


def test_pair_code_when_node_rpc_does_not_answer(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow(*_a: object, **_k: object) -> None:
        raise TimeoutError

    monkeypatch.setattr(nodes, "request", slow)
    assert_error(run(home, "node", "pair-code"), 1, "did not answer in time")


# --- the private file writer ----------------------------------------------------------------


def test_write_private_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "qr.png"
    old = os.umask(0)
    try:
        nodes.write_private_file(path, b"one")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"one"
        path.chmod(0o644)
        nodes.write_private_file(path, b"two")  # a regular file is replaced in one step
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qr.png"]  # no temporary left
    with pytest.raises(PalyraError, match="not a regular file"):
        nodes.write_private_file(tmp_path, b"x")


# --- with a real daemon -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with started_with_listeners(tmp_path_factory.mktemp("node-cli") / "home") as d:
        yield d


def live_run(d: Daemon, *args: str) -> Out:
    return run(d.root, *args)


def endpoints(d: Daemon) -> dict[str, Any]:
    doc = live_run(d, "daemon", "status", "--json").ok().json()
    assert doc["running"] is True
    result: dict[str, Any] = doc["endpoints"]
    return result


def test_status_reports_the_listeners(live: Daemon) -> None:
    ep = endpoints(live)
    assert set(ep) == {"pairing", "node", "webhook"}
    assert re.fullmatch(r"127\.0\.0\.1:\d{1,5}", ep["pairing"])
    assert re.fullmatch(r"127\.0\.0\.1:\d{1,5}", ep["node"])
    assert re.fullmatch(r"127\.0\.0\.1:\d{1,5}", ep["webhook"])
    assert len({ep["pairing"], ep["node"], ep["webhook"]}) == 3


def test_pair_code_pin(live: Daemon) -> None:
    before = now_ms()
    out = live_run(live, "node", "pair-code", "--json", "--ttl", "2m")
    after = now_ms()
    doc = out.ok().json()
    assert set(doc) == PAIR_CODE_KEYS | {"expires_at_unix_ms"}
    assert doc["method"] == "pin" and doc["uri"] is None
    assert re.fullmatch(r"[0-9]{6}", doc["code"]) and doc["code"] not in TRIVIAL_PINS
    assert doc["address"] == endpoints(live)["pairing"]
    assert before + 2 * MIN <= doc["expires_at_unix_ms"] <= after + 2 * MIN
    assert parse_rfc3339(doc["expires_at"]) == doc["expires_at_unix_ms"]
    window = live.journal.pairing.windows(1)[0]
    assert (window.method, window.token_sha256, window.closed_ms) == ("pin", None, None)
    assert window.expires_ms == doc["expires_at_unix_ms"]


def test_pair_code_qr(live: Daemon) -> None:
    doc = live_run(live, "node", "pair-code", "--method", "qr", "--json").ok().json()
    assert set(doc) == PAIR_CODE_KEYS | {"expires_at_unix_ms"}
    assert doc["method"] == "qr"
    uri = parse_pair_uri(doc["uri"])
    ca = load_certificate(live.root / "certs" / "ca.crt")
    assert uri.ca_spki_sha256 == spki_sha256(ca)
    assert uri.token == doc["code"]
    assert uri.address == doc["address"] == endpoints(live)["pairing"]
    assert uri.expires_unix_s == doc["expires_at_unix_ms"] // 1000
    window = live.journal.pairing.windows(1)[0]
    assert window.method == "qr" and window.token_sha256 == token_sha256(doc["code"])
    assert doc["code"] not in orjson.dumps(window.failure_peers).decode()


def test_a_new_pair_code_supersedes_the_previous_window(live: Daemon) -> None:
    live_run(live, "node", "pair-code", "--json").ok()
    first = live.journal.pairing.windows(1)[0]
    live_run(live, "node", "pair-code", "--method", "qr", "--json").ok()
    newest, previous = live.journal.pairing.windows(2)
    assert previous.window_id == first.window_id
    assert previous.close_reason == "superseded" and previous.closed_ms is not None
    assert newest.closed_ms is None and newest.method == "qr"
    open_now = live.journal.pairing.open_window_now(now_ms())
    assert open_now is not None and open_now.window_id == newest.window_id


def test_pair_code_png(live: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "pair.png"
    args = ["node", "pair-code", "--method", "qr", "--png", str(path), "--json"]
    doc = live_run(live, *args).ok().json()  # stdout is still exactly one JSON document
    assert doc["method"] == "qr"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(PNG_MAGIC)
    first = path.read_bytes()
    path.chmod(0o644)
    live_run(live, *args).ok()  # an existing regular file is replaced, 0600 again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(PNG_MAGIC) and path.read_bytes() != first


def test_pair_code_text_output(live: Daemon) -> None:
    port = endpoints(live)["pairing"].rsplit(":", 1)[1]
    out = live_run(live, "node", "pair-code").ok()
    window = live.journal.pairing.windows(1)[0]
    assert window.method == "pin" and window.closed_ms is None
    assert f"palyra-node pair --host 127.0.0.1 --port {port}" in out.stdout
    assert re.search(r"^    \d{3} \d{3}$", out.stdout, re.M)  # the PIN, plain, below the big one
    assert "██" in out.stdout and "expires:" in out.stdout

    out = live_run(live, "node", "pair-code", "--method", "qr", "--auto-approve").ok()
    uri_lines = [ln for ln in out.stdout.splitlines() if ln.startswith("palyra://pair?")]
    assert len(uri_lines) == 1 and parse_pair_uri(uri_lines[0]).port == int(port)
    assert "palyra-node pair --uri -" in out.stdout and "auto-approve" in out.stdout
    assert live.journal.pairing.windows(1)[0].auto_approve is True


def test_pair_code_host(live: Daemon) -> None:
    doc = live_run(live, "node", "pair-code", "--method", "qr", "--host", "Node.Example", "--json")
    got = doc.ok().json()
    assert got["address"].startswith("node.example:")
    assert parse_pair_uri(got["uri"]).host == "node.example"
    assert live.journal.pairing.windows(1)[0].host == "node.example"


def test_journal_commands_poke_a_running_daemon(live: Daemon) -> None:
    req = add_request(live.journal, name="tablet")
    out = live_run(live, "node", "approve", req.request_id).ok()
    assert "note:" not in out.stderr  # no "applies when it starts": it applied now
    device = add_device(live.journal, "old-laptop")
    out = live_run(live, "node", "revoke", device.device_id).ok()
    assert out.stderr == ""
    out = live_run(live, "node", "remove", device.device_id).ok()
    assert out.stderr == "" and live.journal.devices.get(device.device_id) is None


def test_journal_commands_load_no_crypto_or_qr_code(home: Path) -> None:
    """``node list``/``pending`` read the journal: no segno, spake2, grpc or cryptography."""
    from tests.test_cli_startup import _loaded

    heavy = ("segno", "spake2", "grpc", "cryptography", "palyra_proto", "certs")
    for command in ("list", "pending"):
        modules, proc = _loaded("--home", str(home), "node", command, "--json")
        assert proc.returncode == 0, proc.stderr
        assert sorted(m for m in modules if m.split(".")[0] in heavy) == []


def test_a_qr_pairing_goes_through_pending_approve_and_list(live: Daemon) -> None:
    """The operator's half of a real pairing: a node presents the QR token and a CSR on the
    pairing listener, ``pending`` shows its key, ``approve`` lets it collect the certificate,
    ``list`` shows the device and ``revoke`` revokes it."""
    import concurrent.futures
    import hashlib

    import grpc

    from certs import build_csr, generate_private_key
    from palyra_proto import palyra_node_pb2 as pb
    from palyra_proto import palyra_node_pb2_grpc as pb_grpc
    from palyra_proto.pairing import secret_sha256

    doc = live_run(live, "node", "pair-code", "--method", "qr", "--json").ok().json()
    uri = parse_pair_uri(doc["uri"])
    ca_pem = (live.root / "certs" / "ca.crt").read_bytes()
    key = generate_private_key()
    secret = os.urandom(32)
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(uri.address, creds) as channel:
        stub = pb_grpc.PairingStub(channel)
        reply = stub.TokenPair(
            pb.TokenPairRequest(
                token=uri.token,
                device_name="test-node",
                csr_der=build_csr(key, "test-node"),
                await_secret_sha256=secret_sha256(secret),
            ),
            timeout=10,
        )
        assert reply.public_key_sha256 == spki_sha256(key)

        (req,) = live_run(live, "node", "pending", "--json").ok().json()["requests"]
        assert req["request_id"] == reply.request_id
        assert (req["device_name"], req["method"]) == ("test-node", "qr")
        assert req["public_key_sha256"] == spki_sha256(key)
        assert req["peer"].startswith("127.0.0.1")
        text = live_run(live, "node", "pending").ok().stdout
        assert spki_sha256(key)[:16] in text

        await_request = pb.AwaitRequest(
            request_id=reply.request_id, await_secret=secret, wait_ms=20_000
        )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(stub.AwaitCertificate, await_request, timeout=30)
            out = live_run(live, "node", "approve", reply.request_id).ok()
            assert out.stdout.startswith(f"approved {reply.request_id} (test-node, key ")
            issued = waiting.result(timeout=25)
    assert issued.state == pb.AwaitReply.ISSUED

    devices = live_run(live, "node", "list", "--json").ok().json()["devices"]
    (device,) = [d for d in devices if d["device_id"] == issued.device_id]
    assert device["name"] == "test-node" and device["state"] == "active"
    assert device["cert_sha256"] == hashlib.sha256(issued.certificate_der).hexdigest()
    assert device["cert_expires_at_unix_ms"] == issued.expires_at_unix_ms
    assert device["channels"] == []
    live_run(live, "node", "revoke", issued.device_id).ok()
    devices = live_run(live, "node", "list", "--json").ok().json()["devices"]
    assert [d["state"] for d in devices if d["device_id"] == issued.device_id] == ["revoked"]
