"""Self-healing end to end (SPEC §3 "Stuck runs", §4.6, §6 "Self-healing"): a real daemon in
a temp home, real service processes frozen with SIGSTOP, real action subprocesses; what the
daemon did is read from ``palyra incidents list/show --json`` and the journal.

Three daemons, one per configuration, each shared by the tests that need it (the scenarios of
one daemon run one after another and never overlap): ``auto`` (stuck runs are caught at
``stale_run_ms = 2000`` while a frozen service is not yet "silent", so the run domain acts
alone), ``process`` (``process_silence_ms = 3000``) and ``observe_only``. Every frozen
process is thawed by the test that froze it (``frozen``) and again by the daemon's teardown.

A service is frozen only outside a journal write: a process stopped while it holds SQLite's
write lock would block every other writer (self-healing included) until the supervisor's 30 s
pipe-heartbeat limit kills it — a real limit, but not the scenario under test here.

No sleep is an assertion: every wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyrad.domain.runs import Run
from palyrad.journal import Incident, Journal
from tests.daemon_harness import (
    RPC_ANY_PORTS,
    Daemon,
    every,
    palyra,
    routine,
    shell,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

DEFS_SUBJECT = "routines/definitions.json"
MANUAL = {"kind": "manual"}
INCIDENT_KEYS = {
    "incident_id",
    "domain",
    "subject",
    "severity",
    "state",
    "summary",
    "opened_at",
    "opened_at_unix_ms",
    "resolved_at",
    "resolved_at_unix_ms",
    "remediations",
}
ATTEMPT_KEYS = {"action", "at", "at_unix_ms", "outcome", "detail"}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def running_daemon(root: Path, config: str, routines: list[dict[str, Any]]) -> Iterator[Daemon]:
    """A started daemon with ``config`` (palyra.toml) and ``routines``; on the way out every
    process of it is thawed (SIGCONT), then it is stopped (or killed)."""
    d = Daemon(root)
    d.home.config.write_text(RPC_ANY_PORTS + config)
    d.write_definitions(routines)
    try:
        d.start()
        yield d
    finally:
        for pid in d.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        d.close()


def _write_lock_free(journal: Path, timeout_s: float = 2.0) -> bool:
    """Whether the journal's write lock can be taken (nobody frozen holds it)."""
    db = sqlite3.connect(str(journal), timeout=timeout_s, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


@contextlib.contextmanager
def frozen(d: Daemon, pid: int) -> Iterator[int]:
    """SIGSTOP ``pid`` (outside a journal write) for the block; yields the instant (Unix ms)
    it was stopped. SIGCONT on the way out, whatever happened (a pid that died meanwhile —
    killed by self-healing — is fine)."""
    stopped_at = 0
    try:
        for _ in range(10):
            os.kill(pid, signal.SIGSTOP)
            stopped_at = now_ms()
            if _write_lock_free(d.home.journal):
                break
            os.kill(pid, signal.SIGCONT)  # stopped inside a write: let it finish, try again
            time.sleep(0.05)
        else:
            raise AssertionError(f"pid {pid} kept holding the journal's write lock")
        yield stopped_at
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def daemon_status(d: Daemon) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(palyra(d.root, "daemon", "status", "--json").stdout)
    return body


def service(d: Daemon, name: str) -> dict[str, Any]:
    """The service's entry in ``palyra daemon status --json``."""
    (proc,) = [p for p in daemon_status(d)["processes"] if p["name"] == name]
    assert isinstance(proc, dict)
    return proc


def find_incident(
    d: Daemon, domain: str, subject: str | None = None, *, since_ms: int = 0
) -> Incident | None:
    """The newest incident of ``domain`` (and ``subject``) opened at or after ``since_ms``."""
    for inc in d.journal.incidents.all(1000):
        if inc.domain == domain and subject in (None, inc.subject) and inc.opened_ms >= since_ms:
            return inc
    return None


def incident_state(d: Daemon, incident_id: str, state: str) -> Incident | None:
    inc = d.journal.incidents.get(incident_id)
    return inc if inc is not None and inc.state == state else None


def show(d: Daemon, incident_id: str) -> dict[str, Any]:
    """``palyra incidents show ID --json``, checked against the SPEC §4.6 object's keys."""
    body: dict[str, Any] = orjson.loads(
        palyra(d.root, "incidents", "show", incident_id, "--json").stdout
    )
    assert set(body) == INCIDENT_KEYS
    assert all(set(a) == ATTEMPT_KEYS for a in body["remediations"])
    return body


def listed(d: Daemon, *flags: str) -> list[dict[str, Any]]:
    body = orjson.loads(palyra(d.root, "incidents", "list", "--json", *flags).stdout)
    assert set(body) == {"incidents"}
    items: list[dict[str, Any]] = body["incidents"]
    return items


def run_now(d: Daemon, rid: str) -> str:
    body = orjson.loads(palyra(d.root, "routines", "run-now", rid, "--json").stdout)
    run_id: str = body["run_id"]
    return run_id


def run_in(d: Daemon, run_id: str, *statuses: str) -> Run | None:
    run = d.journal.runs.get(run_id)
    return run if run is not None and run.status in statuses else None


def spawned(d: Daemon, run_id: str) -> Run | None:
    """The run once it is ``running`` with its action's pid journaled."""
    run = run_in(d, run_id, "running")
    return run if run is not None and run.pid is not None else None


def live_members(pgid: int) -> list[int]:
    """The non-zombie processes of process group ``pgid`` (a SIGKILLed child of a frozen
    executor stays a zombie until its parent runs again and reaps it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` in /proc (``T`` stopped), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def silence_s(summary: str, pattern: str) -> float:
    """The age in seconds a summary reports (it is rewritten by every sweep that sees the
    condition still there: a sign that sweeps went by)."""
    m = re.search(pattern, summary)
    assert m, summary
    return float(m.group(1))


# --- auto mode: definitions, incident.opened routines, stuck runs ------------------------------

AUTO_CONFIG = """
[executor]
heartbeat_interval_ms = 200
[self_healing]
stale_run_ms = 2000
process_silence_ms = 60000
"""


def auto_routines(notes: Path) -> list[dict[str, Any]]:
    return [
        routine("sleeper", MANUAL, {"kind": "command", "argv": ["sleep", "300"]}),
        routine("quick", MANUAL, shell("echo ok")),
        routine(
            "notify",
            {"kind": "system_event", "event": "incident.opened"},
            shell(
                f'printf \'%s\\n%s\\n\' "$PALYRA_TRIGGER_KIND" "$PALYRA_TRIGGER_PAYLOAD"'
                f' > {notes}/"$PALYRA_RUN_ID"'
            ),
            concurrency="allow",
        ),
    ]


@pytest.fixture(scope="module")
def auto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("auto") / "home"
    notes = root.parent / "notes"
    notes.mkdir()
    with running_daemon(root, AUTO_CONFIG, auto_routines(notes)) as d:
        yield d


def invalid_definitions(d: Daemon) -> tuple[bytes, str]:
    """The good routines plus one whose ``argv`` is not a list, and the ``file:line:col`` of
    the offending value as the validator reports it."""
    notes = d.root.parent / "notes"
    bad = routine("broken", MANUAL, {"kind": "command", "argv": 5})
    lines = [
        "{",
        '  "schema_version": 1,',
        '  "routines": [',
        *(f"    {orjson.dumps(r).decode()}," for r in auto_routines(notes)),
        f"    {orjson.dumps(bad).decode()}",
        "  ]",
        "}",
    ]
    line_no = len(lines) - 3 + 1
    col = lines[line_no - 1].index('"argv":5') + len('"argv":') + 1
    return "\n".join(lines).encode() + b"\n", f"definitions.json:{line_no}:{col}:"


def restore_definitions(d: Daemon) -> None:
    d.write_definitions(auto_routines(d.root.parent / "notes"))


def test_invalid_definitions_open_an_incident_and_fixing_the_file_resolves_it(
    auto: Daemon,
) -> None:
    t0 = now_ms()
    data, where = invalid_definitions(auto)
    auto.write_raw(data)  # atomically (a temp file renamed over it)
    inc = wait_until(lambda: find_incident(auto, "definitions", DEFS_SUBJECT, since_ms=t0), 15)
    assert inc.state == "open" and inc.severity == "warning"
    assert where in inc.summary, inc.summary
    assert "routines[3].action.argv" in inc.summary
    open_now = listed(auto)
    assert [i["incident_id"] for i in open_now if i["domain"] == "definitions"] == [inc.incident_id]
    # The last good definitions keep running meanwhile.
    run_id = run_now(auto, "quick")
    wait_until(lambda: run_in(auto, run_id, "succeeded"), 15)

    restore_definitions(auto)
    resolved = wait_until(lambda: incident_state(auto, inc.incident_id, "resolved"), 15)
    assert resolved.resolved_ms is not None and resolved.resolved_ms >= inc.opened_ms
    body = show(auto, inc.incident_id)
    assert body["state"] == "resolved" and body["remediations"] == []  # nothing to fix by itself
    assert body["resolved_at_unix_ms"] == resolved.resolved_ms
    assert inc.incident_id not in {i["incident_id"] for i in listed(auto)}
    assert inc.incident_id in {i["incident_id"] for i in listed(auto, "--all")}

    # Both events were journaled, each with the incident object as its payload.
    events = [
        (e.name, orjson.loads(e.payload or "null"))
        for e in auto.journal.events.since(0, 10_000)
        if e.name.startswith("incident.")
    ]
    mine = [(name, p) for name, p in events if p["incident_id"] == inc.incident_id]
    assert [name for name, _ in mine] == ["incident.opened", "incident.resolved"]
    (_, opened), (_, gone) = mine
    assert set(opened) == set(gone) == INCIDENT_KEYS
    assert opened["state"] == "open" and opened["resolved_at"] is None
    assert (opened["domain"], opened["subject"]) == ("definitions", DEFS_SUBJECT)
    assert gone["state"] == "resolved" and gone["resolved_at_unix_ms"] == resolved.resolved_ms


def test_incident_opened_triggers_a_system_event_routine_with_the_incident(auto: Daemon) -> None:
    """The invalid file is not applied, so the last good definitions — this routine among
    them — are the ones that react to the incident it causes."""
    notes = auto.root.parent / "notes"
    t0 = now_ms()
    data, _ = invalid_definitions(auto)
    auto.write_raw(data)
    try:
        inc = wait_until(lambda: find_incident(auto, "definitions", DEFS_SUBJECT, since_ms=t0), 15)

        def notified() -> Run | None:
            for run in auto.runs("notify"):
                payload = orjson.loads(run.trigger_payload or "{}")
                if payload.get("incident_id") == inc.incident_id and run.status == "succeeded":
                    return run
            return None

        run = wait_until(notified, 20)
    finally:
        restore_definitions(auto)
    assert run.trigger_kind == "system_event"
    kind, raw = (notes / run.run_id).read_text().splitlines()
    assert kind == "system_event"
    seen = orjson.loads(raw)  # PALYRA_TRIGGER_PAYLOAD, as the command saw it
    assert seen["event"] == "incident.opened"
    incident = {k: v for k, v in seen.items() if k != "event"}
    assert set(incident) == INCIDENT_KEYS
    assert incident["incident_id"] == inc.incident_id
    assert (incident["domain"], incident["subject"], incident["state"]) == (
        "definitions",
        DEFS_SUBJECT,
        "open",
    )
    assert incident["severity"] == "warning" and incident["resolved_at"] is None
    assert "definitions.json" in incident["summary"]
    assert incident["opened_at_unix_ms"] == inc.opened_ms
    assert RFC3339_MS.match(incident["opened_at"])
    wait_until(lambda: incident_state(auto, inc.incident_id, "resolved"), 15)


def test_stuck_run_is_failed_its_group_killed_and_the_incident_resolved(auto: Daemon) -> None:
    run_id = run_now(auto, "sleeper")
    run = wait_until(lambda: spawned(auto, run_id), 15)
    assert run.pid is not None
    pgid = run.pid  # the action is its process group's leader
    assert os.getpgid(run.pid) == pgid and live_members(pgid)
    executor = service(auto, "executor")
    with frozen(auto, executor["pid"]) as stopped_at:
        beat = auto.journal.runs.get(run_id)
        assert beat is not None and beat.heartbeat_ms is not None
        last_beat = beat.heartbeat_ms  # the executor is frozen: this is its last one
        inc = wait_until(lambda: find_incident(auto, "run", run_id), 2 + 15)
        resolved = wait_until(lambda: incident_state(auto, inc.incident_id, "resolved"), 15)
        failed = run_in(auto, run_id, "failed")
        assert failed is not None and failed.error_kind == "heartbeat_lost"
        # SIGKILLed while its parent is frozen: nothing of the group runs any more (the
        # leader stays a zombie until the executor reaps it).
        wait_until(lambda: not live_members(pgid), 10)
    # Thawed, the executor reaps it: the group is gone for good.
    wait_until(lambda: not group_exists(pgid), 15)
    assert resolved.resolved_ms is not None
    print(
        f"\nstuck run: incident opened {inc.opened_ms - stopped_at} ms after SIGSTOP,"
        f" {inc.opened_ms - (last_beat + 2000)} ms after the stale threshold passed;"
        f" resolved {resolved.resolved_ms - inc.opened_ms} ms after opening"
    )
    assert inc.opened_ms >= last_beat + 2000  # never before the run is stale

    body = show(auto, inc.incident_id)
    assert (body["domain"], body["subject"], body["state"]) == ("run", run_id, "resolved")
    assert body["severity"] == "warning" and run_id in body["summary"]
    [attempt] = body["remediations"]
    assert (attempt["action"], attempt["outcome"]) == ("fail_run", "succeeded")
    assert "heartbeat_lost" in attempt["detail"] and "killed its process group" in attempt["detail"]
    assert RFC3339_MS.match(body["opened_at"]) and RFC3339_MS.match(body["resolved_at"])
    assert RFC3339_MS.match(attempt["at"])
    # The thawed executor leaves the verdict alone and goes on running new runs.
    final = auto.journal.runs.get(run_id)
    assert final is not None and final.status == "failed" and final.error_kind == "heartbeat_lost"
    later = run_now(auto, "quick")
    wait_until(lambda: run_in(auto, later, "succeeded"), 15)


# --- auto mode: a silent service is restarted ------------------------------------------------

PROCESS_CONFIG = """
[self_healing]
process_silence_ms = 3000
"""


def test_silent_scheduler_is_restarted_and_its_routine_keeps_running(tmp_path: Path) -> None:
    out = tmp_path / "ticks.txt"
    tick = routine("tick", every(1000), shell(f'echo "$PALYRA_RUN_ID" >> {out}'))
    with running_daemon(tmp_path / "home", PROCESS_CONFIG, [tick]) as d:

        def succeeded(after_ms: int, n: int) -> list[Run] | None:
            runs = [
                r
                for r in d.runs("tick")
                if r.status == "succeeded" and (r.started_at_ms or 0) > after_ms
            ]
            return runs if len(runs) >= n else None

        wait_until(lambda: succeeded(0, 2), 30)
        before = service(d, "scheduler")
        assert before["state"] == "running"
        t0 = now_ms()
        with frozen(d, before["pid"]) as stopped_at:
            last_beat = d.journal.heartbeats.all()["scheduler"]
            assert last_beat.pid == before["pid"]  # frozen: its last journal heartbeat
            inc = wait_until(lambda: find_incident(d, "process", "scheduler", since_ms=t0), 20)
            assert inc.state == "open" and "silent" in inc.summary
            resolved = wait_until(lambda: incident_state(d, inc.incident_id, "resolved"), 30)
        assert resolved.resolved_ms is not None
        print(
            f"\nsilent scheduler: incident opened {inc.opened_ms - stopped_at} ms after SIGSTOP,"
            f" {inc.opened_ms - (last_beat.heartbeat_ms + 3000)} ms after its last heartbeat"
            f" was process_silence_ms old; resolved {resolved.resolved_ms - inc.opened_ms} ms"
            " after opening"
        )
        assert inc.opened_ms > last_beat.heartbeat_ms + 3000  # never before it is silent
        assert proc_state(before["pid"]) is None  # the frozen process was killed
        after = service(d, "scheduler")
        assert after["state"] == "running" and after["pid"] != before["pid"]
        assert after["restarts"] == before["restarts"] + 1

        body = show(d, inc.incident_id)
        assert (body["domain"], body["subject"], body["state"]) == (
            "process",
            "scheduler",
            "resolved",
        )
        [attempt] = body["remediations"]
        assert (attempt["action"], attempt["outcome"]) == ("restart_process", "succeeded")
        assert f"SIGKILL to scheduler (pid {before['pid']})" in attempt["detail"]

        # The restarted scheduler goes on firing the routine.
        runs = wait_until(lambda: succeeded(resolved.resolved_ms or 0, 2), 30)
        written = out.read_text().split()
        assert all(r.run_id in written for r in runs)
        assert listed(d) == []

        # Frozen while the journal's write lock is held (here by the test, as by a service
        # frozen inside a write): no incident can be written, yet the frozen scheduler is
        # restarted, and only it — the others' pipe heartbeats show they are alive.
        others = {name: service(d, name)["pid"] for name in ("executor", "node_rpc")}
        second = service(d, "scheduler")
        t1 = now_ms()
        with frozen(d, second["pid"]):
            lock = sqlite3.connect(str(d.home.journal), isolation_level=None)
            try:
                lock.execute("BEGIN IMMEDIATE")
                wait_until(lambda: proc_state(second["pid"]) is None, 20)
                assert d.journal.incidents.all(5)[0].incident_id == inc.incident_id  # unwritten
            finally:
                lock.execute("ROLLBACK")
                lock.close()
        blind = wait_until(lambda: find_incident(d, "process", "scheduler", since_ms=t1), 20)
        [attempt] = show(d, blind.incident_id)["remediations"]
        assert attempt["outcome"] == "succeeded"
        assert f"SIGKILL to scheduler (pid {second['pid']})" in attempt["detail"]
        assert "journal could not be written" in attempt["detail"]
        wait_until(lambda: incident_state(d, blind.incident_id, "resolved"), 30)
        assert {name: service(d, name)["pid"] for name in others} == others
        since = now_ms()
        assert wait_until(lambda: succeeded(since, 1), 30)  # the routine runs on


# --- observe_only: incidents are recorded, nothing is done -----------------------------------

OBSERVE_CONFIG = """
[executor]
heartbeat_interval_ms = 200
[self_healing]
mode = "observe_only"
stale_run_ms = 2000
process_silence_ms = 3000
"""


@pytest.fixture(scope="class")
def observer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("observe") / "home"
    sleeper = routine("sleeper", MANUAL, {"kind": "command", "argv": ["sleep", "300"]})
    with running_daemon(root, OBSERVE_CONFIG, [sleeper]) as d:
        yield d


class TestObserveOnly:
    def test_a_silent_scheduler_is_reported_and_left_alone(self, observer: Daemon) -> None:
        before = service(observer, "scheduler")
        t0 = now_ms()
        with frozen(observer, before["pid"]):
            inc = wait_until(
                lambda: find_incident(observer, "process", "scheduler", since_ms=t0), 20
            )
            age = r"silent for (\d+\.\d) s"
            first = silence_s(inc.summary, age)

            def later_sweep() -> Incident | None:
                cur = observer.journal.incidents.get(inc.incident_id)
                ok = cur is not None and silence_s(cur.summary, age) >= first + 2
                return cur if ok else None

            # Sweeps go every 0.5 s (stale_run_ms / 4): a few more saw it and did nothing.
            still = wait_until(later_sweep, 20)
            assert still.state == "open" and still.remediations == ()
            assert proc_state(before["pid"]) == "T"  # still stopped, not killed
            now = service(observer, "scheduler")
            assert (now["pid"], now["restarts"]) == (before["pid"], before["restarts"])
        resolved = wait_until(lambda: incident_state(observer, inc.incident_id, "resolved"), 20)
        assert resolved.remediations == ()
        assert show(observer, inc.incident_id)["remediations"] == []
        assert service(observer, "scheduler")["pid"] == before["pid"]

    def test_a_stuck_run_stays_running_while_its_incident_is_open(self, observer: Daemon) -> None:
        run_id = run_now(observer, "sleeper")
        run = wait_until(lambda: spawned(observer, run_id), 15)
        assert run.pid is not None
        executor = service(observer, "executor")
        with frozen(observer, executor["pid"]):
            inc = wait_until(lambda: find_incident(observer, "run", run_id), 20)
            age = r"no heartbeat for (\d+\.\d) s"
            first = silence_s(inc.summary, age)

            def later_sweep() -> Incident | None:
                cur = observer.journal.incidents.get(inc.incident_id)
                ok = cur is not None and silence_s(cur.summary, age) >= first + 2
                return cur if ok else None

            still = wait_until(later_sweep, 20)
            assert still.state == "open" and still.remediations == ()
            assert run_in(observer, run_id, "running") is not None
            assert live_members(run.pid) == [run.pid]  # its action was not killed
        # Thawed, the executor heartbeats the run again: the condition cleared by itself.
        resolved = wait_until(lambda: incident_state(observer, inc.incident_id, "resolved"), 20)
        assert resolved.remediations == ()
        assert run_in(observer, run_id, "running") is not None
        # Nothing in this daemon was ever remediated (the frozen executor's own process
        # incident included).
        assert all(i["remediations"] == [] for i in listed(observer, "--all"))
        palyra(observer.root, "routines", "cancel", run_id)
        wait_until(lambda: run_in(observer, run_id, "cancelled"), 30)


# --- the CLI, with the daemon stopped ------------------------------------------------------------


def test_incidents_cli_reads_the_journal_with_the_daemon_stopped(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "home")
    t = 1_796_000_000_000
    j = Journal(d.home.journal)
    try:
        old, _ = j.incidents.open("01OLD", "process", "scheduler", "warning", "silent", t)
        j.incidents.record_attempt("01OLD", "restart_process", "failed", "no such pid", t + 10)
        j.incidents.record_attempt("01OLD", "restart_process", "succeeded", "sent", t + 5_010)
        j.incidents.resolve("process", "scheduler", t + 6_000)
        new, _ = j.incidents.open(
            "01NEW", "definitions", DEFS_SUBJECT, "critical", "not applied", t + 60_000
        )
    finally:
        j.close()
    assert not d.status().running

    proc = palyra(d.root, "incidents", "list")
    assert "01NEW" in proc.stdout and "definitions" in proc.stdout and "01OLD" not in proc.stdout
    assert proc.stderr == ""
    text_all = palyra(d.root, "incidents", "list", "--all").stdout
    assert "01NEW" in text_all and "01OLD" in text_all and "resolved" in text_all

    open_only = listed(d)
    assert [i["incident_id"] for i in open_only] == ["01NEW"]
    everything = listed(d, "--all")
    assert [i["incident_id"] for i in everything] == ["01NEW", "01OLD"]  # newest first
    assert all(set(i) == INCIDENT_KEYS for i in everything)

    body = show(d, "01OLD")
    assert body == everything[1]  # the same object in list and show
    assert body == {
        "incident_id": "01OLD",
        "domain": "process",
        "subject": "scheduler",
        "severity": "warning",
        "state": "resolved",
        "summary": "silent",
        "opened_at": "2026-11-30T00:53:20.000+00:00",
        "opened_at_unix_ms": t,
        "resolved_at": "2026-11-30T00:53:26.000+00:00",
        "resolved_at_unix_ms": t + 6_000,
        "remediations": [
            {
                "action": "restart_process",
                "at": "2026-11-30T00:53:20.010+00:00",
                "at_unix_ms": t + 10,
                "outcome": "failed",
                "detail": "no such pid",
            },
            {
                "action": "restart_process",
                "at": "2026-11-30T00:53:25.010+00:00",
                "at_unix_ms": t + 5_010,
                "outcome": "succeeded",
                "detail": "sent",
            },
        ],
    }
    new_body = show(d, "01NEW")
    assert new_body["state"] == "open" and new_body["severity"] == "critical"
    assert new_body["resolved_at"] is None and new_body["resolved_at_unix_ms"] is None
    assert new_body["remediations"] == []
    # --home after the command, and the text form.
    text = palyra(d.root, "incidents", "show", "01OLD").stdout
    assert "restart_process: failed" in text and "resolved" in text
    after = palyra(d.root, "incidents", "show", "01OLD", "--json", "--home", str(d.root))
    assert orjson.loads(after.stdout) == body

    unknown = palyra(d.root, "incidents", "show", "01NOPE", "--json", check=False)
    assert unknown.returncode == 1 and unknown.stdout == ""
    err = unknown.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "01NOPE" in err[0]
    assert not d.status().running  # none of this started a daemon
    assert old.incident_id == "01OLD" and new.incident_id == "01NEW"
