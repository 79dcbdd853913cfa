"""The self-healing ``task`` domain (SPEC §6 "Self-healing"): a running background task whose
heartbeat is older than ``stale_task_ms`` opens an incident, ``requeue_task`` ends its lease
(the stalled worker is fenced off, the executor is poked and takes it over), and the incident
resolves once a worker has it again. A real journal and a real (unstarted) ServiceContext;
"now" is injected.
"""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from palyrad.journal import Task
from palyrad.journal.tasks import Tasks
from palyrad.runtime.home import Home
from palyrad.seams import Finding
from palyrad.services.context import ServiceContext
from palyrad.services.self_healing.engine import IncidentEngine
from palyrad.services.self_healing.registry import detectors, remediations
from palyrad.services.self_healing.tasks import RequeueTask, StaleTaskDetector

pytestmark = pytest.mark.timeout(60)

T0 = 1_796_000_000_000
STALE = 5_000
LEASE = 60_000  # longer than STALE: only self-healing ends it early


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home").ensure()
    h.config.write_text(f"[self_healing]\nstale_task_ms = {STALE}\n")
    return h


@pytest.fixture
def pipe(home: Home) -> Iterator[tuple[ServiceContext, Connection]]:
    """The self-healing service's context (not started: no threads, no FIFO) and the
    supervisor's end of its pipe, where relayed pokes arrive."""
    ours, theirs = Pipe()
    ctx = ServiceContext("self_healing", home, ours, "instance-1", 0)
    yield ctx, theirs
    ctx.journal.close()
    ours.close()
    theirs.close()


@pytest.fixture
def ctx(pipe: tuple[ServiceContext, Connection]) -> ServiceContext:
    return pipe[0]


def pokes(conn: Connection) -> list[tuple[str, ...]]:
    got = []
    while conn.poll(0):
        msg = conn.recv()
        if msg[0] == "poke":
            got.append(tuple(msg[1]))
    return got


def running(ctx: ServiceContext, task_id: str, token: str, now: int, **kw: int) -> None:
    ctx.journal.tasks.enqueue(task_id, "journal_vacuum", "null", now, **kw)
    (task,) = ctx.journal.tasks.claim("executor-1", [token], now, LEASE)
    assert task.task_id == task_id


def finding(task_id: str) -> Finding:
    return Finding("task", task_id, "warning", "stale")


# --- the detector ------------------------------------------------------------------------------


def test_a_task_without_a_heartbeat_for_stale_task_ms_is_found(ctx: ServiceContext) -> None:
    det = StaleTaskDetector(ctx)
    assert det.domain == "task"
    running(ctx, "quiet", "tq", T0)
    running(ctx, "busy", "tb", T0)
    ctx.journal.tasks.enqueue("waiting", "memory_maintenance", "null", T0)
    assert det.detect(T0 + STALE, frozenset()) == []  # exactly stale_task_ms: not yet
    ctx.journal.tasks.heartbeat("busy", "tb", T0 + 4_000, LEASE)
    (f,) = det.detect(T0 + STALE + 1_500, frozenset())
    assert (f.domain, f.subject, f.severity, f.remediable) == ("task", "quiet", "warning", True)
    assert f.summary.startswith(
        "journal_vacuum task quiet (attempt 1/3) has had no heartbeat for 6.5 s"
        f" (stale_task_ms {STALE})"
    )
    ctx.journal.tasks.succeed("quiet", "tq", T0 + 7_000)
    assert det.detect(T0 + 7_000, frozenset({"quiet"})) == []


# --- the remediation ---------------------------------------------------------------------------


def test_requeue_ends_the_lease_fences_the_old_worker_and_pokes_the_executor(
    pipe: tuple[ServiceContext, Connection],
) -> None:
    ctx, supervisor = pipe
    fix = RequeueTask(ctx)
    assert (fix.domain, fix.action, fix.journal_free) == ("task", "requeue_task", False)
    running(ctx, "t", "old", T0)
    now = T0 + STALE + 1
    detail = fix.apply(finding("t"), now)
    assert detail.startswith("requeued journal_vacuum task t: its lease ended now")
    assert "attempt 2/3" in detail
    assert pokes(supervisor) == [("executor",)]
    # The stalled worker wakes: it can neither keep nor finish the task.
    assert not ctx.journal.tasks.heartbeat("t", "old", now, LEASE)
    assert not ctx.journal.tasks.succeed("t", "old", now)
    # The executor takes it over at once, as the next attempt.
    (taken,) = ctx.journal.tasks.claim("executor-2", ["new"], now, LEASE)
    assert (taken.task_id, taken.attempt, taken.lease_token) == ("t", 2, "new")
    assert StaleTaskDetector(ctx).detect(now, frozenset({"t"})) == []


def test_requeue_is_idempotent(pipe: tuple[ServiceContext, Connection]) -> None:
    ctx, supervisor = pipe
    fix = RequeueTask(ctx)
    running(ctx, "t", "old", T0)
    now = T0 + STALE + 1
    fix.apply(finding("t"), now)
    # A second attempt before the executor claimed it changes nothing, but pokes again.
    again = fix.apply(finding("t"), now + 5_000)
    assert again.startswith("already requeued")
    assert pokes(supervisor) == [("executor",), ("executor",)]
    (taken,) = ctx.journal.tasks.claim("executor-2", ["new"], now + 5_000, LEASE)
    assert taken.attempt == 2
    # Now it heartbeats under its new worker; then it finishes.
    assert fix.apply(finding("t"), now + 5_001) == "the task heartbeats again; nothing to do"
    ctx.journal.tasks.succeed("t", "new", now + 6_000)
    assert fix.apply(finding("t"), now + 7_000) == "the task already finished; nothing to do"
    assert fix.apply(finding("missing"), now) == "the task already finished; nothing to do"
    assert pokes(supervisor) == []


def test_requeue_on_the_last_attempt_says_the_next_claim_fails_it(ctx: ServiceContext) -> None:
    running(ctx, "t", "old", T0, max_attempts=1)
    detail = RequeueTask(ctx).apply(finding("t"), T0 + STALE + 1)
    assert "last attempt" in detail
    assert ctx.journal.tasks.claim("executor-2", ["new"], T0 + STALE + 1, LEASE) == []
    task = ctx.journal.tasks.get("t")
    assert task is not None and task.status == "failed"
    assert task.error is not None and "worker was lost" in task.error


# --- registered, and through the engine ----------------------------------------------------------


def test_the_task_domain_is_registered_and_an_incident_opens_requeues_and_resolves(
    pipe: tuple[ServiceContext, Connection],
) -> None:
    ctx, supervisor = pipe
    dets = detectors(ctx)
    fixes = remediations(ctx)
    assert sum(isinstance(d, StaleTaskDetector) for d in dets) == 1
    assert isinstance(fixes["task"], RequeueTask)
    only_tasks = [d for d in dets if d.domain == "task"]
    engine = IncidentEngine(ctx.journal, only_tasks, fixes, mode=lambda: "auto")
    running(ctx, "t", "old", T0)
    assert engine.sweep(T0 + STALE).opened == []
    report = engine.sweep(T0 + STALE + 1)
    assert [(i.domain, i.subject) for i in report.opened] == [("task", "t")]
    (incident,) = ctx.journal.incidents.open_incidents()
    [attempt] = incident.remediations
    assert (attempt.action, attempt.outcome) == ("requeue_task", "succeeded")
    assert attempt.detail.startswith("requeued journal_vacuum task t")
    assert ("executor",) in pokes(supervisor)
    ctx.journal.tasks.claim("executor-2", ["new"], T0 + STALE + 2, LEASE)
    report = engine.sweep(T0 + STALE + 3)
    assert [(i.domain, i.subject) for i in report.resolved] == [("task", "t")]
    assert ctx.journal.incidents.open_incidents() == []


def test_observe_only_records_without_requeueing(ctx: ServiceContext) -> None:
    engine = IncidentEngine(
        ctx.journal, [StaleTaskDetector(ctx)], remediations(ctx), mode=lambda: "observe_only"
    )
    running(ctx, "t", "old", T0)
    engine.sweep(T0 + STALE + 1)
    (incident,) = ctx.journal.incidents.open_incidents()
    assert incident.domain == "task" and not incident.remediations
    assert ctx.journal.tasks.heartbeat("t", "old", T0 + STALE + 2, LEASE)  # still its lease


def test_requeue_never_revokes_a_worker_that_took_the_task_over_after_the_read(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remediation reads the task, then ends its lease: a take-over (or a heartbeat)
    in between must keep the new holder's lease, or the task runs a third time for nothing
    and the live worker's result is refused."""
    running(ctx, "t", "old", T0)
    now = T0 + LEASE + 1  # the lease ran out: a claim may take it over
    tasks = ctx.journal.tasks
    real_get = Tasks.get.__get__(tasks)

    def get_then_taken_over(task_id: str) -> Task | None:
        seen = real_get(task_id)
        (taken,) = tasks.claim("executor-2", ["fresh"], now, LEASE)
        assert taken.lease_token == "fresh"
        return seen

    monkeypatch.setattr(Tasks, "get", lambda _self, task_id: get_then_taken_over(task_id))
    detail = RequeueTask(ctx).apply(finding("t"), now)
    assert "nothing to do" in detail
    assert tasks.heartbeat("t", "fresh", now + 1, LEASE)  # the new worker still holds it
    assert tasks.succeed("t", "fresh", now + 2)


def test_requeue_leaves_a_stalled_worker_that_woke_after_the_read(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    running(ctx, "t", "old", T0)
    now = T0 + STALE + 1
    tasks = ctx.journal.tasks
    real_get = Tasks.get.__get__(tasks)

    def get_then_heartbeat(task_id: str) -> Task | None:
        seen = real_get(task_id)
        assert tasks.heartbeat("t", "old", now, LEASE)
        return seen

    monkeypatch.setattr(Tasks, "get", lambda _self, task_id: get_then_heartbeat(task_id))
    RequeueTask(ctx).apply(finding("t"), now)
    assert tasks.succeed("t", "old", now + 1)
