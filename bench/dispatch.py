"""Benchmark: dispatch at N = 10 000 routines — Palyra vs APScheduler 3, side by side.

Figures (BENCHMARKS.md): fire lateness (started_at − fire_at) p50/p90/p99/max and ticks with no
run record; run-now → running latency (through the CLI and through the library the CLI uses,
palyrad.ops.triggers.run_now); executor throughput of no-op runs (a backlog of pending run-nows on
`allow` routines, drained by a freshly started daemon) and its ratio to the raw SQLite bound
(single-row BEGIN IMMEDIATE claim + complete transactions on the same disk); peak RSS summed
over the daemon's processes and their CPU seconds over the window. Palyra and APScheduler
alternate (A B A B …) in one invocation; each figure is the median of the per-round figures,
beside the worst round. Targets: lateness p99 ≤ 50 ms, run-now p99 ≤ 100 ms, Palyra's p99 at
most half of APScheduler's.

    .venv/bin/python bench/dispatch.py            # full run: 5 + 5 rounds, ~10 min
    .venv/bin/python bench/dispatch.py --quick    # smoke run: 2 + 2 short rounds, ~1.5 min

The APScheduler side runs in a child process of this script (``--aps-child``) so that its RSS
and CPU are its own, like the daemon's. Runs are read back only through palyrad.journal.Journal
(after the daemon stopped); plain sqlite3 is used only for the raw bound's own scratch file.
The bench never opens a home's routines/definitions.json once the daemon runs (it loads a
byte-identical copy): opening that file sets off the scheduler's reload loop, which the bench
counts from the daemon log instead. Raw numbers go to bench/results/dispatch.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    ProcSampler,
    cli,
    cpu_model,
    daemon_sampler,
    fmt,
    host_busy_fraction,
    med,
    now_ms,
    package_version,
    palyra_cli,
    palyra_version,
    pct,
    sqlite_claim_complete_bound,
    worst,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ACTION = ["/bin/true"]
BASE_ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
BASE_ANCHOR_MS = int(BASE_ANCHOR.timestamp() * 1000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE_MS = 60_000
SECOND_MS = 1_000

TARGET_LATENESS_P99_MS = 50.0
TARGET_RUN_NOW_P99_MS = 100.0
TARGET_RATIO_TO_APS = 0.5

Mix = list[tuple[str, int, int]]  # (routine/job id, interval_ms, anchor offset ms from BASE)


def sleep_until(t_ms: int) -> None:
    while True:
        left = t_ms - now_ms()
        if left <= 0:
            return
        time.sleep(min(left / 1000, 0.5))


# --- the workload --------------------------------------------------------------------------


def make_mix(n: int, n_every_second: int) -> Mix:
    """``n − k`` routines every minute, anchors spread evenly across the minute, and ``k``
    every second, anchors spread evenly across the second. Same ids/anchors for both sides."""
    n_min = n - n_every_second
    mix: Mix = [(f"m{i:05d}", MINUTE_MS, i * MINUTE_MS // n_min) for i in range(n_min)]
    mix += [
        (f"s{i:05d}", SECOND_MS, i * SECOND_MS // n_every_second) for i in range(n_every_second)
    ]
    return mix


def expected_ticks(mix: Mix, t0: int, t1: int) -> dict[tuple[str, int], int]:
    """Every (id, nominal tick) with its fire instant in [t0, t1) (jitter 0: fire = nominal)."""
    out: dict[tuple[str, int], int] = {}
    for rid, interval, off in mix:
        anchor = BASE_ANCHOR_MS + off
        k = max(1, -(-(t0 - anchor) // interval))
        tick = anchor + k * interval
        while tick < t1:
            out[(rid, tick)] = interval
            tick += interval
    return out


def rfc3339_ms(ms: int) -> str:
    return (
        (EPOCH + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def palyra_definitions(mix: Mix, extra: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    routines: list[dict[str, Any]] = [
        {
            "id": rid,
            "trigger": {
                "kind": "schedule",
                "schedule": {
                    "type": "every",
                    "interval_ms": interval,
                    "anchor": rfc3339_ms(BASE_ANCHOR_MS + off),
                },
            },
            "action": {"kind": "command", "argv": ACTION},
        }
        for rid, interval, off in mix
    ]
    routines.extend(extra)
    return {"schema_version": 1, "routines": routines}


def manual_routine(rid: str, concurrency: str = "forbid") -> dict[str, Any]:
    return {
        "id": rid,
        "trigger": {"kind": "manual"},
        "concurrency": concurrency,
        "action": {"kind": "command", "argv": ACTION},
    }


# --- statistics ----------------------------------------------------------------------------


def lat_stats(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": float(max(values)) if values else None,
    }


# --- process sampling (psutil) -------------------------------------------------------------


class WindowCpu:
    """CPU over a window: the measured processes, the actions they reaped, the whole host."""

    def __init__(self, sampler: ProcSampler) -> None:
        import psutil

        self.psutil = psutil
        self.sampler = sampler
        self.t = time.monotonic()
        self.by_proc = sampler.cpu_by_process()
        self.own = sum(self.by_proc.values())
        self.kids = sampler.cpu_reaped_children()
        self.host = psutil.cpu_times()

    def finish(self) -> dict[str, float]:
        wall = time.monotonic() - self.t
        by_proc = self.sampler.cpu_by_process()
        own = sum(by_proc.values()) - self.own
        kids = self.sampler.cpu_reaped_children() - self.kids
        busy = host_busy_fraction(self.host, self.psutil.cpu_times())
        ncpu = self.psutil.cpu_count() or 1
        return {
            "cpu_s_window": round(own, 3),
            "actions_cpu_s_window": round(kids, 3),
            "host_busy_window": round(busy, 3),
            "others_cpu_s_est": round(max(0.0, busy * ncpu * wall - own - kids), 2),
            "cpu_s_by_process": {
                k: round(v - self.by_proc.get(k, 0.0), 3) for k, v in by_proc.items()
            },
        }


def account_ticks(
    expected: dict[tuple[str, int], int],
    records: dict[tuple[str, int], list[tuple[str, int | None, int | None]]],
    skip_ranges: dict[str, list[tuple[int, int]]] | None = None,
) -> dict[str, Any]:
    """Lateness over the window's ticks.

    ``records``: (id, nominal) → [(status, fire_at_ms, started_ms)]. A tick counts as started
    when one of its records has a start instant; ``recorded_not_started`` counts ticks whose
    records never started (skipped, pending at the cut-off, …) by status; ``no_record`` counts
    ticks with no record of their own. Palyra folds coalesced missed ticks into one skip record
    with a first..last range: those ticks are also counted under ``covered_by_skip_range``.
    """
    lateness: list[int] = []
    late: list[tuple[int, int]] = []  # (fire instant, lateness) of starts ≥ 3 ms late
    lateness_by_interval: dict[int, list[int]] = defaultdict(list)
    not_started: Counter[str] = Counter()
    no_record = covered = duplicates = 0
    for key, interval in expected.items():
        recs = records.get(key)
        if not recs:
            no_record += 1
            rid, tick = key
            for first, last in (skip_ranges or {}).get(rid, ()):
                if first <= tick <= last:
                    covered += 1
                    break
            continue
        started = [(fire, st) for _status, fire, st in recs if st is not None]
        if len(started) > 1:
            duplicates += 1
        if started:
            fire, st = started[0]
            due = fire if fire is not None else key[1]
            lateness.append(st - due)
            lateness_by_interval[interval].append(st - due)
            if st - due >= 3:
                late.append((due, st - due))
        else:
            not_started[recs[0][0]] += 1
    return {
        "ticks": len(expected),
        "started": len(lateness),
        "no_record": no_record,
        "covered_by_skip_range": covered,
        "recorded_not_started": dict(not_started),
        "duplicates": duplicates,
        "lateness_ms": lat_stats(lateness),
        "lateness_ms_every_minute": lat_stats(lateness_by_interval[MINUTE_MS]),
        "lateness_ms_every_second": lat_stats(lateness_by_interval[SECOND_MS]),
        "raw_lateness_ms": lateness,
        "late_ticks": sorted(late),  # for finding stalls: when, and how late
    }


# --- Palyra side ---------------------------------------------------------------------------


def defs_copy(home: Path) -> Path:
    """A byte-identical copy of definitions.json outside the watched routines/ folder: the
    bench loads definitions from it, because merely opening routines/definitions.json makes
    the scheduler reload (see count_reloads)."""
    return home.parent / "definitions.copy.json"


def write_home(home: Path, defs: dict[str, Any], max_concurrent: int) -> None:
    (home / "routines").mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    data = json.dumps(defs)
    (home / "routines" / "definitions.json").write_text(data)
    defs_copy(home).write_text(data)
    (home / "palyra.toml").write_text(f"[executor]\nmax_concurrent_runs = {max_concurrent}\n")


def daemon_start(home: Path) -> int:
    res = cli(home, "daemon", "start", timeout=180)
    if res.returncode != 0:
        raise RuntimeError(f"palyra daemon start failed: {res.stderr.strip()}")
    return now_ms()


def daemon_stop(home: Path) -> None:
    with contextlib.suppress(Exception):
        cli(home, "daemon", "stop", timeout=60)


def load_defs(home: Any) -> Any:
    """Definitions as the CLI loads them (palyra_cli.routine_common.load_definitions), but
    from the byte-identical copy outside routines/ (see defs_copy)."""
    from palyrad.ops.edits import default_timezone
    from routines.definitions_file import load

    res = load(
        defs_copy(home.root),
        now_ms=now_ms(),
        env=os.environ,
        default_timezone=default_timezone(home),
    )
    if res.definitions is None:
        raise RuntimeError(f"bench definitions invalid: {res.errors[:3]}")
    return res.definitions


def count_reloads(home: Path, t_from: int, t_to: int) -> int:
    """How many times the scheduler applied definitions.json in [t_from, t_to) (daemon log).
    Nothing edits the file during a round, so every one of them is spurious."""
    n = 0
    for log in sorted(home.glob("logs/palyrad.log*")):
        with contextlib.suppress(OSError), open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"definitions applied"' not in line:
                    continue
                with contextlib.suppress(ValueError, KeyError):
                    ts = datetime.fromisoformat(json.loads(line)["ts"])
                    if t_from <= _dt_ms(ts) < t_to:
                        n += 1
    return n


def measure_run_now(
    home_path: Path, n_cli: int, n_lib: int, ids: list[str], wait_cap_s: float
) -> dict[str, Any]:
    """run-now → running latency: from just before the trigger is invoked to the run's
    started_at. ``cli``: a `palyra routines run-now ID --json` process per sample (process
    start-up included; served by the CLI's shortcut through the daemon's request socket);
    ``library``: palyrad.ops.triggers.run_now, which the CLI's click command calls, in this
    process. One routine per sample, so samples never meet each other's concurrency policy.
    Samples are issued one after another (each returns once the daemon has decided it) and
    their starts are awaited afterwards."""
    from palyrad.journal import Journal
    from palyrad.ops.triggers import run_now
    from palyrad.runtime.home import Home

    home = Home.at(home_path)
    defs = load_defs(home)
    journal = Journal(home.journal)
    samples: list[dict[str, Any]] = []
    try:
        it = iter(ids)
        t_lib = now_ms()
        for _ in range(n_lib):
            rid = next(it)
            t = now_ms()
            run, _running = run_now(home, journal, rid, None, lambda: defs)
            samples.append(
                {
                    "path": "library",
                    "routine_id": rid,
                    "t_invoke_ms": t,
                    "call_ms": now_ms() - t,
                    "run_id": run.run_id,
                    "error": None,
                }
            )
            time.sleep(0.05)
        t_cli = now_ms()
        for _ in range(n_cli):
            rid = next(it)
            t = now_ms()
            res = cli(home_path, "routines", "run-now", rid, "--json", timeout=60)
            t_ret = now_ms()
            run_id = None
            with contextlib.suppress(ValueError, KeyError, TypeError):
                run_id = json.loads(res.stdout)["run_id"] if res.returncode == 0 else None
            samples.append(
                {
                    "path": "cli",
                    "routine_id": rid,
                    "t_invoke_ms": t,
                    "cli_wall_ms": t_ret - t,
                    "run_id": run_id,
                    "error": None if run_id else res.stderr.strip()[-300:],
                }
            )
            time.sleep(0.05)
        deadline = time.monotonic() + wait_cap_s
        open_ = [s for s in samples if s["run_id"]]
        while open_ and time.monotonic() < deadline:
            still = []
            for s in open_:
                run = journal.runs.get(s["run_id"])
                if run is not None and (run.started_at_ms is not None or not run.is_active):
                    s.update(
                        status=run.status,
                        queued_at_ms=run.queued_at_ms,
                        started_at_ms=run.started_at_ms,
                    )
                else:
                    still.append(s)
            open_ = still
            if open_:
                time.sleep(0.02)
        for s in samples:
            st = s.get("started_at_ms")
            s["latency_ms"] = None if st is None else st - s["t_invoke_ms"]
            q = s.get("queued_at_ms")
            s["to_record_ms"] = None if q is None else q - s["t_invoke_ms"]
            s["record_to_start_ms"] = None if st is None or q is None else st - q
    finally:
        journal.close()
    t_end = now_ms()
    out: dict[str, Any] = {
        "wait_cap_s": wait_cap_s,
        "samples": samples,
        "reloads_during_library_samples": count_reloads(home_path, t_lib, t_cli),
        "reloads_from_first_cli_sample": count_reloads(home_path, t_cli, t_end),
        "reload_phase_s": {"library": (t_cli - t_lib) / 1000, "cli": (t_end - t_cli) / 1000},
    }
    for path in ("cli", "library"):
        ss = [s for s in samples if s["path"] == path]
        lat = [s["latency_ms"] for s in ss if s["latency_ms"] is not None]
        out[path] = {
            "n": len(ss),
            "not_started_within_cap": sum(1 for s in ss if s["latency_ms"] is None),
            "latency_ms": lat_stats(lat),
            "to_record_ms_p50": pct(
                [s["to_record_ms"] for s in ss if s["to_record_ms"] is not None], 50
            ),
            "record_to_start_ms_p50": pct(
                [s["record_to_start_ms"] for s in ss if s["record_to_start_ms"] is not None], 50
            ),
        }
    return out


def palyra_round(args: argparse.Namespace, mix: Mix, tmp: Path) -> dict[str, Any]:
    from palyrad.journal import Journal

    n_samples = args.runnow_cli + args.runnow_lib
    now_ids = [f"now-{i:03d}" for i in range(n_samples)]
    defs = palyra_definitions(mix, (manual_routine(r) for r in now_ids))

    with tempfile.TemporaryDirectory(prefix="palyra-bench-", dir=tmp) as d:
        home = Path(d) / "home"
        write_home(home, defs, args.max_concurrent)
        sampler: ProcSampler | None = None
        out: dict[str, Any] = {}
        t_start = now_ms()
        try:
            ready = daemon_start(home)
            out["start_s"] = (ready - t_start) / 1000
            sampler = daemon_sampler(home).start()
            t0 = ready + int(args.warmup * 1000)
            t1 = t0 + int(args.window * 1000)
            sleep_until(t0)
            wcpu = WindowCpu(sampler)
            sampler.in_window = True
            sleep_until(t1)
            out.update(wcpu.finish())
            sampler.in_window = False
            # Settle: let ticks of the window that are still pending start (capped).
            journal = Journal(home / "journal.sqlite3")
            deadline = time.monotonic() + args.settle
            while time.monotonic() < deadline:
                behind = [
                    r
                    for r in journal.runs.active()
                    if r.status == "pending" and (r.fire_at_ms or t1) < t1
                ]
                if not behind:
                    break
                time.sleep(1.0)
            out["settle_s"] = round(args.settle - max(0.0, deadline - time.monotonic()), 2)
            out["backlog_at_settle_end"] = sum(
                1 for r in journal.runs.active() if r.status == "pending"
            )
            journal.close()
            out["run_now_under_load"] = measure_run_now(
                home, args.runnow_cli, args.runnow_lib, now_ids, args.runnow_cap
            )
        finally:
            if sampler is not None:
                sampler.stop()
            daemon_stop(home)
        out.update(
            window_ms=[t0, t1],
            peak_rss_mb_window=round(sampler.peak_window / 2**20, 1),
            peak_rss_mb_round=round(sampler.peak_total / 2**20, 1),
        )
        # Read the runs back through the project's journal API (daemon stopped).
        journal = Journal(home / "journal.sqlite3")
        records: dict[tuple[str, int], list[tuple[str, int | None, int | None]]] = defaultdict(list)
        skips: dict[str, list[tuple[int, int]]] = defaultdict(list)
        starts: list[int] = []
        kinds: Counter[str] = Counter()
        try:
            for rid, _interval, _off in mix:
                for run in journal.runs.for_routine(rid, limit=1000):
                    kinds[f"{run.status}:{run.error_kind or ''}"] += 1
                    if run.started_at_ms is not None:
                        starts.append(run.started_at_ms)
                    if run.scheduled_for_ms is not None:
                        records[(rid, run.scheduled_for_ms)].append(
                            (run.status, run.fire_at_ms, run.started_at_ms)
                        )
                    if run.first_missed_ms is not None and run.last_missed_ms is not None:
                        skips[rid].append((run.first_missed_ms, run.last_missed_ms))
        finally:
            journal.close()
        out["reloads_in_window"] = count_reloads(home, t0, t1)
    out["ticks"] = account_ticks(expected_ticks(mix, t0, t1), records, skips)
    out["records_by_status"] = dict(kinds)
    out["started_per_s_5s_buckets"] = rate_series(starts, t0 - 5000, t1)
    demand = len(expected_ticks(mix, t0, t1)) / args.window
    out["demand_runs_per_s"] = round(demand, 1)
    return out


def rate_series(starts: list[int], t_from: int, t_to: int, bucket_ms: int = 5000) -> list[float]:
    n = max(1, (t_to - t_from) // bucket_ms)
    counts = [0] * n
    for s in starts:
        i = (s - t_from) // bucket_ms
        if 0 <= i < n:
            counts[i] += 1
    return [round(c / (bucket_ms / 1000), 1) for c in counts]


def palyra_throughput(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Executor throughput: a backlog of ``args.backlog`` run-now triggers on 100 `allow`
    routines, recorded (pending, undecided) while the daemon is stopped; then the daemon is
    started and drains it. Throughput = succeeded runs / (last finished_at − first
    started_at). Also: run-now latency on this idle daemon (100 routines) before the backlog."""

    from palyrad.journal import Journal
    from palyrad.ops.triggers import run_now
    from palyrad.runtime.home import Home

    tp_ids = [f"tp-{i:03d}" for i in range(100)]
    now_ids = [f"now-{i:03d}" for i in range(args.runnow_cli + args.runnow_lib)]
    defs = palyra_definitions(
        [], [*(manual_routine(r, "allow") for r in tp_ids), *(manual_routine(r) for r in now_ids)]
    )
    out: dict[str, Any] = {"backlog": args.backlog, "routines": len(tp_ids)}
    with tempfile.TemporaryDirectory(prefix="palyra-bench-tp-", dir=tmp) as d:
        home_path = Path(d) / "home"
        write_home(home_path, defs, args.max_concurrent)
        try:
            ready = daemon_start(home_path)
            sleep_until(ready + 1000)
            out["run_now_idle"] = measure_run_now(
                home_path, args.runnow_cli, args.runnow_lib, now_ids, args.runnow_cap
            )
        finally:
            daemon_stop(home_path)
        home = Home.at(home_path)
        loaded = load_defs(home)
        journal = Journal(home.journal)
        try:
            for k in range(args.backlog):
                run_now(home, journal, tp_ids[k % len(tp_ids)], None, lambda: loaded)
        finally:
            journal.close()
        sampler: ProcSampler | None = None
        try:
            daemon_start(home_path)
            sampler = daemon_sampler(home_path).start()
            sampler.in_window = True
            wcpu = WindowCpu(sampler)
            journal = Journal(home.journal)
            deadline = time.monotonic() + args.drain_cap
            while time.monotonic() < deadline and journal.runs.active():
                time.sleep(0.2)
            journal.close()
            drain_cpu = wcpu.finish()
        finally:
            if sampler is not None:
                sampler.stop()
            daemon_stop(home_path)
        journal = Journal(home.journal)
        try:
            runs = [r for rid in tp_ids for r in journal.runs.for_routine(rid, limit=1000)]
        finally:
            journal.close()
    ok = [r for r in runs if r.status == "succeeded"]
    out["by_status"] = dict(Counter(r.status for r in runs))
    if ok:
        first = min(r.started_at_ms for r in ok if r.started_at_ms is not None)
        last = max(r.finished_at_ms for r in ok if r.finished_at_ms is not None)
        out["span_s"] = (last - first) / 1000
        out["runs_per_s"] = round(len(ok) / max(0.001, out["span_s"]), 1)
    else:
        out["runs_per_s"] = None
    out["cpu_s"] = drain_cpu["cpu_s_window"]
    out["drain_cpu"] = drain_cpu
    out["peak_rss_mb"] = round(sampler.peak_window / 2**20, 1)
    return out


# --- raw SQLite bound ----------------------------------------------------------------------


def sqlite_bound(tmp: Path, seconds: float) -> dict[str, Any]:
    """Single-row claim + complete, each its own BEGIN IMMEDIATE transaction, back to back,
    on a file in the same directory tree as the homes; WAL + synchronous=NORMAL, as the
    journal is configured by default. Reported as claimed-and-completed items per second."""
    done, elapsed = sqlite_claim_complete_bound(tmp, seconds, rows=100_000)
    return {
        "items_per_s": round(done / elapsed, 1),
        "transactions_per_item": 2,
        "seconds": round(elapsed, 2),
    }


# --- APScheduler side ----------------------------------------------------------------------


def aps_job() -> int:
    """The APScheduler job: spawn /bin/true like the executor does; returns the spawn instant
    (taken right after Popen returns, as the executor stamps started_at)."""
    proc = subprocess.Popen(
        ACTION,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    spawned = now_ms()
    proc.communicate()
    return spawned


def _dt_ms(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


def aps_child(params: dict[str, Any]) -> None:
    """Runs in its own process: BackgroundScheduler + SQLAlchemyJobStore (SQLite file) +
    ThreadPoolExecutor(20), misfire_grace_time=60, coalesce=True, max_instances=1; the same
    interval jobs. Protocol on stdin/stdout: prints ``ready <ms>``; on ``stop <t1_ms> <cap_s>``
    waits until every tick before t1 was handled (or the cap), shuts down, writes records."""
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        EVENT_JOB_SUBMITTED,
    )
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.job import Job
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger
    from apscheduler.util import datetime_to_utc_timestamp

    mix = make_mix(params["routines"], params["every_second"])
    store = SQLAlchemyJobStore(url=f"sqlite:///{params['db']}")
    sched = BackgroundScheduler(
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(20)},
        job_defaults={"misfire_grace_time": 60, "coalesce": True, "max_instances": 1},
        timezone=UTC,
    )
    lock = threading.Lock()
    executed: list[tuple[str, int, int]] = []
    other: list[tuple[str, int, str]] = []
    submitted: set[tuple[str, int]] = set()
    finished: set[tuple[str, int]] = set()
    import logging

    # Late-run warnings are counted through events; keep them off stderr.
    logging.getLogger("apscheduler").addHandler(logging.NullHandler())
    logging.getLogger("apscheduler").propagate = False

    def on_event(ev: Any) -> None:
        with lock:
            if ev.code == EVENT_JOB_SUBMITTED:
                for t in ev.scheduled_run_times:
                    submitted.add((ev.job_id, _dt_ms(t)))
            elif ev.code == EVENT_JOB_MAX_INSTANCES:
                for t in ev.scheduled_run_times:
                    other.append((ev.job_id, _dt_ms(t), "max_instances"))
            else:
                key = (ev.job_id, _dt_ms(ev.scheduled_run_time))
                finished.add(key)
                if ev.code == EVENT_JOB_EXECUTED:
                    executed.append((ev.job_id, key[1], int(ev.retval)))
                else:
                    other.append(
                        (ev.job_id, key[1], "missed" if ev.code == EVENT_JOB_MISSED else "error")
                    )

    sched.add_listener(
        on_event,
        EVENT_JOB_SUBMITTED
        | EVENT_JOB_EXECUTED
        | EVENT_JOB_ERROR
        | EVENT_JOB_MISSED
        | EVENT_JOB_MAX_INSTANCES,
    )
    sched.start(paused=True)
    # Populate the job store in one transaction, rows exactly as SQLAlchemyJobStore.add_job
    # writes them (its one-commit-per-job add_job would take minutes for 10 000 jobs on a
    # journal_mode=DELETE file); from here on the scheduler runs untouched.
    now = datetime.now(UTC)
    rows = []
    for jid, interval, off in mix:
        trig = IntervalTrigger(
            seconds=interval / 1000,
            start_date=BASE_ANCHOR + timedelta(milliseconds=off),
            timezone=UTC,
        )
        job = Job(
            sched,
            id=jid,
            name=jid,
            func=aps_job,
            trigger=trig,
            executor="default",
            args=(),
            kwargs={},
            misfire_grace_time=60,
            coalesce=True,
            max_instances=1,
            next_run_time=trig.get_next_fire_time(None, now),
        )
        rows.append(
            {
                "id": jid,
                "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol),
            }
        )
    with store.engine.begin() as conn:
        conn.execute(store.jobs_t.insert(), rows)
    sched.resume()
    print(f"ready {now_ms()}", flush=True)
    line = sys.stdin.readline().split()
    t1, cap = int(line[1]), float(line[2])
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        nxt = store.get_next_run_time()
        with lock:
            behind = any(t < t1 and (j, t) not in finished for j, t in submitted)
        if (nxt is None or _dt_ms(nxt) >= t1) and not behind:
            break
        time.sleep(0.2)
    sched.pause()  # no new submissions while the pool shuts down
    time.sleep(0.5)
    sched.shutdown(wait=True)
    Path(params["out"]).write_text(json.dumps({"executed": executed, "other": other}))
    print("done", flush=True)


def aps_round(args: argparse.Namespace, mix: Mix, tmp: Path) -> dict[str, Any]:

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aps-bench-", dir=tmp) as d:
        params = {
            "routines": args.routines,
            "every_second": args.every_second,
            "db": str(Path(d) / "jobs.sqlite"),
            "out": str(Path(d) / "records.json"),
        }
        t_start = now_ms()
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--aps-child", json.dumps(params)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        sampler: ProcSampler | None = None
        try:
            assert child.stdout is not None and child.stdin is not None
            line = child.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError("APScheduler child failed to start")
            ready = int(line[1])
            out["start_s"] = (ready - t_start) / 1000
            sampler = ProcSampler(lambda: [child.pid], names={child.pid: "apscheduler"}).start()
            t0 = ready + int(args.warmup * 1000)
            t1 = t0 + int(args.window * 1000)
            sleep_until(t0)
            wcpu = WindowCpu(sampler)
            sampler.in_window = True
            sleep_until(t1)
            out.update(wcpu.finish())
            sampler.in_window = False
            t_settle = time.monotonic()
            child.stdin.write(f"stop {t1} {args.settle}\n")
            child.stdin.flush()
            child.stdout.readline()
            child.wait(timeout=args.settle + 60)
            out["settle_and_shutdown_s"] = round(time.monotonic() - t_settle, 2)
            data = json.loads(Path(params["out"]).read_text())
        finally:
            if sampler is not None:
                sampler.stop()
            if child.poll() is None:
                child.kill()
                child.wait()
    records: dict[tuple[str, int], list[tuple[str, int | None, int | None]]] = defaultdict(list)
    starts = []
    for jid, sched_ms, spawned in data["executed"]:
        records[(jid, sched_ms)].append(("executed", sched_ms, spawned))
        starts.append(spawned)
    for jid, sched_ms, kind in data["other"]:
        records[(jid, sched_ms)].append((kind, sched_ms, None))
    out.update(
        window_ms=[t0, t1],
        peak_rss_mb_window=round(sampler.peak_window / 2**20, 1),
        peak_rss_mb_round=round(sampler.peak_total / 2**20, 1),
        ticks=account_ticks(expected_ticks(mix, t0, t1), records),
        started_per_s_5s_buckets=rate_series(starts, t0 - 5000, t1),
    )
    return out


# --- report --------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    v = package_version
    cpu = cpu_model()
    return {
        "palyra": palyra_version(ROOT),
        "apscheduler": v("apscheduler"),
        "sqlalchemy": v("sqlalchemy"),
        "psutil": v("psutil"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "cpu": cpu,
    }


def compile_bytecode() -> str:
    """Compile the project's bytecode before the CLI samples, and say so in the method line.

    A regular install (the README's first command) has it, and so does any machine where
    Python may write ``__pycache__``; this sandbox sets PYTHONDONTWRITEBYTECODE=1, which would
    make every CLI sample of the editable dev install recompile the modules it imports."""
    pkgs = [str(ROOT / p) for p in ("palyra_cli", "palyrad", "routines")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *pkgs], check=True)
    flag = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return "CLI: the dev venv's editable install, project bytecode compiled first" + (
        " (PYTHONDONTWRITEBYTECODE is set here)" if flag else ""
    )


def method_line(
    args: argparse.Namespace, vers: dict[str, str], demand: float, bytecode: str
) -> str:
    n_min = args.routines - args.every_second
    return (
        f"method: {os.cpu_count()} cores ({vers['cpu']}), Linux {vers['kernel']}; "
        f"N={args.routines} routines = {n_min} every 60 s (anchors spread evenly across the "
        f"minute) + {args.every_second} every 1 s (anchors spread across the second) "
        f"≈ {demand:.0f} runs/s, action argv {ACTION}; "
        f"rounds {args.rounds} Palyra + {args.rounds} APScheduler alternating A B A B; "
        f"warm-up {args.warmup:g} s after ready, window {args.window:g} s, settle ≤ "
        f"{args.settle:g} s; lateness = started_at − fire_at (spawn instant − due instant); "
        f"Palyra: temp home, default policies (forbid, misfire skip, grace 60 s), "
        f"[executor] max_concurrent_runs = {args.max_concurrent}; "
        f"APScheduler: BackgroundScheduler, SQLAlchemyJobStore(sqlite file), "
        f"ThreadPoolExecutor(20), misfire_grace_time=60, coalesce=True, max_instances=1; "
        f"run-now: {args.runnow_cli} CLI + {args.runnow_lib} library samples per round, under "
        f"the N-routine load and on an idle 110-routine daemon ({bytecode}); "
        f"throughput: backlog of "
        f"{args.backlog} run-nows on 100 allow routines drained by a fresh daemon; "
        f"SQLite bound: {args.bound_seconds:g} s of claim+complete (2 single-row BEGIN "
        f"IMMEDIATE txns per item, WAL, synchronous=NORMAL); psutil RSS/CPU of supervisor + "
        f"children (Palyra) / of the APScheduler process; versions: "
        f"palyra {vers['palyra']}, APScheduler {vers['apscheduler']}, SQLAlchemy "
        f"{vers['sqlalchemy']}, Python {vers['python']}, SQLite {vers['sqlite']}, "
        f"psutil {vers['psutil']}; load avg at start {os.getloadavg()[0]:.2f}"
    )


def round_line(name: str, i: int, r: dict[str, Any]) -> str:
    t = r["ticks"]
    lat = t["lateness_ms"]
    ns = sum(t["recorded_not_started"].values())
    procs = r.get("cpu_s_by_process", {})
    by_proc = ""
    if len(procs) > 1:
        top = sorted(procs.items(), key=lambda kv: -kv[1])[:3]
        by_proc = " (" + ", ".join(f"{k} {v:.1f}" for k, v in top) + ")"
    return (
        f"  round {i} {name:<11} ticks {t['ticks']:>6} started {t['started']:>6} "
        f"not-started {ns:>5} no-record {t['no_record']:>5} | lateness ms p50 "
        f"{fmt(lat['p50'])} p90 {fmt(lat['p90'])} p99 {fmt(lat['p99'])} max {fmt(lat['max'])} | "
        f"cpu {r['cpu_s_window']:.1f} s{by_proc}, peak rss {r['peak_rss_mb_window']:.0f} MB | "
        + (f"reloads {r['reloads_in_window']} | " if "reloads_in_window" in r else "")
        + f"host busy {100 * r['host_busy_window']:.0f}%, others' CPU ≈ "
        f"{r['others_cpu_s_est']:.0f} s"
    )


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def side(key: str) -> dict[str, Any]:
        rs = [r[key] for r in rounds if key in r]
        out: dict[str, Any] = {}
        for f in ("p50", "p90", "p99", "max"):
            vals = [r["ticks"]["lateness_ms"][f] for r in rs]
            out[f"lateness_{f}_ms"] = {"median": med(vals), "worst": worst(vals)}
        for f, get in (
            ("ticks", lambda r: r["ticks"]["ticks"]),
            ("no_record", lambda r: r["ticks"]["no_record"]),
            ("recorded_not_started", lambda r: sum(r["ticks"]["recorded_not_started"].values())),
            ("cpu_s_window", lambda r: r["cpu_s_window"]),
            ("actions_cpu_s_window", lambda r: r["actions_cpu_s_window"]),
            ("others_cpu_s_est", lambda r: r["others_cpu_s_est"]),
            ("host_busy_window", lambda r: 100 * r["host_busy_window"]),
            ("peak_rss_mb_window", lambda r: r["peak_rss_mb_window"]),
        ):
            vals = [get(r) for r in rs]
            out[f] = {"median": med(vals), "worst": worst(vals)}
        return out

    s: dict[str, Any] = {"palyra": side("palyra"), "apscheduler": side("apscheduler")}
    for where, key in (("under_load", "palyra"), ("idle", "palyra_throughput")):
        for path in ("cli", "library"):
            rs = []
            for r in rounds:
                rn = r.get(key, {}).get(
                    "run_now_under_load" if where == "under_load" else "run_now_idle"
                )
                if rn:
                    rs.append(rn)
            pooled = [
                smp["latency_ms"]
                for rn in rs
                for smp in rn["samples"]
                if smp["path"] == path and smp["latency_ms"] is not None
            ]
            s[f"run_now_{where}_{path}"] = {
                "p50_ms": {
                    "median": med(rn[path]["latency_ms"]["p50"] for rn in rs),
                    "worst": worst(rn[path]["latency_ms"]["p50"] for rn in rs),
                },
                "p99_ms": {
                    "median": med(rn[path]["latency_ms"]["p99"] for rn in rs),
                    "worst": worst(rn[path]["latency_ms"]["p99"] for rn in rs),
                },
                "pooled": lat_stats(pooled),
                "not_started_within_cap": sum(rn[path]["not_started_within_cap"] for rn in rs),
                "samples": sum(rn[path]["n"] for rn in rs),
                "to_record_ms_p50_median": med(rn[path]["to_record_ms_p50"] for rn in rs),
                "record_to_start_ms_p50_median": med(
                    rn[path]["record_to_start_ms_p50"] for rn in rs
                ),
            }
    reloads = []
    for r in rounds:
        for key, sub in (("palyra", "run_now_under_load"), ("palyra_throughput", "run_now_idle")):
            rn = r.get(key, {}).get(sub)
            if rn:
                reloads.append(
                    {
                        "round": r["round"],
                        "where": sub,
                        "during_library_samples": rn["reloads_during_library_samples"],
                        "from_first_cli_sample": rn["reloads_from_first_cli_sample"],
                        "phase_s": rn["reload_phase_s"],
                    }
                )
    s["spurious_reloads"] = {
        "in_lateness_windows": [
            r["palyra"].get("reloads_in_window") for r in rounds if "palyra" in r
        ],
        "run_now_phases": reloads,
    }
    tp = [r["palyra_throughput"] for r in rounds if "palyra_throughput" in r]
    bound = [r["sqlite_bound"]["items_per_s"] for r in rounds if "sqlite_bound" in r]
    ratios = [
        t["runs_per_s"] / r["sqlite_bound"]["items_per_s"]
        for r in rounds
        if "palyra_throughput" in r and "sqlite_bound" in r
        for t in [r["palyra_throughput"]]
        if t["runs_per_s"]
    ]
    s["throughput_runs_per_s"] = {
        "median": med(t["runs_per_s"] for t in tp),
        "worst": worst((t["runs_per_s"] for t in tp), higher_is_worse=False),
    }
    s["throughput_cpu_s"] = {"median": med(t["cpu_s"] for t in tp)}
    s["throughput_peak_rss_mb"] = {"median": med(t["peak_rss_mb"] for t in tp)}
    s["sqlite_bound_items_per_s"] = {
        "median": med(bound),
        "worst": worst(bound, higher_is_worse=False),
    }
    s["throughput_to_bound_ratio"] = {
        "median": med(ratios),
        "worst": worst(ratios, higher_is_worse=False),
    }
    return s


def print_summary(s: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    p, a = s["palyra"], s["apscheduler"]

    def mw(d: dict[str, Any], unit: str = "", digits: int = 0) -> str:
        return f"{fmt(d['median'], unit, digits)} / {fmt(d['worst'], unit, digits)}"

    print()
    print("fire lateness, started_at − fire_at (median of rounds / worst round)")
    print(f"  {'':<34}{'Palyra':>24}{'APScheduler 3':>24}")
    for f in ("p50", "p90", "p99", "max"):
        print(f"  {f + ' (ms)':<34}{mw(p[f'lateness_{f}_ms']):>24}{mw(a[f'lateness_{f}_ms']):>24}")
    for f, label in (
        ("ticks", "ticks in window"),
        ("no_record", "ticks with no run record"),
        ("recorded_not_started", "ticks recorded, never started"),
        ("cpu_s_window", "CPU s over window (daemon/APS)"),
        ("peak_rss_mb_window", "peak RSS MB (summed)"),
        ("actions_cpu_s_window", "CPU s of the reaped /bin/true"),
        ("host_busy_window", "host busy % (all processes)"),
        ("others_cpu_s_est", "CPU s of other processes (est.)"),
    ):
        dg = 1 if "cpu" in f else 0
        print(f"  {label:<34}{mw(p[f], digits=dg):>24}{mw(a[f], digits=dg):>24}")
    ns_p: Counter[str] = Counter()
    for r in rounds:
        ns_p.update(r.get("palyra", {}).get("ticks", {}).get("recorded_not_started", {}))
    ns_a: Counter[str] = Counter()
    for r in rounds:
        ns_a.update(r.get("apscheduler", {}).get("ticks", {}).get("recorded_not_started", {}))
    covered = sum(
        r.get("palyra", {}).get("ticks", {}).get("covered_by_skip_range", 0) for r in rounds
    )
    print(
        f"  not started, all rounds, by status: Palyra {dict(ns_p) or '{}'}; "
        f"APScheduler {dict(ns_a) or '{}'}"
    )
    print(f"  Palyra no-record ticks covered by a misfire skip range (all rounds): {covered}")
    rates = [
        (r["palyra"]["started_per_s_5s_buckets"], r["palyra"]["demand_runs_per_s"])
        for r in rounds
        if "palyra" in r
    ]
    if rates:
        print(
            "  Palyra runs started per second, 5 s buckets from 5 s before the window "
            f"(demand ≈ {rates[0][1]:.0f}/s):"
        )
        for i, (series, _d) in enumerate(rates, 1):
            print(f"    round {i}: {series}")
    arates = [r["apscheduler"]["started_per_s_5s_buckets"] for r in rounds if "apscheduler" in r]
    if arates:
        print("  APScheduler runs started per second, same buckets:")
        for i, series in enumerate(arates, 1):
            print(f"    round {i}: {series}")
    print()
    print("run-now → running latency, ms (median of per-round figures / worst round; pooled)")
    for key, label in (
        ("run_now_under_load_cli", "CLI, under the N-routine load"),
        ("run_now_under_load_library", "library, under the N-routine load"),
        ("run_now_idle_cli", "CLI, idle daemon"),
        ("run_now_idle_library", "library, idle daemon"),
    ):
        d = s[key]
        pooled = d["pooled"]
        print(
            f"  {label:<36} p50 {mw(d['p50_ms'], digits=0):>16}  p99 "
            f"{mw(d['p99_ms'], digits=0):>16}  pooled p50 {fmt(pooled['p50'], digits=0)} "
            f"p99 {fmt(pooled['p99'], digits=0)} (n={d['samples']}, not started within cap: "
            f"{d['not_started_within_cap']}); invoke→record p50 "
            f"{fmt(d['to_record_ms_p50_median'], digits=0)}, record→start p50 "
            f"{fmt(d['record_to_start_ms_p50_median'], digits=0)}"
        )
    print(
        f"  CLI process start-up alone (`palyra --help`, 3×): "
        f"{s.get('cli_startup_ms_palyra_help')} ms"
    )
    sr = s["spurious_reloads"]
    lib = sum(x["during_library_samples"] for x in sr["run_now_phases"])
    clir = sum(x["from_first_cli_sample"] for x in sr["run_now_phases"])
    cli_s = sum(x["phase_s"]["cli"] for x in sr["run_now_phases"])
    print(
        f"  scheduler reloads of the unchanged definitions.json (daemon log): lateness "
        f"windows {sr['in_lateness_windows']}; run-now phases: {lib} during library "
        f"samples, {clir} in the {cli_s:.0f} s from the first CLI sample on"
    )
    print()
    print("executor throughput (no-op runs, backlog drain) and the raw SQLite bound")
    print(
        f"  Palyra runs/s                       {mw(s['throughput_runs_per_s'], digits=0)}"
        f"   (CPU {fmt(s['throughput_cpu_s']['median'], digits=1)} s, peak RSS "
        f"{fmt(s['throughput_peak_rss_mb']['median'], digits=0)} MB, median round)"
    )
    print(f"  SQLite claim+complete items/s       {mw(s['sqlite_bound_items_per_s'], digits=0)}")
    print(f"  ratio throughput / bound            {mw(s['throughput_to_bound_ratio'], digits=3)}")
    print()
    print("targets")
    p99p, p99a = p["lateness_p99_ms"], a["lateness_p99_ms"]

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("PASS" if ok else "FAIL")

    def le(x: float | None, lim: float | None) -> bool | None:
        return None if x is None or lim is None else x <= lim

    print(
        f"  lateness p99 ≤ {TARGET_LATENESS_P99_MS:.0f} ms: Palyra median "
        f"{fmt(p99p['median'])} [{verdict(le(p99p['median'], TARGET_LATENESS_P99_MS))}], "
        f"worst {fmt(p99p['worst'])} [{verdict(le(p99p['worst'], TARGET_LATENESS_P99_MS))}]"
        f"; APScheduler median {fmt(p99a['median'])}, worst {fmt(p99a['worst'])}"
    )
    for key, label in (("run_now_under_load", "under load"), ("run_now_idle", "idle")):
        for path in ("cli", "library"):
            d = s[f"{key}_{path}"]
            x = d["pooled"]["p99"] if not d["not_started_within_cap"] else None
            extra = (
                f" ({d['not_started_within_cap']} samples never started within the cap)"
                if d["not_started_within_cap"]
                else ""
            )
            ok = (
                le(x, TARGET_RUN_NOW_P99_MS)
                if x is not None
                else (False if d["not_started_within_cap"] else None)
            )
            print(
                f"  run-now p99 ≤ {TARGET_RUN_NOW_P99_MS:.0f} ms ({path}, {label}): pooled "
                f"{fmt(d['pooled']['p99'], digits=0)}{extra} [{verdict(ok)}]"
            )
    for which in ("median", "worst"):
        pv, av = p99p[which], p99a[which]
        lim = None if av is None else TARGET_RATIO_TO_APS * av
        print(
            f"  Palyra p99 ≤ ½ APScheduler p99 ({which} round): {fmt(pv)} vs ½·"
            f"{fmt(av)} = {fmt(lim)} [{verdict(le(pv, lim))}]"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 2 rounds each, 10 s window, fewer samples"
    )
    ap.add_argument("--routines", type=int, default=10_000, help="N (default 10000)")
    ap.add_argument(
        "--every-second",
        type=int,
        default=10,
        help="how many of the N run every second (default 10; the rest every minute)",
    )
    ap.add_argument("--rounds", type=int, help="rounds per side (default 5; quick 2)")
    ap.add_argument("--window", type=float, help="measurement window, s (default 40; quick 10)")
    ap.add_argument("--warmup", type=float, help="s after ready before the window (default 5)")
    ap.add_argument(
        "--settle",
        type=float,
        help="max s to wait after the window for its late ticks (default 10)",
    )
    ap.add_argument(
        "--max-concurrent",
        type=int,
        default=20,
        help="Palyra [executor] max_concurrent_runs (default 20 = APScheduler's pool)",
    )
    ap.add_argument("--runnow-cli", type=int, help="CLI run-now samples per round (default 20)")
    ap.add_argument("--runnow-lib", type=int, help="library run-now samples per round (default 10)")
    ap.add_argument(
        "--runnow-cap",
        type=float,
        default=10.0,
        help="max s to wait for a run-now sample to start (default 10)",
    )
    ap.add_argument("--backlog", type=int, help="throughput backlog size (default 2000)")
    ap.add_argument("--drain-cap", type=float, default=90.0, help="max s for the backlog drain")
    ap.add_argument("--bound-seconds", type=float, help="raw SQLite bound duration (default 2)")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where temp homes go")
    ap.add_argument("--out", help="raw JSON (default bench/results/dispatch[-quick].json)")
    ap.add_argument("--aps-child", metavar="JSON", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    defaults = {
        "rounds": 2 if q else 5,
        "window": 10.0 if q else 40.0,
        "warmup": 3.0 if q else 5.0,
        "settle": 5.0 if q else 10.0,
        "runnow_cli": 4 if q else 20,
        "runnow_lib": 5 if q else 10,
        "backlog": 500 if q else 2000,
        "bound_seconds": 1.0 if q else 2.0,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.out is None:
        args.out = str(RESULTS / ("dispatch-quick.json" if q else "dispatch.json"))
    if not 0 < args.every_second < args.routines:
        ap.error("--every-second must be between 1 and N-1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.aps_child:
        aps_child(json.loads(args.aps_child))
        return 0
    sys.path.insert(0, str(ROOT))
    bytecode = compile_bytecode()
    mix = make_mix(args.routines, args.every_second)
    demand = (args.routines - args.every_second) / 60 + args.every_second
    vers = versions()
    method = method_line(args, vers, demand, bytecode)
    print(method, flush=True)
    tmp = Path(args.tmp)
    cli_startup = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([palyra_cli(), "--help"], capture_output=True)
        cli_startup.append(round((time.perf_counter() - t) * 1000))
    rounds: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "method": method,
        "versions": vers,
        "config": {k: v for k, v in vars(args).items() if k != "aps_child"},
        "started_at": datetime.now(UTC).isoformat(),
        "cli_startup_ms_palyra_help": cli_startup,
        "rounds": rounds,
    }
    t_all = time.monotonic()
    try:
        for i in range(1, args.rounds + 1):
            r: dict[str, Any] = {"round": i, "loadavg_at_start": os.getloadavg()[0]}
            rounds.append(r)
            r["sqlite_bound"] = sqlite_bound(tmp, args.bound_seconds)
            r["palyra"] = palyra_round(args, mix, tmp)
            print(round_line("Palyra", i, r["palyra"]), flush=True)
            r["palyra_throughput"] = palyra_throughput(args, tmp)
            tp = r["palyra_throughput"]
            load_rn, idle_rn = r["palyra"]["run_now_under_load"], tp["run_now_idle"]
            print(
                f"  round {i} throughput  {fmt(tp['runs_per_s'])} runs/s "
                f"({tp['by_status']}), SQLite bound {r['sqlite_bound']['items_per_s']:.0f} "
                f"items/s; run-now p50 ms under load cli/lib "
                f"{fmt(load_rn['cli']['latency_ms']['p50'])}/"
                f"{fmt(load_rn['library']['latency_ms']['p50'])}, idle cli/lib "
                f"{fmt(idle_rn['cli']['latency_ms']['p50'])}/"
                f"{fmt(idle_rn['library']['latency_ms']['p50'])}",
                flush=True,
            )
            r["apscheduler"] = aps_round(args, mix, tmp)
            print(round_line("APScheduler", i, r["apscheduler"]), flush=True)
    finally:
        result["elapsed_s"] = round(time.monotonic() - t_all, 1)
        result["summary"] = summarize([r for r in rounds if "apscheduler" in r] or rounds)
        result["summary"]["cli_startup_ms_palyra_help"] = cli_startup
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print_summary(result["summary"], rounds)
    print(f"\nraw numbers: {args.out} (elapsed {result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
