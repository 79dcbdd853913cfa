"""Recording accepted webhook requests: one writer thread, batched commits, then the decision.

A request that passed every check up to its signature is handed to ``AcceptWriter``. The
writer thread takes whatever is queued (up to ``BATCH``) and, in one ``BEGIN IMMEDIATE``:
refuses a replayed MAC (the durable cache, ``journal.webhooks``), refuses a routine over its
``rate_per_minute``, and for the rest writes the run record (undecided, ``trigger_kind =
webhook``) together with its MAC. So nothing reaches the journal unless it was accepted, and a
crash between two writes cannot leave a run whose MAC can be sent again. Then one poke, and
the scheduler decides every record of the batch through the same policies as any trigger.

The writer then waits for the scheduler's decisions of its batch (polling only the decided
flag and status of those runs, every millisecond, as run-now does: the scheduler decides a
poked trigger in about 2 ms) before it takes the next one. So requests that arrive meanwhile
form the next batch: under load one commit, one poke and one scheduler pass serve many
requests, and when idle a request waits for nobody.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from enum import StrEnum

from palyrad.domain.runs import Run, RunStatus, ulid_floor, undecided_run
from palyrad.journal import Journal
from palyrad.seams import Clock
from routines.kinds import TriggerKind

log = logging.getLogger("palyrad.webhooks")

BATCH = 64
WINDOW_MS = 60_000  # the rate limit's window (SPEC §4.5: "in the last minute")
DECIDE_TIMEOUT_S = 5.0  # then the answer says "pending": the record stays and is decided later
POLL_S = 0.001
MAX_POLL_IDS = 500


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REPLAY = "replay"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # the journal could not record it: nothing was


@dataclass(frozen=True, slots=True)
class Accept:
    """A request to record: its routine, its MAC (timestamped requests only: the replay
    cache's key, kept until ``expires_ms``) and the payload the run will see."""

    routine_id: str
    mac: bytes | None
    expires_ms: int
    payload: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """What became of one request. ``ACCEPTED``: its run, and the scheduler's decision
    (``status`` ``pending`` with no ``error_kind`` when it did not decide within
    ``DECIDE_TIMEOUT_S``: the record stays and is decided when the scheduler can).
    ``RATE_LIMITED``: when the oldest accepted request leaves the window."""

    outcome: Outcome
    run_id: str | None = None
    status: str | None = None
    error_kind: str | None = None
    retry_after_ms: int = 0


class RateWindow:
    """Accepted requests per routine in the last minute, seeded from the journal the first
    time a routine is seen (a restart does not reset anyone's budget)."""

    def __init__(self) -> None:
        self._accepted: dict[str, collections.deque[int]] = {}

    def take(self, journal: Journal, routine_id: str, now: int, limit: int) -> int:
        """0 when one more request fits (and count it), else ms until one would."""
        times = self._accepted.get(routine_id)
        if times is None:
            seeded = journal.webhooks.accepted_since(routine_id, ulid_floor(now - WINDOW_MS))
            times = self._accepted[routine_id] = collections.deque(seeded)
        while times and times[0] <= now - WINDOW_MS:
            times.popleft()
        if len(times) >= limit:
            return max(1, times[-limit] + WINDOW_MS - now)
        times.append(now)
        return 0

    def give_back(self, routine_id: str, now: int) -> None:
        """Undo a ``take`` whose transaction did not commit."""
        times = self._accepted.get(routine_id)
        if times and times[-1] == now:
            times.pop()


def webhook_run(routine_id: str, payload: str, now: int) -> Run:
    """A webhook trigger as journaled before the scheduler decides it."""
    return undecided_run(routine_id, TriggerKind.WEBHOOK, payload, now)


# Who waits for a request's outcome: a thread (a concurrent Future), or a coroutine (its
# loop and an asyncio future, resolved a whole batch per loop wake-up).
_Sink = Future[Recorded] | tuple[asyncio.AbstractEventLoop, "asyncio.Future[Recorded]"]
_Item = tuple[Accept, _Sink]


def _deliver(sinks: list[_Sink], results: list[Recorded]) -> None:
    """Answer a batch. Coroutines get theirs in one ``call_soon_threadsafe`` per loop: one
    per request (``asyncio.wrap_future``) cost ~70 µs each, a tenth of a request's CPU. A
    request that is gone (its handler cancelled: the 30 s cap, the listener stopping) is
    skipped; its record, if written, stays."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Recorded], Recorded]]]
    by_loop = {}
    for sink, result in zip(sinks, results, strict=True):
        if isinstance(sink, Future):
            with contextlib.suppress(InvalidStateError):
                sink.set_result(result)
        else:
            by_loop.setdefault(sink[0], []).append((sink[1], result))
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop already closed: nobody waits
            loop.call_soon_threadsafe(_set_results, pairs)


def _set_results(pairs: list[tuple[asyncio.Future[Recorded], Recorded]]) -> None:
    for fut, result in pairs:
        if not fut.done():
            fut.set_result(result)


class AcceptWriter:
    """The writer thread (see the module docstring). ``submit`` is thread-safe."""

    def __init__(
        self,
        journal_factory: Callable[[], Journal],
        clock: Clock,
        rate_per_minute: Callable[[], int],
        poke_scheduler: Callable[[], None],
        decide_timeout_s: float = DECIDE_TIMEOUT_S,
    ) -> None:
        self._journal_factory = journal_factory
        self._clock = clock
        self._rate_per_minute = rate_per_minute
        self._poke = poke_scheduler
        self._decide_timeout_s = decide_timeout_s
        self._stopping = False
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._rate = RateWindow()
        self._thread = threading.Thread(target=self._run, name="webhook-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True  # a batch waiting for its decisions answers "pending" now
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5.0)

    def submit(self, item: Accept) -> Future[Recorded]:
        """Record ``item`` (from any thread); the future holds the outcome."""
        fut: Future[Recorded] = Future()
        self._queue.put((item, fut))
        return fut

    async def record(self, item: Accept) -> Recorded:
        """``submit`` for a coroutine: its batch is answered in one wake-up of its loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Recorded] = loop.create_future()
        self._queue.put((item, (loop, fut)))
        return await fut

    def _run(self) -> None:
        journal: Journal | None = None
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            try:
                journal = journal or self._journal_factory()
                self._commit(journal, batch)
            except Exception:  # never let one batch end the thread every request waits on
                log.exception("webhook writer failed a batch")
                _deliver([sink for _, sink in batch], [Recorded(Outcome.UNAVAILABLE)] * len(batch))

    def _commit(self, journal: Journal, batch: list[_Item]) -> None:
        now = self._clock.now_ms()
        limit = self._rate_per_minute()
        taken: list[str] = []
        try:
            with journal.transaction():
                results = self._record(journal, [item for item, _ in batch], now, limit, taken)
        except Exception:
            log.exception("webhook requests could not be recorded")
            for rid in taken:
                self._rate.give_back(rid, now)
            results = [Recorded(Outcome.UNAVAILABLE)] * len(batch)
        accepted = [r.run_id for r in results if r.run_id is not None]
        decided: dict[str, tuple[str, str | None]] = {}
        if accepted:
            try:
                self._poke()
            except Exception:  # the scheduler also finds undecided records on its own pass
                log.exception("could not poke the scheduler")
            decided = self._await_decisions(journal, accepted)
        answers = []
        for result in results:
            if result.run_id is not None:
                status, kind = decided.get(result.run_id, (RunStatus.PENDING.value, None))
                result = Recorded(Outcome.ACCEPTED, result.run_id, status, kind)
            answers.append(result)
        _deliver([sink for _, sink in batch], answers)

    def _await_decisions(
        self, journal: Journal, run_ids: list[str]
    ) -> dict[str, tuple[str, str | None]]:
        """The scheduler's decisions of a batch, polled until all are in or the timeout.

        The next batch waits meanwhile: requests arriving during one scheduler round are
        written, poked and decided together, so under load each commit, poke and scheduler
        pass serves many requests (bench/webhooks.py: this, not a separate waiter thread
        pipelining small batches, is what made the cost per request drop)."""
        found: dict[str, tuple[str, str | None]] = {}
        waiting = run_ids
        deadline = time.monotonic() + self._decide_timeout_s
        while waiting and not self._stopping:
            try:
                found.update(journal.runs.decisions(waiting[:MAX_POLL_IDS]))
            except Exception:
                log.exception("could not read webhook runs' decisions")
            waiting = [r for r in waiting if r not in found]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        return found

    def _record(
        self, journal: Journal, items: list[Accept], now: int, limit: int, taken: list[str]
    ) -> list[Recorded]:
        """The batch's outcomes, in order, with its records written: a handful of statements
        for the whole batch. (Each statement hands the GIL to the event loop's thread and
        waits to get it back; one per request made the writer crawl under load.)"""
        keys = [(item.routine_id, item.mac) for item in items if item.mac is not None]
        seen = journal.webhooks.seen_many(keys, now) if keys else set()
        results: list[Recorded] = []
        runs: list[Run] = []
        remember: list[tuple[str, bytes, int]] = []
        for item in items:
            rid = item.routine_id
            if item.mac is not None and (rid, item.mac) in seen:
                results.append(Recorded(Outcome.REPLAY))
                continue
            wait_ms = self._rate.take(journal, rid, now, limit)
            if wait_ms:
                results.append(Recorded(Outcome.RATE_LIMITED, retry_after_ms=wait_ms))
                continue
            taken.append(rid)
            run = webhook_run(rid, item.payload, now)
            runs.append(run)
            if item.mac is not None:
                seen.add((rid, item.mac))  # a second copy in this batch is a replay too
                remember.append((rid, item.mac, item.expires_ms))
            results.append(Recorded(Outcome.ACCEPTED, run_id=run.run_id))
        journal.runs.insert_many(runs)
        journal.webhooks.remember_many(remember)
        return results
