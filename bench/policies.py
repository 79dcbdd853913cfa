"""Benchmark: policies under a real daemon — file_watch trigger latency and catch-up recovery.

Two figures (BENCHMARKS.md; SPEC §2.1 file_watch, §2.3 misfire, §3 runs):

1. file_watch trigger latency, change settled → run started, the debounce excluded: routines
   watching their own temp directories with ``debounce_ms`` D; a burst of files is written
   (alternately 1 file and 50 files), ``t_last`` is the wall-clock instant the last write
   returned, and latency = ``started_at − (t_last + D)`` from the journal. Bursts follow one
   another (each waits for the previous burst's run to start, then a random 50–250 ms gap) and
   rotate over the routines, so every burst is one run of an idle routine; the count of bursts
   that produced exactly one run (with all of their files in its payload) is reported.
2. catch-up recovery after a 1 000-routine outage: 1 000 routines ``every`` 1 s (anchors spread
   evenly across the second), ``misfire: catch_up, grace_ms 500, max_catch_up_runs 1``, argv
   ``/bin/true``, default concurrency ``forbid``; ``palyra daemon stop``, ~10 s down, then
   ``palyra daemon start``. Times (journal timestamps; visibility by polling) from the instant
   ``daemon start`` returned, and from the instant it was invoked, until every routine's outage
   skip record and catch-up run exist (*recorded*), until every catch-up run is final /
   succeeded, and until every routine has a succeeded run again. Sanity: one skip record
   covering the outage per routine (missed counts), at most one catch-up run, no
   (routine_id, scheduled_for) twice, no tick unaccounted for. Two variants, one after the
   other in every round:
   * ``steady``: the daemon runs 3 s first. 1 000 runs/s of demand outrun the executor on a
     small machine, so ~1 000 runs are still ``pending`` at the stop; at the restart they are
     active, and the catch-up runs meet ``forbid`` (recorded ``skipped``) — reported as is.
   * ``fresh``: the anchors are set so the first tick falls after the first stop; the daemon
     applies the routines, stops with nothing run or pending, and the outage covers the first
     ~10 ticks: the catch-up drain alone.

Both: median of rounds and worst round; peak RSS summed over the daemon's processes (supervisor
+ its direct children, i.e. the services) and their CPU seconds over the window (psutil). The
host is shared: the run waits (≤ 5 min) for the 1-minute load average to drop to 1.5 first,
each round waits briefly while other processes use more than half a core, and every round
reports the CPU seconds other processes used during its window.

Both: median of rounds and worst round; peak RSS summed over the daemon's processes (supervisor
+ its direct children, i.e. the services) and their CPU seconds over the window (psutil).

    .venv/bin/python bench/policies.py            # full run: 5 rounds each, ~9 min
    .venv/bin/python bench/policies.py --quick    # smoke run: 1 short round each

Raw numbers go to bench/results/policies.json (policies-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
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
    palyra_version,
    pct,
    worst,
)

from palyrad.domain.runs import ulid_floor

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ACTION = ["/bin/true"]
BASE_ANCHOR_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOAD_LIMIT = 1.5


def rfc3339_ms(ms: int) -> str:
    return (
        (EPOCH + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# --- statistics ----------------------------------------------------------------------------


def lat_stats(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": float(max(values)) if values else None,
    }


def mw(values: list[float | None], *, digits: int = 0, higher_is_worse: bool = True) -> str:
    """``median / worst`` of per-round figures; a round without the figure counts as worst."""
    missing = any(v is None for v in values)
    w = "—" if missing else fmt(worst(values, higher_is_worse=higher_is_worse), digits=digits)
    return f"{fmt(med(values), digits=digits)} / {w}"


class ForeignCpu:
    """CPU seconds used by processes outside this benchmark and the daemon under test (both
    process trees excluded), between two snapshots: the other work sharing the machine.
    Processes that start and end between the snapshots are missed, so it is a lower bound."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.t0 = time.time()
        self.before = self.snapshot(set())

    def snapshot(self, roots: set[int]) -> dict[tuple[int, float], float]:
        roots = roots | {os.getpid()}
        procs: dict[int, tuple[int, float, float]] = {}
        for p in self.psutil.process_iter(["ppid", "create_time", "cpu_times"]):
            info = p.info
            if info["cpu_times"] is None:
                continue
            t = info["cpu_times"]
            procs[p.pid] = (info["ppid"] or 0, info["create_time"] or 0.0, t.user + t.system)
        out: dict[tuple[int, float], float] = {}
        for pid, (_ppid, created, cpu) in procs.items():
            q, seen = pid, 0
            while q and q not in roots and seen < 64:
                q = procs.get(q, (0, 0.0, 0.0))[0]
                seen += 1
            if q in roots:
                continue
            out[(pid, created)] = cpu
        return out

    def seconds(self, daemon_pid: int | None) -> float:
        after = self.snapshot({daemon_pid} if daemon_pid else set())
        total = 0.0
        for key, cpu in after.items():
            if key in self.before:
                total += cpu - self.before[key]
            elif key[1] >= self.t0 - 0.5:
                total += cpu
        return round(max(0.0, total), 2)


def host_quiet_enough(max_wait_s: float, limit_cores: float = 0.5) -> dict[str, float]:
    """Before a round: other processes' CPU over a 1 s probe; while it is above
    ``limit_cores``, wait (up to ``max_wait_s``)."""
    t0 = time.monotonic()
    while True:
        probe = ForeignCpu()
        time.sleep(1.0)
        busy = probe.seconds(None)
        if busy <= limit_cores or time.monotonic() - t0 >= max_wait_s:
            return {"other_cores_at_start": busy, "waited_s": round(time.monotonic() - t0 - 1, 1)}
        time.sleep(2.0)


# --- the daemon ----------------------------------------------------------------------------


def write_home(home: Path, routines: list[dict[str, Any]], max_concurrent: int) -> None:
    (home / "routines").mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    doc = {"schema_version": 1, "routines": routines}
    (home / "routines" / "definitions.json").write_text(json.dumps(doc))
    (home / "palyra.toml").write_text(f"[executor]\nmax_concurrent_runs = {max_concurrent}\n")


def daemon_start(home: Path) -> tuple[int, int]:
    """``palyra daemon start``; returns (invoked, returned) instants in ms."""
    t0 = now_ms()
    res = cli(home, "daemon", "start", timeout=180)
    t1 = now_ms()
    if res.returncode != 0:
        raise RuntimeError(f"palyra daemon start failed: {res.stderr.strip()}")
    return t0, t1


def daemon_stop(home: Path) -> tuple[int, int, int]:
    """``palyra daemon stop``; returns (invoked, returned, exit code)."""
    t0 = now_ms()
    rc = -1
    with contextlib.suppress(Exception):
        rc = cli(home, "daemon", "stop", timeout=90).returncode
    return t0, now_ms(), rc


def read_db(home: Path) -> sqlite3.Connection:
    """A read-only connection to the journal (WAL readers never block the daemon)."""
    db = sqlite3.connect(f"file:{home / 'journal.sqlite3'}?mode=ro", uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    return db


def wait_for_quiet_host(limit: float, max_wait_s: float) -> dict[str, Any]:
    """Wait (up to ``max_wait_s``) for the 1-minute load average to drop to ``limit``."""
    first = os.getloadavg()[0]
    t0 = time.monotonic()
    load = first
    if load > limit:
        print(
            f"load average {load:.2f} > {limit}: waiting up to {max_wait_s:.0f} s for it to "
            "drop (another benchmark may be running)",
            flush=True,
        )
    while load > limit and time.monotonic() - t0 < max_wait_s:
        time.sleep(5)
        load = os.getloadavg()[0]
    waited = time.monotonic() - t0
    if load > limit:
        print(
            f"load average still {load:.2f} after {waited:.0f} s; measuring anyway "
            "(figures may be distorted)",
            flush=True,
        )
    return {
        "initial": round(first, 2),
        "at_start": round(load, 2),
        "waited_s": round(waited, 1),
        "quiet": load <= limit,
    }


# --- 1. file_watch trigger latency ---------------------------------------------------------


def watch_definitions(dirs: list[Path], debounce_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"fw{k}",
            "trigger": {"kind": "file_watch", "paths": [str(d)], "debounce_ms": debounce_ms},
            "action": {"kind": "command", "argv": ACTION},
        }
        for k, d in enumerate(dirs)
    ]


def burst_plan(n: int, sizes: Sequence[int]) -> list[int]:
    return [sizes[i % len(sizes)] for i in range(n)]


def burst_of(path: str) -> int | None:
    """Burst index from a written file name ``b<iii>-<jj>.txt``."""
    name = os.path.basename(path)
    if name.startswith("b") and "-" in name:
        with contextlib.suppress(ValueError):
            return int(name[1 : name.index("-")])
    return None


def watch_round(args: argparse.Namespace, tmp: Path, seed: int) -> dict[str, Any]:
    import psutil

    rng = random.Random(seed)
    d_ms = args.debounce_ms
    plan = burst_plan(args.bursts, args.burst_sizes)
    out: dict[str, Any] = {
        "debounce_ms": d_ms,
        "routines": args.watch_routines,
        "loadavg_at_start": round(os.getloadavg()[0], 2),
    }
    bursts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="palyra-bench-fw-", dir=tmp) as d:
        home = Path(d) / "home"
        dirs = [Path(d) / f"watched{k}" for k in range(args.watch_routines)]
        for w in dirs:
            w.mkdir()
        write_home(home, watch_definitions(dirs, d_ms), args.max_concurrent)
        sampler: ProcSampler | None = None
        try:
            t_inv, t_ret = daemon_start(home)
            out["start_s"] = (t_ret - t_inv) / 1000
            sampler = daemon_sampler(home).start()
            time.sleep(args.watch_warmup)  # watches attach within 1 s of apply (SPEC §2.1)
            db = read_db(home)
            cpu0, host0 = sampler.cpu(), psutil.cpu_times()
            foreign = ForeignCpu()
            t0 = now_ms()
            for i, size in enumerate(plan):
                k = i % len(dirs)
                for j in range(size):
                    (dirs[k] / f"b{i:03d}-{j:02d}.txt").write_bytes(b"x")
                t_last = now_ms()
                b = {"burst": i, "routine_id": f"fw{k}", "files": size, "t_last_ms": t_last}
                bursts.append(b)
                # Wait for this burst's run to start (or end without starting), then a random
                # gap so bursts do not lock into phase with the daemon's timers.
                deadline = time.monotonic() + d_ms / 1000 + args.watch_cap
                tag = f"/b{i:03d}-"
                while time.monotonic() < deadline:
                    row = db.execute(
                        "SELECT started_at_ms, status FROM runs WHERE routine_id = ?"
                        " AND queued_at_ms >= ? AND trigger_payload LIKE ? LIMIT 1",
                        (f"fw{k}", t_last, f"%{tag}%"),
                    ).fetchone()
                    if row is not None and (
                        row[0] is not None or row[1] not in ("pending", "running")
                    ):
                        break
                    time.sleep(0.02)
                else:
                    b["timed_out"] = True
                time.sleep(rng.uniform(0.05, 0.25))
            t1 = now_ms()
            cpu1, host1 = sampler.cpu(), psutil.cpu_times()
            out["other_cpu_s_window"] = foreign.seconds(sampler.pids()[0])
            # Stragglers: a late second run of a burst would show up within one debounce.
            time.sleep(d_ms / 1000 + 1.0)
            db.close()
        finally:
            if sampler is not None:
                sampler.stop()
            out["stop"] = daemon_stop(home)
        db = read_db(home)
        runs = [
            dict(r)
            for r in db.execute(
                "SELECT run_id, routine_id, status, error_kind, trigger_kind, trigger_payload,"
                " queued_at_ms, started_at_ms, finished_at_ms FROM runs WHERE routine_id LIKE 'fw%'"
                " ORDER BY run_id"
            )
        ]
        db.close()
    # Map runs to bursts through their payload paths.
    runs_of: dict[int, list[tuple[dict[str, Any], set[str], int]]] = defaultdict(list)
    unmatched = 0
    for r in runs:
        paths = set()
        with contextlib.suppress(ValueError, TypeError, KeyError):
            paths = {e["path"] for e in json.loads(r["trigger_payload"])["events"]}
        ids = {burst_of(p) for p in paths} - {None}
        if not ids:
            unmatched += 1
        for i in ids:
            assert i is not None
            names = {os.path.basename(p) for p in paths if burst_of(p) == i}
            runs_of[i].append((r, names, len(ids)))
    lat: list[float] = []
    lat_by_size: dict[int, list[float]] = defaultdict(list)
    decide: list[float] = []
    spawn: list[float] = []
    exactly_one = complete = 0
    statuses: Counter[str] = Counter()
    for b in bursts:
        mine = runs_of.get(b["burst"], [])
        b["runs"] = len(mine)
        if len(mine) != 1:
            continue
        exactly_one += 1
        r, names, n_bursts = mine[0]
        b["complete"] = len(names) == b["files"]
        complete += b["complete"]
        b["merged_with_other_bursts"] = n_bursts > 1
        statuses[f"{r['status']}:{r['error_kind'] or ''}"] += 1
        settled = b["t_last_ms"] + d_ms
        b.update(
            status=r["status"], queued_at_ms=r["queued_at_ms"], started_at_ms=r["started_at_ms"]
        )
        decide.append(r["queued_at_ms"] - settled)
        if r["started_at_ms"] is not None:
            b["latency_ms"] = r["started_at_ms"] - settled
            lat.append(b["latency_ms"])
            lat_by_size[b["files"]].append(b["latency_ms"])
            spawn.append(r["started_at_ms"] - r["queued_at_ms"])
    out.update(
        bursts=len(bursts),
        exactly_one_run=exactly_one,
        complete_payload=complete,
        merged_bursts=sum(1 for b in bursts if b.get("merged_with_other_bursts")),
        runs_total=len(runs),
        runs_not_matching_a_burst=unmatched,
        timed_out=sum(1 for b in bursts if b.get("timed_out")),
        run_statuses=dict(statuses),
        latency_ms=lat_stats(lat),
        latency_ms_by_size={str(s): lat_stats(v) for s, v in sorted(lat_by_size.items())},
        settled_to_recorded_ms=lat_stats(decide),
        recorded_to_started_ms=lat_stats(spawn),
        window_ms=[t0, t1],
        cpu_s_window=round(cpu1 - cpu0, 3),
        peak_rss_mb=round(sampler.peak_total / 2**20, 1) if sampler else None,
        host_busy_window=round(host_busy_fraction(host0, host1), 3),
        raw_bursts=bursts,
    )
    return out


# --- 2. catch-up recovery after an outage --------------------------------------------------


def outage_definitions(
    n: int, interval_ms: int, grace_ms: int, anchor_ms: int = BASE_ANCHOR_MS
) -> list[dict[str, Any]]:
    """``n`` routines every ``interval_ms``, anchors spread evenly across one interval from
    ``anchor_ms`` (the first tick of each is one interval after its anchor)."""
    return [
        {
            "id": f"c{i:04d}",
            "trigger": {
                "kind": "schedule",
                "schedule": {
                    "type": "every",
                    "interval_ms": interval_ms,
                    "anchor": rfc3339_ms(anchor_ms + i * interval_ms // n),
                },
            },
            "action": {"kind": "command", "argv": ACTION},
            "misfire": {"policy": "catch_up", "grace_ms": grace_ms, "max_catch_up_runs": 1},
        }
        for i in range(n)
    ]


RUN_FIELDS = (
    "run_id, routine_id, attempt, trigger_kind, status, error_kind, scheduled_for_ms, fire_at_ms,"
    " queued_at_ms, started_at_ms, finished_at_ms, missed_count, first_missed_ms, last_missed_ms,"
    " exit_code"
)


class RecoveryWatch:
    """Polls the journal (read-only) from just before ``daemon start`` is invoked: when every
    routine's outage skip record and catch-up run are *visible* (committed; 20 ms polls),
    then (0.25 s polls) how many catch-up runs are final and how many routines have a
    succeeded run started after the restart. Polls use the run_id range of the restart."""

    def __init__(self, home: Path, n: int, grace: int, t_inv: int) -> None:
        self.home, self.n, self.grace, self.t_inv = home, n, grace, t_inv
        self.visible_at: int | None = None
        self.progress: list[dict[str, int]] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RecoveryWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        db = read_db(self.home)
        floor = ulid_floor(self.t_inv)
        catch_ids: set[str] = set()
        lo = hi = ""
        try:
            while not self._stop.is_set():
                now = now_ms()
                if self.visible_at is None:
                    skips, catch = db.execute(
                        "SELECT COUNT(DISTINCT CASE WHEN error_kind = 'misfire_skipped' THEN"
                        " routine_id END), COUNT(DISTINCT CASE WHEN error_kind IS NOT"
                        " 'misfire_skipped' AND scheduled_for_ms IS NOT NULL AND queued_at_ms"
                        " - fire_at_ms > ? THEN routine_id END) FROM runs WHERE run_id >= ?",
                        (self.grace, floor),
                    ).fetchone()
                    if skips >= self.n and catch >= self.n:
                        self.visible_at = now
                        first: dict[str, str] = {}
                        for rid, run_id in db.execute(
                            "SELECT routine_id, run_id FROM runs WHERE run_id >= ? AND"
                            " scheduled_for_ms IS NOT NULL AND queued_at_ms - fire_at_ms > ?"
                            " ORDER BY run_id",
                            (floor, self.grace),
                        ):
                            first.setdefault(rid, run_id)
                        catch_ids = set(first.values())
                        lo, hi = min(catch_ids), max(catch_ids)
                    else:
                        self._stop.wait(0.02)
                        continue
                final = sum(
                    1
                    for run_id, status in db.execute(
                        "SELECT run_id, status FROM runs WHERE run_id BETWEEN ? AND ?", (lo, hi)
                    )
                    if run_id in catch_ids and status not in ("pending", "running")
                )
                ran = db.execute(
                    "SELECT COUNT(DISTINCT routine_id) FROM runs WHERE status = 'succeeded'"
                    " AND started_at_ms >= ?",
                    (self.t_inv,),
                ).fetchone()[0]
                self.progress.append({"t_ms": now, "catchups_final": final, "ran_again": ran})
                if final >= self.n and ran >= self.n:
                    self.done.set()
                    return
                self._stop.wait(0.25)
        finally:
            db.close()


def analyse_outage(
    rows: list[dict[str, Any]],
    n: int,
    interval: int,
    grace: int,
    marks: dict[str, int],
    base_anchor: int,
) -> dict[str, Any]:
    """Everything from the journal after the final stop (daemon down)."""
    t_stop_done, t_inv, t_ret = (
        marks["stop_returned"],
        marks["start_invoked"],
        marks["start_returned"],
    )
    by_routine: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_routine[r["routine_id"]].append(r)
    out: dict[str, Any] = {}
    # No (routine_id, scheduled_for) twice; no (routine_id, scheduled_for, attempt) twice.
    ticks = Counter(
        (r["routine_id"], r["scheduled_for_ms"]) for r in rows if r["scheduled_for_ms"] is not None
    )
    out["duplicate_ticks"] = sum(1 for c in ticks.values() if c > 1)
    out["duplicate_ticks_examples"] = [list(k) for k, c in ticks.items() if c > 1][:5]
    skip_counts: Counter[int] = Counter()
    catch_counts: Counter[int] = Counter()
    missed: list[int] = []
    catch_status: Counter[str] = Counter()
    lag_catchups = 0
    recorded_at: list[int] = []
    final_at: list[int] = []
    succeeded_at: list[int] = []
    ran_again_at: list[int] = []
    lost = misaligned = ontime = 0
    inconsistent = 0
    catch_started: list[int] = []
    for i in range(n):
        rid = f"c{i:04d}"
        rs = by_routine.get(rid, [])
        anchor = base_anchor + i * interval // n
        skips = [r for r in rs if r["error_kind"] == "misfire_skipped"]
        outage_skips = [
            r
            for r in skips
            if r["first_missed_ms"] is not None
            and r["first_missed_ms"] < t_inv
            and r["last_missed_ms"] > t_stop_done
        ]
        skip_counts[len(outage_skips)] += 1
        # The outage catch-up: a misfire run decided in the same transaction as the outage
        # skip record (same queued_at); further misfire runs after the restart are lag.
        post = [
            r
            for r in rs
            if r["queued_at_ms"] >= t_inv
            and r["scheduled_for_ms"] is not None
            and r["fire_at_ms"] is not None
            and r["queued_at_ms"] - r["fire_at_ms"] > grace
        ]
        s = outage_skips[0] if outage_skips else None
        mine = [r for r in post if s is not None and r["queued_at_ms"] == s["queued_at_ms"]]
        lag_catchups += len(post) - len(mine)
        if s is not None:
            # The newest tick may still be within grace at the restart: it runs too, in the
            # same decision, right after the catch-up (SPEC §2.3).
            ontime += any(
                r["queued_at_ms"] == s["queued_at_ms"]
                and r["scheduled_for_ms"] is not None
                and r["queued_at_ms"] - r["fire_at_ms"] <= grace
                for r in rs
            )
        catch_counts[len(mine)] += 1
        if s is not None:
            missed.append(s["missed_count"])
        if s is not None and len(mine) == 1:
            c = mine[0]
            catch_status[f"{c['status']}:{c['error_kind'] or ''}"] += 1
            recorded_at.append(max(s["queued_at_ms"], c["queued_at_ms"]))
            if c["status"] not in ("pending", "running"):
                final_at.append(c["finished_at_ms"])
            if c["status"] == "succeeded":
                succeeded_at.append(c["finished_at_ms"])
                catch_started.append(c["started_at_ms"])
            # The catch-up stands for the newest missed tick, right after the skip range,
            # and nothing inside the skip range has a record of its own.
            if c["scheduled_for_ms"] != s["last_missed_ms"] + interval or any(
                r["scheduled_for_ms"] is not None
                and s["first_missed_ms"] <= r["scheduled_for_ms"] <= s["last_missed_ms"]
                for r in rs
            ):
                inconsistent += 1
        ok = [
            r["finished_at_ms"]
            for r in rs
            if r["status"] == "succeeded"
            and r["started_at_ms"] is not None
            and r["started_at_ms"] >= t_inv
        ]
        if ok:
            ran_again_at.append(min(ok))
        # No lost ticks: every tick from the first accounted one to the last has a record
        # or lies in a skip record's range.
        have = {r["scheduled_for_ms"] for r in rs if r["scheduled_for_ms"] is not None}
        ranges = [(r["first_missed_ms"], r["last_missed_ms"]) for r in skips]
        lo = min([*have, *(a for a, _b in ranges)], default=None)
        hi = max([*have, *(b for _a, b in ranges)], default=None)
        if lo is not None and hi is not None:
            t = lo
            while t <= hi:
                if t not in have and not any(a <= t <= b for a, b in ranges):
                    lost += 1
                t += interval
            misaligned += (lo - anchor) % interval != 0
    out.update(
        routines=n,
        routines_with_n_outage_skip_records=dict(sorted(skip_counts.items())),
        routines_with_n_outage_catchup_runs=dict(sorted(catch_counts.items())),
        catchup_status=dict(catch_status),
        lag_catchup_runs_after_restart=lag_catchups,
        inconsistent_skip_vs_catchup=inconsistent,
        lost_ticks=lost,
        routines_with_ticks_off_the_anchor_grid=misaligned,
        routines_with_an_on_time_run_beside_the_catchup=ontime,
        # Runs whose process exited 0 but that a graceful stop recorded failed/daemon_stopped.
        exited_0_recorded_daemon_stopped=sum(
            1 for r in rows if r["error_kind"] == "daemon_stopped" and r["exit_code"] == 0
        ),
        daemon_stopped_total=sum(1 for r in rows if r["error_kind"] == "daemon_stopped"),
        missed_count={
            "min": min(missed, default=None),
            "median": med(missed),
            "max": max(missed, default=None),
            "histogram": dict(sorted(Counter(missed).items())),
        },
    )

    def span(values: list[int], complete: bool) -> dict[str, int | None]:
        if not complete or not values:
            return {"from_start_returned_ms": None, "from_start_invoked_ms": None}
        m = max(values)
        return {"from_start_returned_ms": m - t_ret, "from_start_invoked_ms": m - t_inv}

    out["all_recorded"] = span(recorded_at, len(recorded_at) == n)
    out["all_catchups_final"] = span(final_at, len(final_at) == n)
    out["all_catchups_succeeded"] = span(succeeded_at, len(succeeded_at) == n)
    out["all_routines_ran_again"] = span(ran_again_at, len(ran_again_at) == n)
    out["catchups_succeeded"] = len(succeeded_at)
    out["routines_ran_again"] = len(ran_again_at)
    if catch_started:
        out["first_catchup_started_from_start_returned_ms"] = min(catch_started) - t_ret
    return out


def outage_round(args: argparse.Namespace, tmp: Path, variant: str) -> dict[str, Any]:
    """``steady``: the routines tick from long ago, the daemon runs ``before_outage`` s (on
    this machine demand outruns the executor, so runs are still pending at the stop), then
    the outage. ``fresh``: the anchors are set so the first tick falls after the first stop
    (``fresh_lead`` s after the definitions are written); the daemon applies the routines,
    stops 1 s later with nothing run or pending, and the outage covers the first ~10 ticks:
    the catch-up alone, without a pre-outage backlog."""
    import psutil

    n, iv, grace = args.routines, args.interval_ms, args.grace_ms
    out: dict[str, Any] = {
        "variant": variant,
        "routines": n,
        "interval_ms": iv,
        "grace_ms": grace,
        "loadavg_at_start": round(os.getloadavg()[0], 2),
    }
    marks: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="palyra-bench-outage-", dir=tmp) as d:
        home = Path(d) / "home"
        anchor = BASE_ANCHOR_MS
        if variant == "fresh":
            anchor = now_ms() + int(args.fresh_lead * 1000)
            marks["anchor"] = anchor
        write_home(home, outage_definitions(n, iv, grace, anchor), args.max_concurrent)
        sampler: ProcSampler | None = None
        running = False
        try:
            marks["first_start_invoked"], marks["first_start_returned"] = daemon_start(home)
            running = True
            time.sleep(args.before_outage if variant == "steady" else 1.0)
            marks["stop_invoked"], marks["stop_returned"], out["stop_rc"] = daemon_stop(home)
            running = False
            db = read_db(home)
            out["at_stop"] = dict(
                Counter(
                    f"{r[0]}"
                    for r in db.execute(
                        "SELECT status FROM runs WHERE status IN ('pending', 'running')"
                    )
                )
            )
            out["runs_before_outage"] = dict(
                Counter(
                    f"{r[0]}:{r[1] or ''}"
                    for r in db.execute("SELECT status, error_kind FROM runs")
                )
            )
            db.close()
            restart_at = marks["stop_returned"] + int(args.outage * 1000)
            if variant == "fresh":
                restart_at = max(restart_at, anchor + int(args.outage * 1000))
            time.sleep(max(0.0, (restart_at - now_ms()) / 1000))
            host0 = psutil.cpu_times()
            foreign = ForeignCpu()
            watch = RecoveryWatch(home, n, grace, now_ms()).start()
            marks["start_invoked"], marks["start_returned"] = daemon_start(home)
            running = True
            sampler = daemon_sampler(home).start()
            watch.done.wait(
                max(0.0, args.recovery_cap - (now_ms() - marks["start_invoked"]) / 1000)
            )
            marks["window_end"] = now_ms()
            watch.stop()
            # Every daemon process was born after start_invoked: its CPU total is the window's.
            out["cpu_s_window"] = round(sampler.cpu(), 3)
            host1 = psutil.cpu_times()
            out["host_busy_window"] = round(host_busy_fraction(host0, host1), 3)
            out["other_cpu_s_window"] = foreign.seconds(sampler.pids()[0])
            t_ret = marks["start_returned"]
            out["progress"] = [
                {**p, "t_ms": p["t_ms"] - t_ret}
                for p in watch.progress[:: max(1, len(watch.progress) // 40)]
            ]
            out["hit_cap"] = not watch.done.is_set()
            vis = watch.visible_at
            out["all_visible"] = {
                "from_start_returned_ms": None if vis is None else vis - t_ret,
                "from_start_invoked_ms": None if vis is None else vis - marks["start_invoked"],
            }
        finally:
            if sampler is not None:
                sampler.stop()
            # Always: a start that failed half-way must not leave a daemon behind.
            out["final_stop"] = daemon_stop(home)
            out["was_running"] = running
        out["peak_rss_mb"] = round(sampler.peak_total / 2**20, 1) if sampler else None
        out["outage_s"] = (marks["start_invoked"] - marks["stop_returned"]) / 1000
        db = read_db(home)
        rows = [dict(r) for r in db.execute(f"SELECT {RUN_FIELDS} FROM runs")]
        db.close()
    out["marks_ms"] = marks
    out["runs_total"] = len(rows)
    out["runs_after_restart"] = dict(
        Counter(
            f"{r['status']}:{r['error_kind'] or ''}"
            for r in rows
            if r["queued_at_ms"] >= marks["start_invoked"]
        )
    )
    out.update(analyse_outage(rows, n, iv, grace, marks, anchor))
    return out


# --- report --------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    v = package_version
    cpu = cpu_model()
    return {
        "palyra": palyra_version(ROOT),
        "watchdog": v("watchdog"),
        "psutil": v("psutil"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "cpu": cpu,
    }


def method_line(args: argparse.Namespace, vers: dict[str, str], load: dict[str, Any]) -> str:
    sizes = "/".join(str(s) for s in args.burst_sizes)
    return (
        f"method: {os.cpu_count()} cores ({vers['cpu']}), Linux {vers['kernel']}; load avg "
        f"(1 min) {load['initial']:.2f} at launch, {load['at_start']:.2f} at start after "
        f"waiting {load['waited_s']:.0f} s (limit {LOAD_LIMIT}); rounds {args.rounds} per "
        f"section; temp homes, [executor] max_concurrent_runs = {args.max_concurrent}, action "
        f"argv {ACTION}. "
        f"[1] file_watch: {args.watch_routines} routines, one temp dir each, debounce_ms "
        f"{args.debounce_ms}, {args.bursts} bursts per round of {sizes} files alternating, "
        f"rotating over the routines, each after the previous burst's run started + 50–250 ms; "
        f"warm-up {args.watch_warmup:g} s; latency = started_at − (t_last_write + debounce). "
        f"[2] outage: N={args.routines} routines every {args.interval_ms} ms (anchors spread "
        f"across the interval), misfire catch_up grace {args.grace_ms} ms max_catch_up_runs 1, "
        f"default concurrency forbid; two variants: (a) steady: ticking since 2026-01-01, up "
        f"{args.before_outage:g} s, `daemon stop`, down {args.outage:g} s, `daemon start`; "
        f"(b) fresh: anchors {args.fresh_lead:g} s after the definitions are written, up 1 s, "
        f"`daemon stop` before the first tick, `daemon start` {args.outage:g} s after the "
        f"anchors; times to all outage skip+catch-up records, all "
        f"catch-ups final/succeeded, every routine succeeded again (journal timestamps) from "
        f"start returned (and invoked); cap {args.recovery_cap:g} s. "
        f"psutil RSS peak/CPU s of supervisor + its children over each window; versions: "
        f"palyra {vers['palyra']}, watchdog {vers['watchdog']}, Python {vers['python']}, "
        f"SQLite {vers['sqlite']}, psutil {vers['psutil']}"
    )


def watch_line(i: int, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    by = r["latency_ms_by_size"]
    sizes = ", ".join(f"{s} file(s) p50 {fmt(v['p50'])} max {fmt(v['max'])}" for s, v in by.items())
    return (
        f"  round {i} file_watch: bursts {r['bursts']}, exactly one run {r['exactly_one_run']}"
        f" (complete payload {r['complete_payload']}, merged {r['merged_bursts']}), latency ms"
        f" p50 {fmt(lat['p50'])} p90 "
        f"{fmt(lat['p90'])} p99 {fmt(lat['p99'])} max {fmt(lat['max'])} [{sizes}] | cpu "
        f"{r['cpu_s_window']:.2f} s, peak rss {fmt(r['peak_rss_mb'])} MB | host busy "
        f"{100 * r['host_busy_window']:.0f}%, other processes {r['other_cpu_s_window']:.1f} "
        f"cpu s, load {r['loadavg_at_start']:.2f}"
    )


def outage_line(i: int, r: dict[str, Any]) -> str:
    def s(key: str) -> str:
        v = r[key]["from_start_returned_ms"]
        return fmt(None if v is None else v / 1000, " s", 2)

    return (
        f"  round {i} outage/{r['variant']}: {r['outage_s']:.1f} s down, leftover active at stop "
        f"{sum(r['at_stop'].values())}; recorded {s('all_recorded')} (visible "
        f"{s('all_visible')}), catch-ups final "
        f"{s('all_catchups_final')}, succeeded {s('all_catchups_succeeded')} "
        f"({r['catchups_succeeded']}/{r['routines']}; {r['catchup_status']}), all ran again "
        f"{s('all_routines_ran_again')} | skip records/routine "
        f"{r['routines_with_n_outage_skip_records']}, missed {r['missed_count']['min']}–"
        f"{r['missed_count']['max']}, dup ticks {r['duplicate_ticks']}, lost {r['lost_ticks']}"
        f" | cpu {r['cpu_s_window']:.1f} s, peak rss {fmt(r['peak_rss_mb'])} MB, host busy "
        f"{100 * r['host_busy_window']:.0f}%, other processes {r['other_cpu_s_window']:.1f} cpu s"
    )


def summarize(watch: list[dict[str, Any]], outage: list[dict[str, Any]]) -> dict[str, Any]:
    s: dict[str, Any] = {"file_watch": {}}
    fw = s["file_watch"]
    for f in ("p50", "p90", "p99", "max"):
        fw[f"latency_{f}_ms"] = [r["latency_ms"][f] for r in watch]
        for size in sorted({k for r in watch for k in r["latency_ms_by_size"]}, key=int):
            fw[f"latency_{f}_ms_{size}_files"] = [
                r["latency_ms_by_size"].get(size, {}).get(f) for r in watch
            ]
    fw["settled_to_recorded_p50_ms"] = [r["settled_to_recorded_ms"]["p50"] for r in watch]
    fw["recorded_to_started_p50_ms"] = [r["recorded_to_started_ms"]["p50"] for r in watch]
    fw["bursts"] = [r["bursts"] for r in watch]
    fw["exactly_one_run"] = [r["exactly_one_run"] for r in watch]
    fw["complete_payload"] = [r["complete_payload"] for r in watch]
    fw["cpu_s_window"] = [r["cpu_s_window"] for r in watch]
    fw["peak_rss_mb"] = [r["peak_rss_mb"] for r in watch]
    fw["other_cpu_s_window"] = [r["other_cpu_s_window"] for r in watch]
    pooled = [b["latency_ms"] for r in watch for b in r["raw_bursts"] if "latency_ms" in b]
    fw["pooled_latency_ms"] = lat_stats(pooled)
    for variant in ("steady", "fresh"):
        rounds = [r for r in outage if r["variant"] == variant]
        if rounds:
            s[f"outage_{variant}"] = summarize_outage(rounds)
    return s


def summarize_outage(outage: list[dict[str, Any]]) -> dict[str, Any]:
    o: dict[str, Any] = {}
    for key in (
        "all_recorded",
        "all_visible",
        "all_catchups_final",
        "all_catchups_succeeded",
        "all_routines_ran_again",
    ):
        for ref in ("from_start_returned_ms", "from_start_invoked_ms"):
            o[f"{key}_{ref}"] = [r[key][ref] for r in outage]
    for key in (
        "catchups_succeeded",
        "routines_ran_again",
        "duplicate_ticks",
        "lost_ticks",
        "lag_catchup_runs_after_restart",
        "inconsistent_skip_vs_catchup",
        "routines_with_an_on_time_run_beside_the_catchup",
        "exited_0_recorded_daemon_stopped",
        "daemon_stopped_total",
        "cpu_s_window",
        "peak_rss_mb",
        "outage_s",
        "other_cpu_s_window",
    ):
        o[key] = [r[key] for r in outage]
    o["leftover_active_at_stop"] = [sum(r["at_stop"].values()) for r in outage]
    o["missed_count_min_max"] = [
        [r["missed_count"]["min"], r["missed_count"]["max"]] for r in outage
    ]
    o["routines_with_exactly_one_outage_skip"] = [
        r["routines_with_n_outage_skip_records"].get(1, 0) for r in outage
    ]
    o["routines_with_at_most_one_outage_catchup"] = [
        sum(v for k, v in r["routines_with_n_outage_catchup_runs"].items() if k <= 1)
        for r in outage
    ]
    o["catchup_status_all_rounds"] = dict(
        sum((Counter(r["catchup_status"]) for r in outage), Counter())
    )
    return o


def print_summary(s: dict[str, Any], args: argparse.Namespace) -> None:
    if s["file_watch"].get("bursts"):
        print_watch_summary(s["file_watch"], args)
    for variant in ("steady", "fresh"):
        if f"outage_{variant}" in s:
            print_outage_summary(s[f"outage_{variant}"], args, variant)


def print_watch_summary(fw: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"1. file_watch trigger latency, started_at − (last write + debounce "
        f"{args.debounce_ms} ms), ms (median of rounds / worst round)"
    )
    for f in ("p50", "p90", "p99", "max"):
        extra = "".join(
            f"   {size} file(s): {mw(fw[f'latency_{f}_ms_{size}_files']):>11}"
            for size in (str(x) for x in sorted(set(args.burst_sizes)))
            if f"latency_{f}_ms_{size}_files" in fw
        )
        print(f"  {f:<4} {mw(fw[f'latency_{f}_ms']):>11}{extra}")
    p = fw["pooled_latency_ms"]
    print(
        f"  pooled over rounds (n={p['n']}): p50 {fmt(p['p50'])} p90 {fmt(p['p90'])} p99 "
        f"{fmt(p['p99'])} max {fmt(p['max'])}"
    )
    print(
        f"  split, p50: settled → run recorded {mw(fw['settled_to_recorded_p50_ms'])}, "
        f"recorded → spawned {mw(fw['recorded_to_started_p50_ms'])}"
    )
    print(
        f"  bursts with exactly one run: {sum(fw['exactly_one_run'])} of {sum(fw['bursts'])}"
        f" (complete payload: {sum(fw['complete_payload'])}); per round "
        f"{fw['exactly_one_run']}"
    )
    print(
        f"  CPU s over window {mw(fw['cpu_s_window'], digits=2)}, peak RSS MB (summed) "
        f"{mw(fw['peak_rss_mb'])}; other processes' CPU s per round {fw['other_cpu_s_window']}"
    )


VARIANT_TITLE = {
    "steady": "2a. after running {before:g} s in steady state (runs still pending at the stop)",
    "fresh": "2b. first ticks inside the outage (nothing run or pending at the stop)",
}


def print_outage_summary(o: dict[str, Any], args: argparse.Namespace, variant: str) -> None:
    print()
    print(
        VARIANT_TITLE[variant].format(before=args.before_outage)
        + f": catch-up recovery, {args.routines} routines every {args.interval_ms} ms, down "
        f"{med(o['outage_s']) or 0:.1f} s; seconds, median / worst round, from `daemon start` "
        "returned [from invoked]"
    )

    def sec(key: str) -> str:
        a = [None if v is None else v / 1000 for v in o[f"{key}_from_start_returned_ms"]]
        b = [None if v is None else v / 1000 for v in o[f"{key}_from_start_invoked_ms"]]
        return f"{mw(a, digits=2):>13}  [{mw(b, digits=2)}]"

    print(f"  all skip + catch-up records decided {sec('all_recorded')}  (their queued_at stamp)")
    print(f"  … and visible in the journal        {sec('all_visible')}  (20 ms polls)")
    print(f"  all catch-up runs final             {sec('all_catchups_final')}")
    print(f"  all catch-up runs succeeded         {sec('all_catchups_succeeded')}")
    print(f"  every routine succeeded again       {sec('all_routines_ran_again')}")
    print(
        f"  catch-ups succeeded per round {o['catchups_succeeded']} of {args.routines}; "
        f"outcomes, all rounds: {o['catchup_status_all_rounds']}"
    )
    print(f"  runs left pending/running at the stop, per round: {o['leftover_active_at_stop']}")
    print(
        f"  routines with exactly one outage skip record: "
        f"{o['routines_with_exactly_one_outage_skip']}; with ≤ 1 outage catch-up run: "
        f"{o['routines_with_at_most_one_outage_catchup']}; missed counts (min, max) "
        f"{o['missed_count_min_max']}"
    )
    print(
        f"  duplicate (routine_id, scheduled_for): {o['duplicate_ticks']}; lost ticks: "
        f"{o['lost_ticks']}; catch-up not the tick after the skip range: "
        f"{o['inconsistent_skip_vs_catchup']}; extra misfire catch-ups after the restart "
        f"(scheduler lag): {o['lag_catchup_runs_after_restart']}"
    )
    print(
        f"  routines whose newest tick was still on time at the restart (a second run in the "
        f"catch-up's decision, queued right behind it): "
        f"{o['routines_with_an_on_time_run_beside_the_catchup']}"
    )
    print(
        f"  runs recorded failed/daemon_stopped by the stops: {o['daemon_stopped_total']}, of "
        f"which exited 0: {o['exited_0_recorded_daemon_stopped']}"
    )
    print(
        f"  CPU s over window {mw(o['cpu_s_window'], digits=1)}, peak RSS MB (summed) "
        f"{mw(o['peak_rss_mb'])}; other processes' CPU s per round {o['other_cpu_s_window']}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 short round per section")
    ap.add_argument("--rounds", type=int, help="rounds per section (default 5; quick 1)")
    ap.add_argument(
        "--only",
        choices=("watch", "outage", "steady", "fresh"),
        help="run one section (outage = both of its variants) or one outage variant only",
    )
    ap.add_argument(
        "--fresh-lead",
        type=float,
        default=6.0,
        help="fresh variant: s from writing the definitions to the anchors (default 6)",
    )
    ap.add_argument(
        "--max-concurrent",
        type=int,
        default=8,
        help="[executor] max_concurrent_runs (default 8, the daemon's default)",
    )
    ap.add_argument("--debounce-ms", type=int, default=300, help="file_watch debounce_ms")
    ap.add_argument("--watch-routines", type=int, default=4, help="file_watch routines/dirs")
    ap.add_argument("--bursts", type=int, help="bursts per round (default 50; quick 12)")
    ap.add_argument(
        "--burst-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 50],
        help="files per burst, alternating (default 1,50)",
    )
    ap.add_argument("--watch-warmup", type=float, default=2.0, help="s after ready (default 2)")
    ap.add_argument(
        "--watch-cap",
        type=float,
        default=10.0,
        help="max s to wait for a burst's run beyond the debounce",
    )
    ap.add_argument("--routines", type=int, help="outage N (default 1000)")
    ap.add_argument("--interval-ms", type=int, default=1000, help="outage interval (1000)")
    ap.add_argument("--grace-ms", type=int, default=500, help="misfire grace_ms (500)")
    ap.add_argument("--before-outage", type=float, help="s up before the stop (default 3)")
    ap.add_argument("--outage", type=float, default=10.0, help="s down (default 10)")
    ap.add_argument("--recovery-cap", type=float, help="max s to wait for recovery (90; q 45)")
    ap.add_argument(
        "--load-wait",
        type=float,
        default=300.0,
        help=f"max s to wait for the 1-min load average to drop to {LOAD_LIMIT}",
    )
    ap.add_argument(
        "--round-wait",
        type=float,
        default=30.0,
        help="max s to wait before a round while other processes use > 0.5 core (default 30)",
    )
    ap.add_argument(
        "--round-wait-total",
        type=float,
        default=90.0,
        help="max s of such waits over the whole run (default 90)",
    )
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where temp homes go")
    ap.add_argument("--out", help="raw JSON (default bench/results/policies[-quick].json)")
    args = ap.parse_args(argv)
    q = args.quick
    defaults = {
        "rounds": 1 if q else 5,
        "bursts": 12 if q else 50,
        "routines": 1000,
        "before_outage": 3.0,
        "recovery_cap": 45.0 if q else 90.0,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.out is None:
        args.out = str(RESULTS / ("policies-quick.json" if q else "policies.json"))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    load = wait_for_quiet_host(LOAD_LIMIT, args.load_wait)
    vers = versions()
    method = method_line(args, vers, load)
    print(method, flush=True)
    tmp = Path(args.tmp)
    watch: list[dict[str, Any]] = []
    outage: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "method": method,
        "versions": vers,
        "load": load,
        "config": vars(args),
        "started_at": datetime.now(UTC).isoformat(),
        "file_watch_rounds": watch,
        "outage_rounds": outage,
    }
    t_all = time.monotonic()
    budget = [args.round_wait_total]

    def gate_round() -> dict[str, float]:
        g = host_quiet_enough(max(0.0, min(args.round_wait, budget[0])))
        budget[0] -= g["waited_s"]
        return g

    try:
        for i in range(1, args.rounds + 1):
            if args.only in (None, "watch"):
                gate = gate_round()
                watch.append(watch_round(args, tmp, seed=i))
                watch[-1].update(gate)
                print(watch_line(i, watch[-1]), flush=True)
            for variant in ("steady", "fresh"):
                if args.only in (None, "outage", variant):
                    gate = gate_round()
                    outage.append(outage_round(args, tmp, variant))
                    outage[-1].update(gate)
                    print(outage_line(i, outage[-1]), flush=True)
    finally:
        result["elapsed_s"] = round(time.monotonic() - t_all, 1)
        with contextlib.suppress(Exception):
            result["summary"] = summarize(watch, outage)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print_summary(result["summary"], args)
    print(f"\nraw numbers: {args.out} (elapsed {result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
