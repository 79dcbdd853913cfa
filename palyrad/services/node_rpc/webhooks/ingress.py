"""``POST /hooks/<routine_id>``: SPEC §4.5's checks, in its order, then the record.

The transport (``http_server``) hands over a parsed request head and a body not yet read.
The checks run in the order the SPEC gives, and the first that fails answers: method (405),
routine (404), enabled (409), size (413, from ``Content-Length`` before a byte of the body is
read), secret available (503), signature and timestamp (401, the replay check included),
rate (429). A body that is neither JSON nor UTF-8 text is a 400 (the run's payload is JSON
text, which cannot carry arbitrary bytes). Only then is anything written: ``accept``
records the run and its MAC in one transaction and the scheduler decides it like any trigger;
the answer is that decision, ``202 {"run_id", "status", "error_kind"}``.

Which routines have a webhook trigger comes from the document the scheduler publishes on
every apply (``palyrad.domain.webhook_routes``), checked against the routine's current
definition hash on every request: one primary-key read, and read-your-writes for CLI edits.
Blocking work (journal reads, the secret file) runs on a small thread pool, never on the
event loop. No answer and no log line carries a secret, a signature or a body.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import orjson

from palyrad.domain import webhook_routes
from palyrad.domain.webhook_routes import WebhookRoute
from palyrad.journal import STATE_WEBHOOKS, Journal
from palyrad.runtime.webhook_secrets import SecretUnavailable, read_secret
from palyrad.runtime.webhook_signatures import (
    GITHUB_SIGNATURE_HEADER,
    MAX_SKEW_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refusal,
    Verdict,
    pick_signature,
    verify,
)
from palyrad.seams import Clock
from palyrad.services.node_rpc.webhooks.accept import Accept, AcceptWriter, Outcome
from palyrad.services.node_rpc.webhooks.http_server import (
    Body,
    BodyTooLarge,
    RequestHead,
    Response,
)
from routines.model import ID_PATTERN

log = logging.getLogger("palyrad.webhooks")

HOOKS_PREFIX = "/hooks/"
HEALTH_PATH = "/healthz"
EVENT_HEADERS = ("x-palyra-event", "x-github-event")  # the first present is the event
MAX_EVENT_CHARS = 256
REFUSAL_LOG_EVERY_S = 60.0  # refusals and a missing secret: one line a minute per routine
INLINE_VERIFY_BYTES = 64 * 1024  # larger bodies are MACed off the event loop

_T = TypeVar("_T")
_valid_id = re.compile(ID_PATTERN).fullmatch

REFUSAL_TEXT = {
    Refusal.MISSING_SIGNATURE: f"missing signature: send {SIGNATURE_HEADER}: sha256=<hex HMAC>",
    Refusal.MALFORMED_SIGNATURE: "malformed signature: expected sha256= and 64 hex digits",
    Refusal.BAD_SIGNATURE: "bad signature",
    Refusal.TIMESTAMP_REQUIRED: f"this routine requires {TIMESTAMP_HEADER}",
    Refusal.MALFORMED_TIMESTAMP: f"malformed {TIMESTAMP_HEADER}: expected unix seconds",
    Refusal.STALE_TIMESTAMP: f"{TIMESTAMP_HEADER} is more than {MAX_SKEW_S} s from now",
    Refusal.REPLAY: "replay: this signature was already accepted",
    Refusal.AMBIGUOUS_BODY: (
        f"a body starting with digits and a dot must be signed with {TIMESTAMP_HEADER}"
    ),
}


class LogThrottle:
    """At most one log line per key a minute; the next one says how many were left out.

    Refusals come from whoever can reach the port: one line per request would let anyone
    grow the daemon log and rotate the real diagnostics away. Keys are routine ids of
    existing webhook routines (refusals before the lookup are not logged), so the map stays
    small. Used from the event loop's thread only."""

    def __init__(self, every_s: float = REFUSAL_LOG_EVERY_S) -> None:
        self._every_s = every_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def __call__(self, level: int, msg: str, routine_id: str, **extra: object) -> None:
        now = time.monotonic()
        key = (msg, routine_id)
        last, left_out = self._seen.get(key, (-self._every_s, 0))
        if now - last < self._every_s:
            self._seen[key] = (last, left_out + 1)
            return
        self._seen[key] = (now, 0)
        log.log(level, msg, extra={"routine_id": routine_id, "left_out": left_out, **extra})


def answer(status: int, error: str, *headers: tuple[str, str]) -> Response:
    return Response(status, {"error": error}, tuple(headers))


class Found(StrEnum):
    ROUTE = "route"
    NO_ROUTINE = "no_routine"
    NO_WEBHOOK = "no_webhook"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Lookup:
    found: Found
    route: WebhookRoute | None = None


class RouteTable:
    """The webhook routines as the scheduler last published them; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw: str | None = None
        self._routes: dict[str, WebhookRoute] = {}

    def lookup(self, journal: Journal, routine_id: str) -> Lookup:
        """Whether ``routine_id`` exists, is a webhook routine, and is enabled, as of the
        scheduler's last apply (a CLI edit has been applied when it returns)."""
        state = journal.routines.get(routine_id)
        if state is None:
            return Lookup(Found.NO_ROUTINE)
        route = self._routes.get(routine_id)
        if route is None or route.definition_hash != state.definition_hash:
            route = self._reload(journal).get(routine_id)
            if route is not None and route.definition_hash != state.definition_hash:
                # Published in one transaction with routine_state: a mismatch is a routine
                # changed between our two reads; read both again once.
                state = journal.routines.get(routine_id)
                if state is None:
                    return Lookup(Found.NO_ROUTINE)
                route = self._reload(journal).get(routine_id)
        if route is None or route.definition_hash != state.definition_hash:
            return Lookup(Found.NO_WEBHOOK)
        if not state.enabled:
            return Lookup(Found.DISABLED)
        return Lookup(Found.ROUTE, route)

    def _reload(self, journal: Journal) -> dict[str, WebhookRoute]:
        raw = journal.state.get(STATE_WEBHOOKS)
        with self._lock:
            if raw != self._raw:
                self._routes = webhook_routes.parse(raw)
                self._raw = raw
            return self._routes


class WebhookIngress:
    """The request handler of the webhook listener (see the module docstring)."""

    def __init__(
        self,
        journals: Callable[[], Journal],
        pool: Executor,
        clock: Clock,
        writer: AcceptWriter,
        max_body_bytes: Callable[[], int],
        env: Mapping[str, str],
    ) -> None:
        self._journals = journals
        self._pool = pool
        self._clock = clock
        self._writer = writer
        self._max_body = max_body_bytes
        self._env = env
        self.routes = RouteTable()
        self._log = LogThrottle()

    async def _off_loop(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def __call__(self, head: RequestHead, body: Body) -> Response:
        path = head.path
        if path == HEALTH_PATH:
            if head.method not in ("GET", "HEAD"):
                return answer(405, "use GET", ("Allow", "GET"))
            return Response(200, {"ok": True})
        if not path.startswith(HOOKS_PREFIX):
            return answer(404, "not found: webhooks are POST /hooks/<routine_id>")
        if head.method != "POST":
            return answer(405, "use POST", ("Allow", "POST"))
        rid = path[len(HOOKS_PREFIX) :]
        if not _valid_id(rid):
            return answer(404, "no such routine")
        limit = self._max_body()
        try:
            found, secret = await self._route_and_secret(rid)
        except Exception:
            log.exception("webhook routine lookup failed")
            return answer(503, "the daemon could not read its journal; retry")
        if found.found is Found.NO_ROUTINE:
            return answer(404, f"no routine {rid!r}")
        if found.found is Found.NO_WEBHOOK:
            return answer(404, f"routine {rid!r} has no webhook trigger")
        if found.found is Found.DISABLED:
            return answer(409, f"routine {rid!r} is disabled (or awaiting approval)")
        route = found.route
        assert route is not None
        if head.content_length is not None and head.content_length > limit:
            return answer(413, f"body larger than {limit} bytes")
        if isinstance(secret, SecretUnavailable):
            self._log(
                logging.WARNING,
                "webhook secret unavailable: requests get 503",
                rid,
                reason=secret.reason,
            )
            return answer(
                503, f"the secret of routine {rid!r} is not available; see the daemon log"
            )
        try:
            data = await body.read(limit)
        except BodyTooLarge:
            return answer(413, f"body larger than {limit} bytes")
        return await self._verified(head, rid, route, secret, data)

    async def _route_and_secret(self, rid: str) -> tuple[Lookup, bytes | SecretUnavailable]:
        """The routine's lookup and, for a webhook routine, its secret.

        The lookup is one or two primary-key reads of the WAL journal, which never wait for a
        writer: they run on the event loop, on its own connection (a trip through the pool
        and back cost more than the reads). A secret file is read off the loop (a file
        system can be slow); a variable is only looked up."""
        found = self.routes.lookup(self._journals(), rid)
        route = found.route
        if route is None:
            return found, b""
        trigger = route.trigger

        def secret() -> bytes | SecretUnavailable:
            try:
                return read_secret(trigger, self._env)
            except SecretUnavailable as exc:
                return exc

        if trigger.secret_file is None:
            return found, secret()
        return found, await self._off_loop(secret)

    async def _verified(
        self, head: RequestHead, rid: str, route: WebhookRoute, secret: bytes, data: bytes
    ) -> Response:
        h = head.headers
        signature = pick_signature(
            h.get(SIGNATURE_HEADER.lower()), h.get(GITHUB_SIGNATURE_HEADER.lower())
        )
        timestamp = h.get(TIMESTAMP_HEADER.lower())
        now_s = self._clock.now_ms() / 1000

        def check() -> Verdict:
            return verify(
                secret, data, signature, timestamp, now_s, route.trigger.require_timestamp
            )

        verdict = check() if len(data) <= INLINE_VERIFY_BYTES else await self._off_loop(check)
        if verdict.refusal is not None:
            self._log(logging.INFO, "webhook refused", rid, why=verdict.refusal.value)
            return answer(401, REFUSAL_TEXT[verdict.refusal])
        payload = _payload(data, head.headers)
        if payload is None:
            return answer(400, "the body is neither JSON nor UTF-8 text")
        timestamped = verdict.timestamp is not None
        item = Accept(
            routine_id=rid,
            mac=verdict.mac if timestamped else None,
            expires_ms=((verdict.timestamp or 0) + MAX_SKEW_S + 1) * 1000,
            payload=payload,
        )
        recorded = await self._writer.record(item)
        if recorded.outcome is Outcome.REPLAY:
            self._log(logging.INFO, "webhook refused", rid, why=Refusal.REPLAY.value)
            return answer(401, REFUSAL_TEXT[Refusal.REPLAY])
        if recorded.outcome is Outcome.RATE_LIMITED:
            seconds = max(1, -(-recorded.retry_after_ms // 1000))
            return answer(
                429,
                f"more than the rate limit of accepted requests for {rid!r} in the last minute",
                ("Retry-After", str(seconds)),
            )
        if recorded.outcome is Outcome.UNAVAILABLE:
            return answer(503, "the daemon could not record the request; retry")
        log.debug(  # at info, one line per request was a tenth of the listener's CPU
            "webhook accepted",
            extra={"routine_id": rid, "run_id": recorded.run_id, "status": recorded.status},
        )
        return Response(
            202,
            {
                "run_id": recorded.run_id,
                "status": recorded.status,
                "error_kind": recorded.error_kind,
            },
        )


def _payload(data: bytes, headers: Mapping[str, str]) -> str | None:
    """The run's ``PALYRA_TRIGGER_PAYLOAD``: ``{"body": JSON value or text, "event": …}``;
    None when the body is neither JSON nor UTF-8 text."""
    try:
        value: object = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    event = next((headers[h] for h in EVENT_HEADERS if h in headers), None)
    if event is not None:
        event = event[:MAX_EVENT_CHARS]
    return orjson.dumps({"body": value, "event": event}).decode()
