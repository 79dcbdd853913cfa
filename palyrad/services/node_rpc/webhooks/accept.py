"""Recording accepted webhook requests: one writer thread, batched commits, then the decision.

A request that passed every check up to its signature is handed to ``AcceptWriter``. The
writer thread takes whatever is queued (up to ``BATCH``) and, in one ``BEGIN IMMEDIATE``:
refuses a replayed MAC (the durable cache, ``journal.webhooks``), refuses a routine over its
``rate_per_minute``, and for the rest writes the run record (undecided, ``trigger_kind =
webhook``) together with its MAC. So nothing reaches the journal unless it was accepted, and a
crash between two writes cannot leave a run whose MAC can be sent again. Then one poke, and
the scheduler decides every record of the batch through the same policies as any trigger.

Batching is what lets 16 concurrent senders cost about one commit per batch rather than one
each (see bench/webhooks.py). The thread that waits for decisions (``DecisionWaiter``) polls
only the decided flag and status of the runs it waits for, every millisecond while any wait,
as run-now does: the scheduler decides a poked trigger in about 2 ms.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum

from palyrad.domain.runs import Run, RunStatus, new_ulid, ulid_floor
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
    run_id = new_ulid(now)
    return Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id=routine_id,
        attempt=1,
        trigger_kind=TriggerKind.WEBHOOK,
        status=RunStatus.PENDING,
        queued_at_ms=now,
        trigger_payload=payload,
        decided=False,
    )


_Item = tuple[Accept, "Future[Recorded]"]


class AcceptWriter:
    """The writer thread (see the module docstring). ``submit`` is thread-safe."""

    def __init__(
        self,
        journal_factory: Callable[[], Journal],
        clock: Clock,
        rate_per_minute: Callable[[], int],
        poke_scheduler: Callable[[], None],
        waiter: DecisionWaiter,
    ) -> None:
        self._journal_factory = journal_factory
        self._clock = clock
        self._rate_per_minute = rate_per_minute
        self._poke = poke_scheduler
        self._waiter = waiter
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._rate = RateWindow()
        self._thread = threading.Thread(target=self._run, name="webhook-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5.0)

    def submit(self, item: Accept) -> Future[Recorded]:
        fut: Future[Recorded] = Future()
        self._queue.put((item, fut))
        return fut

    def _run(self) -> None:
        journal = self._journal_factory()
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
            self._commit(journal, batch)

    def _commit(self, journal: Journal, batch: list[_Item]) -> None:
        now = self._clock.now_ms()
        limit = self._rate_per_minute()
        results: list[Recorded] = []
        taken: list[str] = []
        try:
            with journal.transaction():
                for item, _ in batch:
                    results.append(self._one(journal, item, now, limit, taken))
        except Exception:
            log.exception("webhook requests could not be recorded")
            for rid in taken:
                self._rate.give_back(rid, now)
            results = [Recorded(Outcome.UNAVAILABLE)] * len(batch)
        accepted = [r.run_id for r in results if r.run_id is not None]
        if accepted:
            try:
                self._poke()
            except Exception:  # the scheduler also finds undecided records on its own pass
                log.exception("could not poke the scheduler")
        for (_, fut), result in zip(batch, results, strict=True):
            if result.run_id is not None:
                self._waiter.wait_for(result.run_id, fut)
            else:
                fut.set_result(result)

    def _one(
        self, journal: Journal, item: Accept, now: int, limit: int, taken: list[str]
    ) -> Recorded:
        rid = item.routine_id
        if item.mac is not None and journal.webhooks.seen(rid, item.mac, now):
            return Recorded(Outcome.REPLAY)
        wait_ms = self._rate.take(journal, rid, now, limit)
        if wait_ms:
            return Recorded(Outcome.RATE_LIMITED, retry_after_ms=wait_ms)
        taken.append(rid)
        run = webhook_run(rid, item.payload, now)
        journal.runs.insert(run)
        if item.mac is not None:
            journal.webhooks.remember(rid, item.mac, item.expires_ms)
        return Recorded(Outcome.ACCEPTED, run_id=run.run_id)


class DecisionWaiter:
    """A thread that resolves accepted requests' futures once the scheduler decided them."""

    def __init__(
        self, journal_factory: Callable[[], Journal], timeout_s: float = DECIDE_TIMEOUT_S
    ) -> None:
        self._journal_factory = journal_factory
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Future[Recorded], float]] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="webhook-decisions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def wait_for(self, run_id: str, fut: Future[Recorded]) -> None:
        """Resolve ``fut`` once the scheduler decided ``run_id`` (or gave it no decision in
        ``DECIDE_TIMEOUT_S``)."""
        with self._lock:
            self._pending[run_id] = (fut, time.monotonic() + self._timeout_s)
        self._wake.set()

    def _run(self) -> None:
        journal = self._journal_factory()
        while not self._stopping:
            with self._lock:
                ids = list(self._pending)[:MAX_POLL_IDS]
            if not ids:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                found = journal.runs.decisions(ids)
            except Exception:
                log.exception("could not read webhook runs' decisions")
                found = {}
            now = time.monotonic()
            done: list[tuple[Future[Recorded], Recorded]] = []
            with self._lock:
                for rid in ids:
                    fut, deadline = self._pending[rid]
                    got = found.get(rid)
                    if got is None and now < deadline:
                        continue
                    del self._pending[rid]
                    status, kind = got if got is not None else (RunStatus.PENDING.value, None)
                    done.append((fut, Recorded(Outcome.ACCEPTED, rid, status, kind)))
            for fut, rec in done:
                fut.set_result(rec)
            time.sleep(POLL_S)
        with self._lock:
            left = list(self._pending.items())
            self._pending.clear()
        for rid, (fut, _) in left:
            fut.set_result(Recorded(Outcome.ACCEPTED, rid, RunStatus.PENDING.value, None))
