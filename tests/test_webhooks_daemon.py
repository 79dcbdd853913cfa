"""The webhook listener in a real palyrad, over real HTTP on loopback (SPEC §4.5, §2.1).

One module-scoped daemon serves most tests; each test that counts runs has its own routine
(the rate limit is per routine). Routines whose runs matter record what the run saw
(``PALYRA_TRIGGER_PAYLOAD``, the payload file's content, how many variables named like the
secret variable the run's environment holds) in files named by run id. Every refusal is
checked for its status, its JSON body and that no run record was written. Two small daemons
of their own cover TLS and the replay cache surviving a restart.

Timing: no sleep is an assertion; asynchronous outcomes are awaited with ``wait_until``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyrad.runtime.webhook_signatures import sign
from tests.daemon_harness import BIN, Daemon, palyra, routine, shell, wait_until

# The node listeners on free ports; each daemon here writes its own [webhooks] section.
NODE_ANY_PORTS = "[rpc]\npairing_port = 0\nnode_port = 0\n"

pytestmark = pytest.mark.timeout(120)

SECRET_VAR = "PALYRA_TEST_WH_SECRET"
UNSET_VAR = "PALYRA_TEST_WH_UNSET"
SECRET = b"env-secret-0123456789-abcdefghij"
FILE_SECRET = b"file-secret-0123456789-abcdefgh"
MAX_BODY = 200_000
RATE = 20


# --- helpers --------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = body
        self.json: Any = orjson.loads(body) if body else None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.raw[:200]!r})"


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    context: ssl.SSLContext | None = None,
    timeout: float = 10,
) -> Answer:
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def post(
    port: int,
    rid: str,
    body: bytes,
    *,
    secret: bytes | None = SECRET,
    ts: int | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """POST ``body`` to ``/hooks/<rid>``, signed with ``secret`` (unsigned when None)."""
    h: dict[str, str] = {"Content-Type": "application/json"}
    if secret is not None:
        h["X-Palyra-Signature"] = sign(secret, body, ts)
    if ts is not None:
        h["X-Palyra-Timestamp"] = str(ts)
    h.update(headers or {})
    return request(port, "POST", f"/hooks/{rid}", body, h, context=context)


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        return read_to_close(s)


def read_to_close(s: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def parse_raw(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", len(body)))
    return Answer(status, headers, body[:n])


def refused(a: Answer, status: int) -> None:
    assert a.status == status, a
    assert a.headers.get("content-type", "").startswith("application/json"), a.headers
    assert isinstance(a.json, dict) and set(a.json) == {"error"}, a
    assert isinstance(a.json["error"], str) and a.json["error"]
    assert SECRET.decode() not in a.raw.decode() and FILE_SECRET.decode() not in a.raw.decode()


def accepted(a: Answer) -> str:
    assert a.status == 202, a
    assert a.headers.get("content-type", "").startswith("application/json"), a.headers
    assert set(a.json) == {"run_id", "status", "error_kind"}, a
    assert isinstance(a.json["run_id"], str) and a.json["run_id"]
    return str(a.json["run_id"])


def recorder(out: Path) -> dict[str, Any]:
    """An action that records, per run id, what the run saw."""
    script = (
        f'd={out}; r="$PALYRA_RUN_ID"; '
        'printf %s "$PALYRA_TRIGGER_PAYLOAD" > "$d/$r.payload"; '
        'if [ -n "$PALYRA_TRIGGER_PAYLOAD_FILE" ]; then '
        'cat "$PALYRA_TRIGGER_PAYLOAD_FILE" > "$d/$r.file"; fi; '
        f'env | grep -c "^{SECRET_VAR}=" > "$d/$r.tmp"; '
        'mv "$d/$r.tmp" "$d/$r.count"; true'
    )
    return shell(script)


def hook(
    rid: str, out: Path, *, secret_env: str | None = SECRET_VAR, **trigger: Any
) -> dict[str, Any]:
    t: dict[str, Any] = {"kind": "webhook", **trigger}
    if "secret_file" not in t:
        t["secret_env"] = secret_env
    return routine(rid, t, recorder(out), concurrency="allow")


def seen(out: Path, run_id: str) -> dict[str, Any]:
    """What run ``run_id`` recorded (waits for it)."""
    count = wait_until(lambda: (p := out / f"{run_id}.count").exists() and p.read_text())
    f = out / f"{run_id}.file"
    return {
        "payload": (out / f"{run_id}.payload").read_text(),
        "file": f.read_bytes() if f.exists() else None,
        "secret_vars": int(count.strip()),
    }


def write_secret(path: Path, secret: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(secret + b"\n")
    tmp.chmod(mode)
    os.replace(tmp, path)


@contextlib.contextmanager
def daemon_env() -> Iterator[None]:
    """The daemon reads secret_env from its own environment: the CLI passes ours on."""
    saved = {k: os.environ.get(k) for k in (SECRET_VAR, UNSET_VAR)}
    os.environ[SECRET_VAR] = SECRET.decode()
    os.environ.pop(UNSET_VAR, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def webhook_port(d: Daemon) -> int:
    ep = d.status().endpoints["webhook"]
    assert ep is not None
    host, _, port = ep.rpartition(":")
    assert host == "127.0.0.1"
    return int(port)


class WH:
    def __init__(self, d: Daemon, port: int, out: Path, tmp: Path) -> None:
        self.d = d
        self.port = port
        self.out = out
        self.tmp = tmp

    def count(self, rid: str) -> int:
        return len(self.d.runs(rid))


# --- the shared daemon ---------------------------------------------------------------


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WH]:
    root = tmp_path_factory.mktemp("webhooks")
    out = root / "out"
    out.mkdir()
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    write_secret(secrets / "good", FILE_SECRET)
    write_secret(secrets / "rot", FILE_SECRET)
    write_secret(secrets / "open", FILE_SECRET, 0o644)
    write_secret(secrets / "linked-target", FILE_SECRET)
    (secrets / "link").symlink_to(secrets / "linked-target")
    d = Daemon(root / "home")
    d.home.config.write_text(
        NODE_ANY_PORTS
        + f"[webhooks]\nport = 0\nmax_body_bytes = {MAX_BODY}\nrate_per_minute = {RATE}\n"
    )
    env_hooks = [
        "wh-env", "wh-text", "wh-sig", "wh-size", "wh-bad", "wh-hdr", "wh-tsopt",
        "wh-big", "wh-stall", "wh-conn", "wh-rate", "wh-health",
    ]  # fmt: skip
    d.write_definitions(
        [hook(rid, out) for rid in env_hooks]
        + [
            hook("wh-file", out, secret_file=str(secrets / "good")),
            hook("wh-rot", out, secret_file=str(secrets / "rot")),
            hook("wh-ts", out, require_timestamp=True),
            {**hook("wh-disabled", out), "enabled": False},
            routine("wh-manual", {"kind": "manual"}, shell("true")),
            hook("wh-unset", out, secret_env=UNSET_VAR),
            hook("wh-open", out, secret_file=str(secrets / "open")),
            hook("wh-link", out, secret_file=str(secrets / "link")),
        ]
    )
    with daemon_env():
        try:
            d.start()
            yield WH(d, webhook_port(d), out, root)
        finally:
            d.close()


# --- 1. every row of the table -------------------------------------------------------


def test_accepted_run_sees_parsed_body_and_event_but_not_the_secret(wh: WH) -> None:
    before = wh.count("wh-env")
    body = orjson.dumps({"ref": "refs/heads/main", "n": [1, 2, 3]})
    run_id = accepted(post(wh.port, "wh-env", body, headers={"X-GitHub-Event": "push"}))
    runs = wh.d.runs("wh-env")
    assert len(runs) == before + 1
    (run,) = [r for r in runs if r.run_id == run_id]
    assert run.trigger_kind == "webhook"
    got = seen(wh.out, run_id)
    assert orjson.loads(got["payload"]) == {
        "body": {"ref": "refs/heads/main", "n": [1, 2, 3]},
        "event": "push",
    }
    assert got["file"] is None
    assert got["secret_vars"] == 0  # the secret variable is removed from the run's env


def test_text_body_arrives_as_a_string_and_palyra_event_header(wh: WH) -> None:
    run_id = accepted(
        post(wh.port, "wh-text", "héllo, not json".encode(), headers={"X-Palyra-Event": "ping"})
    )
    got = seen(wh.out, run_id)
    assert orjson.loads(got["payload"]) == {"body": "héllo, not json", "event": "ping"}
    run_id = accepted(post(wh.port, "wh-text", b"[1"))
    assert orjson.loads(seen(wh.out, run_id)["payload"]) == {"body": "[1", "event": None}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Palyra-Signature": "sha1=abcdef"},
        {"X-Palyra-Signature": "sha256=" + "zz" * 32},
        {"X-Palyra-Signature": "sha256=" + "ab" * 31},
        {"X-Palyra-Signature": sign(b"another-secret-0123456789", b"{}")},
        {"X-Palyra-Signature": sign(SECRET, b"{} ")},  # signed over a different body
    ],
    ids=["missing", "bad-prefix", "non-hex", "short", "wrong-secret", "other-body"],
)
def test_401_missing_malformed_or_bad_signature(wh: WH, headers: dict[str, str]) -> None:
    before = wh.count("wh-sig")
    refused(post(wh.port, "wh-sig", b"{}", secret=None, headers=headers), 401)
    assert wh.count("wh-sig") == before


@pytest.mark.parametrize("path", ["/hooks/nope", "/hooks/wh-manual", "/hooks/Bad!Id", "/x"])
def test_404_unknown_routine_no_webhook_trigger_or_bad_id(wh: WH, path: str) -> None:
    before = wh.count("wh-manual")
    a = request(wh.port, "POST", path, b"{}", {"X-Palyra-Signature": sign(SECRET, b"{}")})
    refused(a, 404)
    assert wh.count("wh-manual") == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_405_other_methods(wh: WH, method: str) -> None:
    before = wh.count("wh-env")
    a = request(
        wh.port, method, "/hooks/wh-env", b"{}", {"X-Palyra-Signature": sign(SECRET, b"{}")}
    )
    refused(a, 405)
    assert a.headers.get("allow") == "POST"
    assert wh.count("wh-env") == before


def test_409_disabled(wh: WH) -> None:
    before = wh.count("wh-disabled")
    refused(post(wh.port, "wh-disabled", b"{}"), 409)
    assert wh.count("wh-disabled") == before


def test_413_content_length_over_the_limit_answered_before_the_body(wh: WH) -> None:
    before = wh.count("wh-size")
    head = (
        "POST /hooks/wh-size HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Palyra-Signature: {sign(SECRET, b'{}')}\r\n"
        f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", wh.port), timeout=5) as s:
        s.sendall(head)  # and not one byte of the body: the answer comes anyway
        a = parse_raw(read_to_close(s))
    refused(a, 413)
    assert wh.count("wh-size") == before


def test_413_chunked_body_over_the_limit(wh: WH) -> None:
    before = wh.count("wh-size")
    payload = b'"' + b"x" * (MAX_BODY + 10) + b'"'
    head = (
        "POST /hooks/wh-size HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Palyra-Signature: {sign(SECRET, payload)}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(c), c)
        for c in (payload[i : i + 50_000] for i in range(0, len(payload), 50_000))
    )
    a = parse_raw(raw_exchange(wh.port, head + chunks + b"0\r\n\r\n"))
    refused(a, 413)
    assert wh.count("wh-size") == before


def test_a_body_at_the_limit_is_accepted(wh: WH) -> None:
    body = b'"' + b"y" * (MAX_BODY - 2) + b'"'
    assert len(body) == MAX_BODY
    accepted(post(wh.port, "wh-size", body))


def test_429_after_rate_per_minute_accepted_with_retry_after(wh: WH) -> None:
    for i in range(RATE):
        accepted(post(wh.port, "wh-rate", orjson.dumps({"i": i})))
    before = wh.count("wh-rate")
    assert before == RATE
    a = post(wh.port, "wh-rate", orjson.dumps({"i": RATE}))
    refused(a, 429)
    retry_after = int(a.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert wh.count("wh-rate") == before
    # refusals are not accepted requests: other routines are not limited by this one
    accepted(post(wh.port, "wh-env", b"{}"))


@pytest.mark.parametrize("rid", ["wh-unset", "wh-open", "wh-link"])
def test_503_secret_unavailable(wh: WH, rid: str) -> None:
    before = wh.count(rid)
    for secret in (SECRET, FILE_SECRET):
        refused(post(wh.port, rid, b"{}", secret=secret), 503)
    assert wh.count(rid) == before


def test_the_symlink_target_itself_is_a_good_secret(wh: WH) -> None:
    """Control for the symlink 503: the same file, named directly, works (wh-file)."""
    accepted(post(wh.port, "wh-file", b"{}", secret=FILE_SECRET))
    refused(post(wh.port, "wh-file", b"{}", secret=SECRET), 401)


def test_400_malformed_request_line(wh: WH) -> None:
    a = parse_raw(raw_exchange(wh.port, b"THIS IS NOT HTTP\r\n\r\n"))
    assert a.status == 400, a
    assert isinstance(a.json, dict) and set(a.json) == {"error"}


def test_400_signed_body_neither_utf8_nor_json(wh: WH) -> None:
    before = wh.count("wh-bad")
    refused(post(wh.port, "wh-bad", b"\xff\xfe\x00\x80 binary"), 400)
    assert wh.count("wh-bad") == before


# --- 2. check order ------------------------------------------------------------------


def test_order_method_before_routine(wh: WH) -> None:
    refused(request(wh.port, "GET", "/hooks/no-such-routine"), 405)


def test_order_enabled_before_size(wh: WH) -> None:
    before = wh.count("wh-disabled")
    head = (
        "POST /hooks/wh-disabled HTTP/1.1\r\nHost: x\r\n"
        f"X-Palyra-Signature: {sign(SECRET, b'{}')}\r\n"
        f"Content-Length: {MAX_BODY * 10}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", wh.port), timeout=5) as s:
        s.sendall(head)
        a = parse_raw(read_to_close(s))
    refused(a, 409)
    assert wh.count("wh-disabled") == before


def test_order_secret_before_signature(wh: WH) -> None:
    refused(post(wh.port, "wh-open", b"{}", secret=b"wrong-wrong-wrong-wrong"), 503)
    refused(post(wh.port, "wh-unset", b"{}", secret=None), 503)


def test_order_size_before_secret(wh: WH) -> None:
    head = (
        f"POST /hooks/wh-unset HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", wh.port), timeout=5) as s:
        s.sendall(head)
        refused(parse_raw(read_to_close(s)), 413)


def test_order_signature_before_rate(wh: WH) -> None:
    """wh-rate at its limit: a bad signature is still 401, not 429."""
    while wh.count("wh-rate") < RATE:  # already there when the rate test ran first
        post(wh.port, "wh-rate", b"{}")
    refused(post(wh.port, "wh-rate", b"{}", secret=b"wrong-wrong-wrong-wrong"), 401)
    # and a body that is neither JSON nor UTF-8 is a 400 before the rate is looked at
    refused(post(wh.port, "wh-rate", b"\xff\xfe binary"), 400)
    refused(post(wh.port, "wh-rate", b"{}"), 429)


# --- 3. both signature headers -------------------------------------------------------


def test_github_header_alone_is_accepted(wh: WH) -> None:
    body = b'{"github": true}'
    a = post(
        wh.port,
        "wh-hdr",
        body,
        secret=None,
        headers={"X-Hub-Signature-256": sign(SECRET, body), "X-GitHub-Event": "push"},
    )
    run_id = accepted(a)
    assert orjson.loads(seen(wh.out, run_id)["payload"]) == {
        "body": {"github": True},
        "event": "push",
    }


def test_both_headers_palyra_is_the_one_checked(wh: WH) -> None:
    body = b'{"both": 1}'
    good, bad = sign(SECRET, body), sign(b"not-the-secret-0123456789", body)
    accepted(
        post(
            wh.port,
            "wh-hdr",
            body,
            secret=None,
            headers={"X-Palyra-Signature": good, "X-Hub-Signature-256": bad},
        )
    )
    before = wh.count("wh-hdr")
    refused(
        post(
            wh.port,
            "wh-hdr",
            body,
            secret=None,
            headers={"X-Palyra-Signature": bad, "X-Hub-Signature-256": good},
        ),
        401,
    )
    assert wh.count("wh-hdr") == before


# --- 4. timestamp mode ---------------------------------------------------------------


def test_timestamp_mode_accepts_once_then_refuses_the_replay(wh: WH) -> None:
    body = b'{"ts": "mode"}'
    ts = int(time.time())
    accepted(post(wh.port, "wh-tsopt", body, ts=ts))
    before = wh.count("wh-tsopt")
    a = post(wh.port, "wh-tsopt", body, ts=ts)
    refused(a, 401)
    assert "replay" in a.json["error"]
    # the cache keys on the MAC's bytes, not the header's spelling: upper-case hex is a replay
    upper = "sha256=" + sign(SECRET, body, ts).removeprefix("sha256=").upper()
    a = post(wh.port, "wh-tsopt", body, ts=ts, secret=None, headers={"X-Palyra-Signature": upper})
    refused(a, 401)
    # ... and a body-only signature over "<ts>." + body is not what timestamp mode checks
    a = post(wh.port, "wh-tsopt", body, secret=None, headers={"X-Palyra-Signature": upper})
    refused(a, 401)
    assert wh.count("wh-tsopt") == before


def test_replay_cache_is_per_routine(wh: WH) -> None:
    """The same timestamped MAC (same secret, body, timestamp) at another routine is no
    replay: the cache is keyed by routine and MAC."""
    body = b'{"per": "routine"}'
    ts = int(time.time())
    accepted(post(wh.port, "wh-tsopt", body, ts=ts))
    accepted(post(wh.port, "wh-ts", body, ts=ts))
    refused(post(wh.port, "wh-ts", body, ts=ts), 401)


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_more_than_300s_off_is_refused(wh: WH, skew: int) -> None:
    before = wh.count("wh-tsopt")
    a = post(wh.port, "wh-tsopt", b'{"old": 1}', ts=int(time.time()) + skew)
    refused(a, 401)
    assert wh.count("wh-tsopt") == before


@pytest.mark.parametrize("skew", [-290, 290])
def test_timestamp_within_300s_either_side_is_accepted(wh: WH, skew: int) -> None:
    accepted(post(wh.port, "wh-tsopt", b'{"within": 1}', ts=int(time.time()) + skew))


def test_timestamp_signed_without_the_timestamp_is_refused(wh: WH) -> None:
    """The MAC must cover "<ts>." + body when the header is sent."""
    body = b'{"x": 2}'
    before = wh.count("wh-tsopt")
    a = post(
        wh.port,
        "wh-tsopt",
        body,
        secret=None,
        headers={
            "X-Palyra-Signature": sign(SECRET, body),
            "X-Palyra-Timestamp": str(int(time.time())),
        },
    )
    refused(a, 401)
    assert wh.count("wh-tsopt") == before


def test_require_timestamp(wh: WH) -> None:
    before = wh.count("wh-ts")
    refused(post(wh.port, "wh-ts", b'{"r": 1}'), 401)
    assert wh.count("wh-ts") == before
    accepted(post(wh.port, "wh-ts", b'{"r": 1}', ts=int(time.time())))
    assert wh.count("wh-ts") == before + 1


# --- 5. secret file rotation ---------------------------------------------------------


def test_secret_file_rotation_takes_effect_without_a_restart(wh: WH) -> None:
    path = wh.tmp / "secrets" / "rot"
    accepted(post(wh.port, "wh-rot", b'{"v": 1}', secret=FILE_SECRET))
    new = b"rotated-secret-9876543210-zyxwvu"
    write_secret(path, new)
    accepted(post(wh.port, "wh-rot", b'{"v": 2}', secret=new))
    before = wh.count("wh-rot")
    refused(post(wh.port, "wh-rot", b'{"v": 3}', secret=FILE_SECRET), 401)
    assert wh.count("wh-rot") == before


# --- 6. read-your-writes -------------------------------------------------------------


def upsert(d: Daemon, r: dict[str, Any]) -> None:
    proc = subprocess.run(
        [str(BIN / "palyra"), "--home", str(d.root), "routines", "upsert", "-"],
        input=orjson.dumps(r).decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_read_your_writes_upsert_disable_enable(wh: WH) -> None:
    refused(post(wh.port, "wh-new", b"{}"), 404)
    upsert(wh.d, hook("wh-new", wh.out))
    accepted(post(wh.port, "wh-new", b'{"n": 1}'))
    palyra(wh.d.root, "routines", "disable", "wh-new")
    refused(post(wh.port, "wh-new", b'{"n": 2}'), 409)
    palyra(wh.d.root, "routines", "enable", "wh-new")
    accepted(post(wh.port, "wh-new", b'{"n": 3}'))
    # and a change of trigger: no longer a webhook routine -> 404 at once
    upsert(wh.d, routine("wh-new", {"kind": "manual"}, shell("true")))
    refused(post(wh.port, "wh-new", b'{"n": 4}'), 404)
    assert wh.count("wh-new") == 2


# --- 7. a large body reaches the run as a file ----------------------------------------


def test_large_body_reaches_the_run_through_the_payload_file(wh: WH) -> None:
    filler = "z" * (100_000 - len(b'{"data":""}'))
    body = orjson.dumps({"data": filler})
    assert len(body) == 100_000
    run_id = accepted(post(wh.port, "wh-big", body, headers={"X-GitHub-Event": "big"}))
    got = seen(wh.out, run_id)
    pointer = orjson.loads(got["payload"])
    assert set(pointer) == {"payload_file", "bytes"}
    assert got["file"] is not None
    assert pointer["bytes"] == len(got["file"])
    assert orjson.loads(got["file"]) == {"body": {"data": filler}, "event": "big"}
    assert got["secret_vars"] == 0


# --- 8. a stalled client does not block the others -----------------------------------


def _closed_within(s: socket.socket, opened: float, limit: float) -> bytes:
    """What the server sent before closing ``s``, which must happen within ``limit`` s of
    ``opened``; an answer, when there is one, is a 408 with a JSON body."""
    s.settimeout(max(0.1, opened + limit - time.monotonic()))
    try:
        data = read_to_close(s)
    except TimeoutError:
        pytest.fail(f"a stalled connection was still open {limit} s after its first byte")
    if data:
        refused(parse_raw(data), 408)
    return data


def test_stalled_clients_do_not_block_others_and_are_closed(wh: WH) -> None:
    """Three slow clients at once: half a head; a whole head and half its body; a head
    trickled one byte every 0.3 s (never complete within 10 s). Others are served meanwhile,
    and each slow one is closed about 10 s after its first byte."""
    before = wh.count("wh-stall")
    half_head = socket.create_connection(("127.0.0.1", wh.port), timeout=20)
    half_body = socket.create_connection(("127.0.0.1", wh.port), timeout=20)
    trickle = socket.create_connection(("127.0.0.1", wh.port), timeout=20)
    stop = threading.Event()

    def drip() -> None:
        head = b"POST /hooks/wh-stall HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 200
        for byte in head:
            if stop.wait(0.3):
                return
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return

    dripper = threading.Thread(target=drip, daemon=True)
    try:
        opened = time.monotonic()
        half_head.sendall(b"POST /hooks/wh-stall HTTP/1.1\r\nHost: x\r\nContent-Le")
        body = b'{"never": "finished"}'
        half_body.sendall(
            b"POST /hooks/wh-stall HTTP/1.1\r\nHost: x\r\n"
            + f"X-Palyra-Signature: {sign(SECRET, body)}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        dripper.start()
        t0 = time.monotonic()
        for i in range(5):
            accepted(post(wh.port, "wh-stall", orjson.dumps({"i": i})))
        assert time.monotonic() - t0 < 5
        slow = (half_head, half_body, trickle)
        r, _, _ = select.select(list(slow), [], [], 0)
        assert not r, "a stalled connection was answered before its deadline"
        for s in slow:
            _closed_within(s, opened, 13)
        assert wh.count("wh-stall") == before + 5
    finally:
        stop.set()
        for s in (half_head, half_body, trickle):
            s.close()
        if dripper.is_alive():
            dripper.join(2)


# --- 9. at most 64 connections -------------------------------------------------------


def _closed(s: socket.socket) -> bool:
    """True when the peer closed (or reset) ``s`` (without blocking)."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def _fill_to_cap(port: int) -> list[socket.socket] | None:
    """64 idle connections, and a 65th that the server closes at once; None (everything
    closed again) when one of the 64 was the one closed: the server still held the slot of
    a connection an earlier request had just closed (it frees it when it sees the FIN)."""
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as extra:
        t0 = time.monotonic()
        try:
            data = read_to_close(extra)
        except TimeoutError:
            pytest.fail("the 65th connection was not closed within 2 s")
    assert data == b"", data  # closed, nothing sent
    assert time.monotonic() - t0 < 2
    if any(_closed(s) for s in idle):
        for s in idle:
            s.close()
        return None
    return idle


def test_65th_connection_is_closed_at_once(wh: WH) -> None:
    idle = wait_until(lambda: _fill_to_cap(wh.port), timeout=10, interval=0.3)
    try:
        for s in idle[:3]:
            s.close()
        idle = idle[3:]

        def try_post() -> Answer | None:
            try:
                return post(wh.port, "wh-conn", b'{"after": "cap"}')
            except (ConnectionError, http.client.RemoteDisconnected):
                return None  # the server has not yet seen the closes

        accepted(wait_until(try_post, timeout=5, interval=0.05))
    finally:
        for s in idle:
            s.close()


# --- 10. healthz and status ----------------------------------------------------------


def test_healthz_and_status_endpoint(wh: WH) -> None:
    a = request(wh.port, "GET", "/healthz")
    assert a.status == 200 and a.json == {"ok": True}
    out = palyra(wh.d.root, "daemon", "status", "--json")
    assert orjson.loads(out.stdout)["endpoints"]["webhook"] == f"127.0.0.1:{wh.port}"
    refused(request(wh.port, "POST", "/healthz"), 405)


# --- 4b. the replay cache survives a restart; 11. TLS --------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    out = tmp_path / "out"
    out.mkdir()
    d = Daemon(tmp_path / "home")
    d.write_definitions([hook("wh-one", out)])
    yield d, out
    d.close()


def test_replay_cache_survives_a_restart(small: tuple[Daemon, Path]) -> None:
    d, _ = small
    d.home.config.write_text(NODE_ANY_PORTS + "[webhooks]\nport = 0\n")
    body = b'{"restart": true}'
    ts = int(time.time())
    with daemon_env():
        d.start()
        accepted(post(webhook_port(d), "wh-one", body, ts=ts))
        d.stop()
        wait_until(lambda: not d.status().running, timeout=20)
        d.start()
    before = len(d.runs("wh-one"))
    a = post(webhook_port(d), "wh-one", body, ts=ts)
    refused(a, 401)
    assert "replay" in a.json["error"]
    assert len(d.runs("wh-one")) == before
    accepted(post(webhook_port(d), "wh-one", body, ts=ts + 1))


def test_a_port_taken_at_start_is_served_once_it_is_free(small: tuple[Daemon, Path]) -> None:
    d, _ = small
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    d.home.config.write_text(NODE_ANY_PORTS + f"[webhooks]\nport = {port}\n")
    with daemon_env():
        d.start()
    try:
        assert d.status().endpoints["webhook"] is None
        doctor = palyra(d.root, "doctor", "--json", "--only", "webhooks", check=False)
        check = orjson.loads(doctor.stdout)["checks"][0]
        assert check["status"] == "fail" and "not up" in check["message"], check
    finally:
        holder.close()
    # Retried every 5 s: served without a restart once the port is free.
    wait_until(lambda: d.status().endpoints["webhook"] == f"127.0.0.1:{port}", timeout=30)
    accepted(post(port, "wh-one", b'{"late": true}'))


def test_tls(small: tuple[Daemon, Path]) -> None:
    d, out = small
    d.home.config.write_text(NODE_ANY_PORTS + "[webhooks]\nport = 0\ntls = true\n")
    with daemon_env():
        d.start()
    port = webhook_port(d)
    ctx = ssl.create_default_context(cafile=str(d.home.certs_dir / "ca.crt"))
    for name in ("127.0.0.1", "localhost"):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as s,
        ):
            assert s.version() is not None
    run_id = accepted(
        post(port, "wh-one", b'{"tls": 1}', headers={"X-GitHub-Event": "push"}, context=ctx)
    )
    assert orjson.loads(seen(out, run_id)["payload"]) == {"body": {"tls": 1}, "event": "push"}
    before = len(d.runs("wh-one"))
    with pytest.raises((http.client.HTTPException, OSError)):
        a = post(port, "wh-one", b'{"tls": 2}')
        pytest.fail(f"plain HTTP was answered: {a}")
    assert len(d.runs("wh-one")) == before
