"""The webhook listener's record keeping, against a real journal file: the replay cache
(routine + MAC bytes, durable, only accepted requests), the per-routine rate window (seeded
from the journal after a restart, given back when a commit fails), batched accepts, and the
route table the scheduler publishes (read-your-writes, hash-checked)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from palyrad.domain import webhook_routes
from palyrad.journal import STATE_WEBHOOKS, Journal, RoutineState, RunDecision
from palyrad.runtime.clock import ManualClock
from palyrad.services.node_rpc.webhooks.accept import (
    Accept,
    AcceptWriter,
    Outcome,
    RateWindow,
    Recorded,
)
from palyrad.services.node_rpc.webhooks.ingress import Found, RouteTable
from routines.kinds import RunStatus, TriggerKind
from routines.model import CommandAction, ManualTrigger, Routine, WebhookTrigger

pytestmark = pytest.mark.timeout(30)

NOW = 1_800_000_000_000
MAC = bytes(range(32))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    j = Journal(path)
    yield j
    j.close()


class Rig:
    """A writer on its own connection; ``decide`` plays the scheduler."""

    def __init__(
        self, path: Path, rate: int = 1000, timeout_s: float = 5.0, busy_ms: int | None = None
    ) -> None:
        self.clock = ManualClock(NOW)
        self.pokes = 0
        self.rate = rate
        self.writer = AcceptWriter(
            lambda: Journal(path, busy_timeout_ms=busy_ms),
            self.clock,
            lambda: self.rate,
            self._poke,
            timeout_s,
        )
        self.journal = Journal(path)
        self.poked = threading.Event()
        self.writer.start()

    def _poke(self) -> None:
        self.pokes += 1
        self.poked.set()

    def decide(self, status: str = RunStatus.SKIPPED) -> None:
        """What the scheduler does on its poke: decide every undecided record."""
        undecided = self.journal.runs.undecided(1000)
        self.journal.runs.decide(
            [RunDecision(r.run_id, status, "cooldown", "test") for r in undecided], NOW
        )

    def send(self, item: Accept, *, decide: bool = True) -> Recorded:
        fut = self.writer.submit(item)
        if decide:
            self.poked.wait(5)
            self.poked.clear()
            self.decide()
        return fut.result(10)

    def close(self) -> None:
        self.writer.stop()
        self.journal.close()


@pytest.fixture
def rig(path: Path, journal: Journal) -> Iterator[Rig]:
    r = Rig(path)
    yield r
    r.close()


def _item(rid: str = "r", mac: bytes | None = MAC, payload: str = '{"body":1}') -> Accept:
    return Accept(rid, mac, NOW + 300_000, payload)


def test_an_accepted_request_is_one_run_record_and_its_decision(rig: Rig) -> None:
    got = rig.send(_item())
    assert got.outcome is Outcome.ACCEPTED and got.run_id
    assert (got.status, got.error_kind) == (RunStatus.SKIPPED, "cooldown")
    run = rig.journal.runs.get(got.run_id)
    assert run is not None
    assert run.trigger_kind == TriggerKind.WEBHOOK and run.trigger_payload == '{"body":1}'
    assert rig.pokes == 1


def test_a_replayed_mac_is_refused_without_a_record(rig: Rig) -> None:
    assert rig.send(_item()).outcome is Outcome.ACCEPTED
    assert rig.send(_item(), decide=False).outcome is Outcome.REPLAY
    assert len(rig.journal.runs.for_routine("r")) == 1
    # Another routine with the same MAC bytes is not a replay of this one.
    assert rig.send(_item("other")).outcome is Outcome.ACCEPTED
    # Body-only requests (no MAC to remember) are never replays.
    assert rig.send(_item(mac=None)).outcome is Outcome.ACCEPTED
    assert rig.send(_item(mac=None)).outcome is Outcome.ACCEPTED


def test_the_replay_cache_is_durable_and_expires(path: Path, journal: Journal) -> None:
    first = Rig(path)
    assert first.send(_item()).outcome is Outcome.ACCEPTED
    first.close()
    second = Rig(path)  # a restarted listener: nothing in memory
    try:
        assert second.send(_item(), decide=False).outcome is Outcome.REPLAY
        assert journal.webhooks.seen("r", MAC, NOW + 299_999)
        assert not journal.webhooks.seen("r", MAC, NOW + 300_000)
        assert journal.webhooks.prune(NOW + 300_000) == 1
    finally:
        second.close()


def test_two_copies_in_one_batch_are_one_run(path: Path, journal: Journal) -> None:
    r = Rig(path)
    try:
        futs = [r.writer.submit(_item()) for _ in range(5)]
        r.poked.wait(5)
        r.decide()
        outcomes = sorted(f.result(10).outcome for f in futs)
        assert outcomes.count(Outcome.ACCEPTED) == 1
        assert outcomes.count(Outcome.REPLAY) == 4
    finally:
        r.close()


def test_rate_limit_counts_accepted_requests_and_survives_a_restart(
    path: Path, journal: Journal
) -> None:
    r = Rig(path, rate=3)
    try:
        for _ in range(3):
            assert r.send(_item(mac=None)).outcome is Outcome.ACCEPTED
        over = r.send(_item(mac=None), decide=False)
        assert over.outcome is Outcome.RATE_LIMITED and 0 < over.retry_after_ms <= 60_000
        assert r.send(_item("other", mac=None)).outcome is Outcome.ACCEPTED
        # A rate-limited request is not remembered as seen: its retry is not a replay.
        assert r.send(_item(), decide=False).outcome is Outcome.RATE_LIMITED
    finally:
        r.close()
    again = Rig(path, rate=3)
    try:
        assert again.send(_item(mac=None), decide=False).outcome is Outcome.RATE_LIMITED
        again.clock.advance(60_001)
        assert again.send(_item()).outcome is Outcome.ACCEPTED
    finally:
        again.close()


def test_a_failed_commit_records_nothing_and_gives_the_budget_back(
    path: Path, journal: Journal
) -> None:
    r = Rig(path, rate=1, busy_ms=300)
    try:
        with journal.transaction():  # hold the write lock past the writer's busy timeout
            journal.state.set("hold", "1", NOW)
            got = r.writer.submit(_item()).result(60)
        assert got.outcome is Outcome.UNAVAILABLE
        assert journal.runs.for_routine("r") == []
        assert not journal.webhooks.seen("r", MAC, NOW)
        assert r.send(_item()).outcome is Outcome.ACCEPTED
    finally:
        r.close()


def test_an_undecided_record_answers_pending(path: Path, journal: Journal) -> None:
    r = Rig(path, timeout_s=0.2)
    try:
        got = r.send(_item(), decide=False)
        assert (got.outcome, got.status, got.error_kind) == (Outcome.ACCEPTED, "pending", None)
        run = journal.runs.get(got.run_id or "")
        assert run is not None and not run.decided  # kept for the scheduler
    finally:
        r.close()


def test_rate_window_alone() -> None:
    class NoJournal:
        class webhooks:
            @staticmethod
            def accepted_since(rid: str, since: str) -> list[int]:
                return [NOW - 59_000]

    w = RateWindow()
    j = NoJournal()
    assert w.take(j, "r", NOW, 2) == 0  # type: ignore[arg-type]
    assert w.take(j, "r", NOW, 2) == 1_000  # type: ignore[arg-type]
    w.give_back("r", NOW)
    assert w.take(j, "r", NOW + 1_000, 2) == 0  # type: ignore[arg-type]


def _routine(rid: str, secret_env: str) -> Routine:
    return Routine(
        id=rid,
        trigger=WebhookTrigger(secret_env=secret_env),
        action=CommandAction(argv=("true",)),
    )


def _publish(journal: Journal, routines: list[Routine], *, enabled: bool = True) -> None:
    with journal.transaction():
        journal.routines.sync(
            [
                RoutineState(r.id, r.content_hash(), None, enabled, NOW, None, None, None)
                for r in routines
            ],
            [],
            NOW,
        )
        doc = webhook_routes.publish((r, r.content_hash()) for r in routines)
        journal.state.set(STATE_WEBHOOKS, doc, NOW)


def test_route_table_follows_the_published_routines(journal: Journal) -> None:
    table = RouteTable()
    assert table.lookup(journal, "a").found is Found.NO_ROUTINE
    a = _routine("a", "A_SECRET")
    _publish(journal, [a])
    found = table.lookup(journal, "a")
    assert found.found is Found.ROUTE and found.route is not None
    assert found.route.trigger.secret_env == "A_SECRET"
    # Changed: the cached entry's hash no longer matches, so the table reloads at once.
    a2 = _routine("a", "A_ROTATED")
    _publish(journal, [a2])
    route = table.lookup(journal, "a").route
    assert route is not None and route.trigger.secret_env == "A_ROTATED"
    _publish(journal, [a2], enabled=False)
    assert table.lookup(journal, "a").found is Found.DISABLED
    # Changed to another trigger kind: in routine_state, not in the document.
    manual = Routine(id="a", trigger=ManualTrigger(), action=CommandAction(argv=("true",)))
    _publish(journal, [manual])
    assert table.lookup(journal, "a").found is Found.NO_WEBHOOK


def test_a_damaged_document_trusts_nothing() -> None:
    assert webhook_routes.parse("not json") == {}
    assert webhook_routes.parse('{"a": {"hash": "h"}}') == {}  # no secret at all
    both = {"a": {"hash": "h", "secret_env": "X", "secret_file": "/f"}}
    assert webhook_routes.parse(orjson.dumps(both).decode()) == {}
    assert webhook_routes.parse("[]") == {}
