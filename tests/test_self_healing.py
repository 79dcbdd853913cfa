"""The self-healing process's judgement, without a daemon (SPEC §6 "Self-healing").

``IncidentEngine`` on a real journal with fake detectors and remediations, "now" advanced by
hand: rate limits (≥ 5 s between attempts, ≤ 3 in 10 min, then critical with one ``skipped``
attempt and nothing more), ``observe_only``, a crashing detector. Then the real detectors on
crafted inputs: the process detector on a crafted run/status.json (the pid-file lock held by
the test, as the supervisor holds it) and journal heartbeats, the disk detector with an
injected ``space``, the journal detector, the definitions detector, the restart remediation's
safety checks, and the journal's write-failure hook.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyrad.journal import STATE_DEFINITIONS_ERROR, Journal, ProcessHeartbeat, connection
from palyrad.runtime.disk import DiskSpace
from palyrad.runtime.home import Home
from palyrad.runtime.notify import ensure_fifo
from palyrad.runtime.status import DaemonStatus, ProcessStatus, write_status
from palyrad.seams import Finding, RemediationFailed
from palyrad.services.context import ServiceContext
from palyrad.services.self_healing.conditions import (
    DEFINITIONS_SUBJECT,
    JOURNAL_SUBJECT,
    DefinitionsDetector,
    DiskDetector,
    JournalDetector,
)
from palyrad.services.self_healing.engine import (
    ATTEMPT_SPACING_MS,
    ATTEMPT_WINDOW_MS,
    MAX_ATTEMPTS,
    IncidentEngine,
)
from palyrad.services.self_healing.processes import ProcessDetector, RestartProcess

pytestmark = pytest.mark.timeout(60)

T0 = 1_796_000_000_000
MIN = 60_000


# --- fakes -------------------------------------------------------------------------------------


class FakeDetector:
    """Reports ``findings`` (or raises when ``crash``); remembers what it was asked."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.findings: list[Finding] = []
        self.crash = False
        self.asked: list[frozenset[str]] = []

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        self.asked.append(open_subjects)
        if self.crash:
            raise RuntimeError("detector bug")
        return list(self.findings)


class FakeFix:
    """A remediation that fails (``RemediationFailed``) unless told otherwise; remembers
    when it was applied."""

    def __init__(
        self,
        domain: str,
        action: str = "fix",
        *,
        error: Exception | None = None,
        journal_free: bool = False,
    ):
        self.domain = domain
        self.action = action
        self.journal_free = journal_free
        self.error: Exception | None = error or RemediationFailed("still broken")
        self.calls: list[int] = []

    def apply(self, finding: Finding, now_ms: int) -> str:
        self.calls.append(now_ms)
        if self.error is not None:
            raise self.error
        return "fixed it"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def finding(domain: str = "process", subject: str = "scheduler", **kw: Any) -> Finding:
    return Finding(
        domain, subject, kw.pop("severity", "warning"), kw.pop("summary", "silent"), **kw
    )


def events(journal: Journal) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, orjson.loads(e.payload or "null")) for e in journal.events.since(0, 1000)]


# --- the engine: resolution in the fixing sweep, and fixes while the journal is locked ---------


def test_a_fix_that_clears_its_condition_resolves_in_the_same_sweep(journal: Journal) -> None:
    det = FakeDetector("run")
    det.findings = [finding("run", "r1")]
    fix = FakeFix("run", "fail_run")
    fix.error = None  # it works
    original = fix.apply

    def apply_and_clear(f: Finding, now_ms: int) -> str:
        det.findings = []  # e.g. the stuck run is failed: no longer found
        return original(f, now_ms)

    fix.apply = apply_and_clear  # type: ignore[method-assign]
    engine = IncidentEngine(journal, [det], {"run": fix}, mode=lambda: "auto")
    report = engine.sweep(T0)
    assert [i.subject for i in report.opened] == ["r1"]
    assert [i.subject for i in report.resolved] == ["r1"]
    (incident,) = journal.incidents.all()
    assert incident.state == "resolved" and incident.resolved_ms == T0
    assert [(a.action, a.outcome) for a in incident.remediations] == [("fail_run", "succeeded")]
    assert [name for name, _ in events(journal)] == ["incident.opened", "incident.resolved"]


def test_a_journal_free_fix_runs_while_the_journal_is_locked_and_is_recorded_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, busy_timeout_ms=50)
    det = FakeDetector("process")
    det.findings = [finding("process", "scheduler")]
    restart = FakeFix("process", "restart_process", journal_free=True)
    stale = FakeFix("run", "fail_run")  # needs the journal: never run blind
    restart.error = stale.error = None
    run_det = FakeDetector("run")
    run_det.findings = [finding("run", "r1")]
    engine = IncidentEngine(
        journal, [det, run_det], {"process": restart, "run": stale}, mode=lambda: "auto"
    )
    frozen = sqlite3.connect(str(path), isolation_level=None)  # a service frozen mid-write
    try:
        frozen.execute("BEGIN IMMEDIATE")
        report = engine.sweep(T0)
        assert restart.calls == [T0] and stale.calls == []
        assert sorted(report.failed_domains) == ["process", "run"]
        engine.sweep(T0 + 1_000)  # still locked: spaced like journaled attempts
        assert restart.calls == [T0]
        assert journal.incidents.all() == []
    finally:
        frozen.execute("ROLLBACK")
        frozen.close()
    det.findings = []  # the restart worked: the service beats again
    report = engine.sweep(T0 + 6_000)
    process = next(i for i in journal.incidents.all() if i.domain == "process")
    assert process.opened_ms == T0 and process.state == "resolved"
    (attempt,) = process.remediations
    assert (attempt.action, attempt.outcome, attempt.at_ms) == ("restart_process", "succeeded", T0)
    assert "journal could not be written" in attempt.detail
    assert stale.calls == [T0 + 6_000]  # the run's fix waited for a writable journal
    journal.close()


# --- the engine: rate limit and escalation -----------------------------------------------------


def test_failed_remediations_are_spaced_then_escalated_once(journal: Journal) -> None:
    det, fix = FakeDetector("process"), FakeFix("process", "restart_process")
    det.findings = [finding()]
    pokes: list[int] = []
    engine = IncidentEngine(
        journal, [det], {"process": fix}, mode=lambda: "auto", on_event=lambda: pokes.append(1)
    )
    for now in range(T0, T0 + MIN + 1, 1000):  # a sweep every second for a minute
        engine.sweep(now)
    assert fix.calls == [T0, T0 + 5_000, T0 + 10_000]
    assert all(b - a >= ATTEMPT_SPACING_MS for a, b in zip(fix.calls, fix.calls[1:], strict=False))
    [inc] = journal.incidents.open_incidents()
    assert [a.outcome for a in inc.remediations] == ["failed"] * MAX_ATTEMPTS + ["skipped"]
    assert all(a.action == "restart_process" for a in inc.remediations)
    assert inc.remediations[0].detail == "still broken"
    skipped = inc.remediations[-1]
    assert skipped.at_ms == T0 + 15_000 and "escalated to critical" in skipped.detail
    assert inc.severity == "critical"
    assert "gave up" in inc.summary  # the summary keeps saying so while it is open

    # Escalated: nothing more is tried, however long it stays broken.
    for now in range(T0 + MIN, T0 + 30 * MIN, 30_000):
        engine.sweep(now)
    same = journal.incidents.get(inc.incident_id)
    assert same is not None and len(same.remediations) == MAX_ATTEMPTS + 1
    assert len(fix.calls) == MAX_ATTEMPTS and same.severity == "critical"
    assert "gave up" in same.summary

    det.findings = []
    report = engine.sweep(T0 + 31 * MIN)
    assert [i.incident_id for i in report.resolved] == [inc.incident_id]
    assert [(name, p["state"]) for name, p in events(journal)] == [
        ("incident.opened", "open"),
        ("incident.resolved", "resolved"),
    ]
    assert len(pokes) == 2  # the scheduler is woken for each event

    # A new occurrence is a new incident with a fresh budget.
    det.findings = [finding()]
    engine.sweep(T0 + 32 * MIN)
    [again] = journal.incidents.open_incidents()
    assert again.incident_id != inc.incident_id and again.severity == "warning"
    assert [a.outcome for a in again.remediations] == ["failed"]


def test_the_attempt_limit_is_per_ten_minutes_not_forever(journal: Journal) -> None:
    det, fix = FakeDetector("process"), FakeFix("process")
    det.findings = [finding()]
    engine = IncidentEngine(journal, [det], {"process": fix}, mode=lambda: "auto")
    sweeps = [T0 + k * 6 * MIN for k in range(6)]  # 6 min apart: ≤ 2 in any 10 min
    for now in sweeps:
        engine.sweep(now)
    assert fix.calls == sweeps
    [inc] = journal.incidents.open_incidents()
    assert inc.severity == "warning" and all(a.outcome == "failed" for a in inc.remediations)
    assert ATTEMPT_WINDOW_MS == 10 * MIN


def test_a_remediation_that_works_but_not_for_long_is_also_limited(journal: Journal) -> None:
    det, fix = FakeDetector("run"), FakeFix("run", "fail_run")
    fix.error = None  # "succeeded", yet the condition is still found
    det.findings = [finding("run", "01RUN")]
    engine = IncidentEngine(journal, [det], {"run": fix}, mode=lambda: "auto")
    for now in range(T0, T0 + MIN, 500):
        engine.sweep(now)
    [inc] = journal.incidents.open_incidents()
    assert [a.outcome for a in inc.remediations] == ["succeeded"] * 3 + ["skipped"]
    assert len(fix.calls) == 3


def test_the_attempt_limit_spans_incidents_of_the_same_subject(journal: Journal) -> None:
    """A service that crash-loops a little after each start goes ``fatal``, runs and beats
    for a moment (its incident resolves), then crash-loops to ``fatal`` again: each time a
    new incident. A limit counted per incident would ask the supervisor to restart it at
    once every time, for ever — bypassing the supervisor's growing cool-down. The limit is
    per (domain, subject): ≤ 3 attempts in 10 min across its incidents."""
    det, fix = FakeDetector("process"), FakeFix("process", "restart_process")
    fix.error = None  # the restart request "succeeds"; the service just crashes again
    engine = IncidentEngine(journal, [det], {"process": fix}, mode=lambda: "auto")
    now = T0
    for _ in range(10):  # fatal, then running for a moment, ~20 s a cycle
        det.findings = [finding(severity="critical", summary="fatal")]
        engine.sweep(now)
        det.findings = []
        engine.sweep(now + 10_000)
        now += 20_000
    assert len(fix.calls) == MAX_ATTEMPTS
    # The incident that found the budget spent says so (critical, one skipped attempt).
    latest = journal.incidents.all()[0]
    assert latest.severity == "critical"
    assert [a.outcome for a in latest.remediations] == ["skipped"]
    # Ten minutes after the last attempt the budget is back.
    det.findings = [finding(severity="critical", summary="fatal")]
    engine.sweep(fix.calls[-1] + ATTEMPT_WINDOW_MS + 1)
    assert len(fix.calls) == MAX_ATTEMPTS + 1


def test_a_crashing_remediation_is_a_failed_attempt(journal: Journal) -> None:
    det, fix = FakeDetector("process"), FakeFix("process", error=ValueError("boom"))
    det.findings = [finding()]
    engine = IncidentEngine(journal, [det], {"process": fix}, mode=lambda: "auto")
    report = engine.sweep(T0)
    [inc] = journal.incidents.open_incidents()
    [attempt] = inc.remediations
    assert attempt.outcome == "failed"
    assert attempt.detail == "remediation crashed: ValueError: boom"
    assert report.attempts == [("scheduler", "failed", attempt.detail)]


def test_observe_only_records_and_never_remediates(journal: Journal) -> None:
    det, fix = FakeDetector("process"), FakeFix("process")
    det.findings = [finding()]
    mode = ["observe_only"]
    engine = IncidentEngine(journal, [det], {"process": fix}, mode=lambda: mode[0])
    for now in range(T0, T0 + 2 * MIN, 1000):
        engine.sweep(now)
    assert fix.calls == []
    [inc] = journal.incidents.open_incidents()
    assert inc.remediations == () and inc.severity == "warning"
    assert [name for name, _ in events(journal)] == ["incident.opened"]
    # The mode is read every sweep (SIGHUP may switch it): back in auto, the fix runs.
    mode[0] = "auto"
    engine.sweep(T0 + 2 * MIN)
    assert fix.calls == [T0 + 2 * MIN]


def test_unremediable_and_foreign_findings(journal: Journal) -> None:
    det, fix = FakeDetector("process"), FakeFix("process")
    det.findings = [
        finding(remediable=False),
        finding(subject="scheduler", summary="a duplicate subject is ignored"),
        finding("disk", "/home", summary="another domain's finding is ignored"),
    ]
    engine = IncidentEngine(journal, [det], {"process": fix}, mode=lambda: "auto")
    for now in range(T0, T0 + 20_000, 1000):
        engine.sweep(now)
    assert fix.calls == []
    [inc] = journal.incidents.open_incidents()
    assert (inc.domain, inc.subject, inc.summary) == ("process", "scheduler", "silent")


def test_a_crashing_detector_leaves_its_domain_alone_and_others_proceed(
    journal: Journal,
) -> None:
    disk, proc = FakeDetector("disk"), FakeDetector("process")
    disk.findings = [finding("disk", "/home", summary="low disk")]
    proc.findings = [finding()]
    engine = IncidentEngine(journal, [disk, proc], {}, mode=lambda: "auto")
    engine.sweep(T0)
    assert {i.domain for i in journal.incidents.open_incidents()} == {"disk", "process"}

    disk.crash = True
    disk.findings = []  # it would say "cleared" if it could run
    proc.findings = [finding(subject="executor")]  # scheduler cleared, executor is new
    report = engine.sweep(T0 + 1000)
    assert report.failed_domains == ["disk"]
    assert [i.subject for i in report.resolved] == ["scheduler"]
    assert [i.subject for i in report.opened] == ["executor"]
    still = {(i.domain, i.subject) for i in journal.incidents.open_incidents()}
    assert still == {("disk", "/home"), ("process", "executor")}
    assert disk.asked[-1] == frozenset({"/home"})  # it was shown its open subjects

    disk.crash = False
    report = engine.sweep(T0 + 2000)
    assert [(i.domain, i.subject) for i in report.resolved] == [("disk", "/home")]


# --- the detectors on crafted inputs -----------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home").ensure()
    h.config.write_text("[self_healing]\nprocess_silence_ms = 3000\n")
    return h


@pytest.fixture
def ctx(home: Home) -> Iterator[ServiceContext]:
    """The self-healing service's context (not started: no threads, no FIFO)."""
    ours, theirs = Pipe()
    c = ServiceContext("self_healing", home, ours, "instance-1", 0)
    yield c
    c.journal.close()
    ours.close()
    theirs.close()


@pytest.fixture
def supervisor_lock(home: Home) -> Iterator[None]:
    """Hold the pid-file lock as a live supervisor does, so run/status.json is believed."""
    fd = os.open(home.pid_file, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def proc_status(name: str, pid: int | None, state: str = "running", **kw: Any) -> ProcessStatus:
    return ProcessStatus(name, pid, state, kw.pop("restarts", 0), **kw)


def write_processes(home: Home, *procs: ProcessStatus, supervisor: int | None = None) -> None:
    pid = os.getpid() if supervisor is None else supervisor
    write_status(home, DaemonStatus(True, pid, "instance-1", T0 - MIN, tuple(procs)))


def beat(
    ctx: ServiceContext,
    name: str,
    pid: int,
    at_ms: int,
    state: str = "running",
    *,
    instance: str = "instance-1",
    restarts: int = 0,
) -> None:
    ctx.journal.heartbeats.beat(ProcessHeartbeat(name, pid, instance, state, restarts, at_ms))


@pytest.mark.usefixtures("supervisor_lock")
def test_process_detector_judges_each_service(ctx: ServiceContext) -> None:
    now = T0
    write_processes(
        ctx.home,
        proc_status("scheduler", 101),  # silent: its own beat is 3.5 s old
        proc_status("executor", 102),  # beat 1 s ago: fine
        proc_status("node_rpc", 103),  # wedged: its main loop says so
        proc_status("self_healing", 104),  # never judges itself
    )
    beat(ctx, "scheduler", 101, now - 3_500)
    beat(ctx, "executor", 102, now - 1_000)
    beat(ctx, "node_rpc", 103, now - 500, state="stalled")
    beat(ctx, "self_healing", 104, now - 60_000)
    found = {f.subject: f for f in ProcessDetector(ctx).detect(now, frozenset())}
    assert set(found) == {"scheduler", "node_rpc"}
    silent = found["scheduler"]
    assert silent.remediable and silent.severity == "warning"
    assert "silent for 3.5 s" in silent.summary and "process_silence_ms 3000" in silent.summary
    assert found["node_rpc"].remediable and "wedged" in found["node_rpc"].summary
    # Exactly at the limit is not yet silent.
    beat(ctx, "scheduler", 101, now - 3_000)
    assert ProcessDetector(ctx).detect(now, frozenset()) == [found["node_rpc"]]


@pytest.mark.usefixtures("supervisor_lock")
def test_process_detector_a_fatal_service_is_critical(ctx: ServiceContext) -> None:
    write_processes(
        ctx.home, proc_status("executor", None, "fatal", restarts=6, retry_at_ms=T0 + MIN)
    )
    [f] = ProcessDetector(ctx).detect(T0, frozenset())
    assert (f.subject, f.severity, f.remediable) == ("executor", "critical", True)
    assert "crashed 6 times" in f.summary and "fatal" in f.summary


@pytest.mark.usefixtures("supervisor_lock")
def test_process_detector_never_condemns_a_successor_by_its_predecessor(
    ctx: ServiceContext,
) -> None:
    # The row is the previous scheduler's (pid 101); pid 201 runs now and has not beaten yet.
    write_processes(ctx.home, proc_status("scheduler", 201, restarts=1))
    beat(ctx, "scheduler", 101, T0 - 30_000)
    assert ProcessDetector(ctx).detect(T0, frozenset()) == []
    # While its incident is open (the restart is the fix under way), it stays open, and
    # nothing is done about it again.
    [f] = ProcessDetector(ctx).detect(T0, frozenset({"scheduler"}))
    assert f.subject == "scheduler" and not f.remediable
    # Restarting, likewise.
    write_processes(ctx.home, proc_status("scheduler", None, "restarting", restarts=1))
    assert ProcessDetector(ctx).detect(T0, frozenset()) == []
    [f] = ProcessDetector(ctx).detect(T0, frozenset({"scheduler"}))
    assert not f.remediable and "restarting" in f.summary
    # Once it beats under its own pid, a fresh beat clears it.
    write_processes(ctx.home, proc_status("scheduler", 201, restarts=1))
    beat(ctx, "scheduler", 201, T0 - 100, restarts=1)
    assert ProcessDetector(ctx).detect(T0, frozenset({"scheduler"})) == []


@pytest.mark.usefixtures("supervisor_lock")
def test_process_detector_a_recycled_pid_is_not_the_same_process(ctx: ServiceContext) -> None:
    """A beat names its process by (pid, daemon instance, restart count): a successor that
    got its predecessor's pid back — from an earlier daemon, or an earlier restart — and has
    not beaten yet is not judged by the old row (SIGKILLing a service that just started)."""
    write_processes(ctx.home, proc_status("scheduler", 101, restarts=2))
    beat(ctx, "scheduler", 101, T0 - 30_000, instance="earlier-daemon", restarts=2)
    assert ProcessDetector(ctx).detect(T0, frozenset()) == []
    beat(ctx, "scheduler", 101, T0 - 30_000, restarts=1)
    assert ProcessDetector(ctx).detect(T0, frozenset()) == []
    beat(ctx, "scheduler", 101, T0 - 30_000, restarts=2)  # this very process: silent
    assert [f.subject for f in ProcessDetector(ctx).detect(T0, frozenset())] == ["scheduler"]


@pytest.mark.usefixtures("supervisor_lock")
def test_process_detector_a_late_journal_beat_with_a_live_pipe_is_not_silence(
    ctx: ServiceContext,
) -> None:
    """While another writer holds the journal's write lock (an operator's sqlite3 shell, a
    long transaction) or the disk is full, every service's journal beat goes stale — but its
    pipe heartbeats to the supervisor go on. That is not a stopped or hung process: SIGKILLing
    every service (and the executor's runs with it) would fix nothing."""
    write_processes(
        ctx.home,
        proc_status("scheduler", 101, last_heartbeat_ms=T0 - 800),  # pipe: alive
        proc_status("executor", 102, last_heartbeat_ms=T0 - 3_500),  # pipe: silent too
    )
    beat(ctx, "scheduler", 101, T0 - 20_000)
    beat(ctx, "executor", 102, T0 - 20_000)
    assert [f.subject for f in ProcessDetector(ctx).detect(T0, frozenset())] == ["executor"]


def test_process_detector_sees_nothing_when_no_supervisor_lives(ctx: ServiceContext) -> None:
    write_processes(ctx.home, proc_status("scheduler", 101))  # left by a dead supervisor
    beat(ctx, "scheduler", 101, T0 - MIN)
    assert ProcessDetector(ctx).detect(T0, frozenset()) == []


@pytest.mark.usefixtures("supervisor_lock")
def test_restart_process_refuses_a_pid_that_is_not_its_siblings(ctx: ServiceContext) -> None:
    """The pid in status.json must be a child of the daemon's supervisor (as status names
    it): a recycled pid — here a process of the test's own, under another supervisor pid —
    is never killed."""
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        write_processes(ctx.home, proc_status("scheduler", stranger.pid), supervisor=os.getppid())
        with pytest.raises(RemediationFailed, match="no longer scheduler"):
            RestartProcess(ctx).apply(finding(), T0)
        assert stranger.poll() is None  # alive
        write_processes(ctx.home, proc_status("scheduler", None, "restarting"))
        assert "already restarting" in RestartProcess(ctx).apply(finding(), T0)
        with pytest.raises(RemediationFailed, match="does not report"):
            RestartProcess(ctx).apply(finding(subject="nonesuch"), T0)
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.usefixtures("supervisor_lock")
def test_restart_process_asks_the_supervisor_to_start_a_fatal_service(
    ctx: ServiceContext,
) -> None:
    write_processes(ctx.home, proc_status("executor", None, "fatal", restarts=6))
    fix = RestartProcess(ctx)
    with pytest.raises(RemediationFailed, match="not reading run/notify"):
        fix.apply(finding(subject="executor"), T0)  # nobody reads the FIFO
    fifo = ctx.home.run_dir / "notify"
    ensure_fifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the supervisor's end
    try:
        assert "start executor now" in fix.apply(finding(subject="executor"), T0)
        assert os.read(fd, 16) == b"R"
    finally:
        os.close(fd)


def test_disk_detector_with_an_injected_space(ctx: ServiceContext) -> None:
    gib = 2**30
    spaces = {
        "plenty": DiskSpace(50 * gib, 100 * gib),
        "low": DiskSpace(3 * gib, 100 * gib),  # 3 % (< 5 %)
        "few_bytes": DiskSpace(400 * 2**20, 6 * gib),  # 6.5 % free, but < 500 MB
        "critical": DiskSpace(gib // 2, 100 * gib),  # 0.5 % (< 1 %)
        "small_fs": DiskSpace(50 * 2**20, 100 * 2**20),  # a small tmpfs half free
    }
    current = ["plenty"]
    det = DiskDetector(ctx, space=lambda path: spaces[current[0]])
    assert det.detect(T0, frozenset()) == []
    current[0] = "low"
    [f] = det.detect(T0, frozenset())
    assert (f.domain, f.subject, f.severity) == ("disk", str(ctx.home.root), "warning")
    assert "3.0%" in f.summary
    current[0] = "few_bytes"
    assert [x.severity for x in det.detect(T0, frozenset())] == ["warning"]
    current[0] = "critical"
    assert [x.severity for x in det.detect(T0, frozenset())] == ["critical"]
    current[0] = "small_fs"  # half free, but 50 MB is below every floor (SPEC §6)
    assert [x.severity for x in det.detect(T0, frozenset())] == ["critical"]


@pytest.mark.usefixtures("supervisor_lock")
def test_journal_detector_reads_recent_write_failures_from_status(ctx: ServiceContext) -> None:
    failure = {"at_ms": T0 - 1_000, "error": "OperationalError: database or disk is full"}
    write_processes(
        ctx.home,
        proc_status("executor", 102, journal_error=failure),
        proc_status("scheduler", 101, journal_error={"at_ms": T0 - 2 * MIN, "error": "old"}),
    )
    [f] = JournalDetector(ctx).detect(T0, frozenset())
    assert (f.domain, f.subject, f.severity) == ("journal", JOURNAL_SUBJECT, "critical")
    assert not f.remediable
    assert "in executor" in f.summary and "disk is full" in f.summary and "old" not in f.summary
    # A minute after the last failure it has cleared.
    assert JournalDetector(ctx).detect(T0 + MIN, frozenset()) == []


def test_definitions_detector_follows_the_schedulers_verdict(ctx: ServiceContext) -> None:
    det = DefinitionsDetector(ctx)
    assert det.detect(T0, frozenset()) == []
    errors = ["/h/routines/definitions.json:4:80: routines[3].action.argv: bad", "second"]
    ctx.journal.state.set(
        STATE_DEFINITIONS_ERROR, orjson.dumps({"at_ms": T0, "errors": errors}).decode(), T0
    )
    [f] = det.detect(T0, frozenset())
    assert (f.domain, f.subject) == ("definitions", DEFINITIONS_SUBJECT)
    assert "definitions.json:4:80:" in f.summary and "(and 1 more)" in f.summary
    ctx.journal.state.delete(STATE_DEFINITIONS_ERROR)
    assert det.detect(T0, frozenset()) == []


# --- the journal's write-failure hook ----------------------------------------------------------


def test_a_failed_write_calls_the_hook_once_and_a_constraint_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "_write_failure_hooks", [])  # the module-level list
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    failures: list[BaseException] = []
    connection.on_write_failure(failures.append)
    other = sqlite3.connect(str(path), isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            journal.events.emit("operator.x", None, T0)
        assert len(failures) == 1
        assert isinstance(failures[0], sqlite3.OperationalError)
        other.execute("ROLLBACK")

        event_id = journal.events.emit("operator.x", None, T0)  # the lock is gone: it works
        with pytest.raises(sqlite3.IntegrityError), journal.write() as db:
            db.execute(
                "INSERT INTO events (event_id, name, created_ms) VALUES (?, 'dup', 1)",
                (event_id,),
            )
        assert len(failures) == 1  # the schema refusing a duplicate is not a failed journal
    finally:
        other.close()
        journal.close()
