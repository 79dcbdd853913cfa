"""Benchmark: the background queue — Palyra's task workers vs huey's SqliteHuey, side by side.

Figures (BENCHMARKS.md):

- throughput: N no-op tasks enqueued + completed per second with one worker. Palyra: a real
  daemon with ``[executor] task_workers = 1``; the bench inserts N ``memory_maintenance``
  tasks (no unique_key: its handler is a no-op) through ``Journal.tasks.enqueue`` in one
  transaction, pokes the executor, and the clock stops at the last task's ``finished_ms``.
  huey: ``SqliteHuey`` on a temp file, its own consumer (``huey_consumer``-equivalent child
  process: ``Consumer(workers=1, worker_type='thread')``), the same no-op task enqueued N
  times, then one last task that returns the consumer's clock (FIFO, one worker: when it
  ran, all N had). Goal: Palyra ≥ 2× huey.
- enqueue → start latency on an idle queue (one task at a time, through the journal from this
  process + ``poke_service(run_dir, "executor")``; start = the task's ``started_ms``; the
  task's ``created_ms`` is stamped just before the enqueue transaction). Goal p99 ≤ 10 ms.
- the raw SQLite bound on the same disk: single-row ``BEGIN IMMEDIATE`` claim + complete
  transactions per second (a minimal table, WAL, synchronous=NORMAL) and Palyra's ratio.
- peak RSS summed over the daemon's processes (the huey consumer's own, for huey) and CPU
  seconds over the throughput window (psutil).

Palyra and huey alternate (A B A B …) in one invocation, a fresh home / database each round;
each figure is the median of the per-round figures beside the worst round. Fairness: huey's
SQLite runs WAL + synchronous=NORMAL like the journal (its default would fsync every
commit), and its consumer polls an empty queue every 1-10 ms (its default backs off to
10 s, which would measure its idle sleep, not its queue).

    .venv/bin/python bench/task_queue.py             # 5 + 5 rounds, ~3 min
    .venv/bin/python bench/task_queue.py --quick     # 2 + 2 short rounds

Raw numbers go to bench/results/queue-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    ProcSampler,
    cli,
    cpu_model,
    daemon_sampler,
    fmt,
    med,
    now_ms,
    package_version,
    palyra_version,
    pct,
    sqlite_claim_complete_bound,
    worst,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GOAL_VS_HUEY = 2.0
GOAL_LATENCY_P99_MS = 10.0
HUEY_POLL = ("0.001", "0.01")  # the consumer's initial and max poll delay of an empty queue


# --- huey (the child process runs its consumer; the parent enqueues) ------------------------


def make_huey(path: str) -> Any:
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    class NormalSync(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> sqlite3.Connection:
            conn = super()._create_connection()
            conn.execute("PRAGMA synchronous = NORMAL")
            return conn

    class BenchHuey(SqliteHuey):  # type: ignore[misc]
        storage_class = NormalSync

    huey = BenchHuey("bench", filename=path, immediate=False, results=True)

    @huey.task(name="noop")  # type: ignore[misc]
    def noop() -> None:
        return None

    @huey.task(name="last")  # type: ignore[misc]
    def last() -> float:
        return time.time()

    return huey, noop, last


def huey_child(path: str) -> None:
    import logging

    from huey.consumer import Consumer

    logging.basicConfig(level=logging.WARNING)
    huey, _noop, _last = make_huey(path)
    consumer = Consumer(
        huey,
        workers=1,
        worker_type="thread",
        periodic=False,
        initial_delay=float(HUEY_POLL[0]),
        max_delay=float(HUEY_POLL[1]),
        check_worker_health=False,
    )
    consumer.run()


def huey_round(n: int, tmp: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="palyra-bench-huey-", dir=tmp) as d:
        path = str(Path(d) / "huey.db")
        _huey, noop, last = make_huey(path)
        child = subprocess.Popen(
            [sys.executable, __file__, "--huey-child", path], stderr=subprocess.PIPE, text=True
        )
        try:
            time.sleep(2.0)  # warm-up: the consumer is up and polling
            sampler = ProcSampler(lambda: [child.pid], names={child.pid: "huey_consumer"})
            sampler.start()
            sampler.in_window = True
            cpu0 = sampler.cpu()
            t0 = time.time()
            for _ in range(n):
                noop()
            result = last()
            t_enqueued = time.time()
            done_at = float(result.get(blocking=True, timeout=300, backoff=1.0, max_delay=0.01))
            cpu1 = sampler.cpu()
            sampler.stop()
        finally:
            child.send_signal(2)  # SIGINT: the consumer's graceful stop
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    elapsed = done_at - t0
    return {
        "n": n,
        "elapsed_s": elapsed,
        "per_s": n / elapsed,
        "enqueue_s": t_enqueued - t0,
        "peak_rss_bytes": sampler.peak_window,
        "cpu_s": cpu1 - cpu0,
    }


# --- Palyra -----------------------------------------------------------------------------------


def start_daemon(home: Path) -> None:
    from palyrad.runtime.home import Home

    h = Home.at(home).ensure()
    h.config.write_text("[executor]\ntask_workers = 1\n[rpc]\npairing_port = 0\nnode_port = 0\n")
    proc = cli(home, "daemon", "start")
    if proc.returncode != 0:
        raise RuntimeError(f"daemon start failed: {proc.stdout}\n{proc.stderr}")


def palyra_round(n: int, samples: int, tmp: Path) -> dict[str, Any]:
    from palyrad.domain.runs import new_ulid
    from palyrad.domain.tasks import MEMORY_MAINTENANCE
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home
    from palyrad.runtime.notify import poke_service

    with tempfile.TemporaryDirectory(prefix="palyra-bench-queue-", dir=tmp) as d:
        home = Path(d) / "home"
        start_daemon(home)
        h = Home.at(home)
        journal = Journal(h.journal)
        try:
            time.sleep(2.0)  # warm-up
            sampler = daemon_sampler(home).start()
            sampler.in_window = True
            cpu0 = sampler.cpu()
            t0 = now_ms()
            with journal.transaction():
                for _ in range(n):
                    journal.tasks.enqueue(new_ulid(t0), MEMORY_MAINTENANCE, "{}", now_ms())
            t_enqueued = now_ms()
            poke_service(h.run_dir, "executor")
            deadline = time.monotonic() + 300
            while journal.tasks.newest(status="pending", limit=1) or journal.tasks.newest(
                status="running", limit=1
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("tasks not done in 300 s")
                time.sleep(0.05)
            cpu1 = sampler.cpu()
            sampler.in_window = False
            done = journal.tasks.newest(limit=n + 10)
            assert len(done) == n and all(t.status == "succeeded" for t in done)
            last = max(int(t.finished_ms or 0) for t in done)
            first_start = min(int(t.started_ms or 0) for t in done)
            throughput = {
                "n": n,
                "elapsed_s": (last - t0) / 1000,
                "per_s": n / ((last - t0) / 1000),
                "enqueue_s": (t_enqueued - t0) / 1000,
                "drain_per_s": n / max(0.001, (last - first_start) / 1000),
                "peak_rss_bytes": sampler.peak_window,
                "cpu_s": cpu1 - cpu0,
                "cpu_by_process_s": sampler.cpu_by_process(),
            }
            # latency on the idle queue: one task at a time
            lat: list[int] = []
            rss_peak_latency = 0
            for _ in range(samples):
                time.sleep(0.02)
                created = now_ms()
                task, _ = journal.tasks.enqueue(
                    new_ulid(created), MEMORY_MAINTENANCE, "{}", created
                )
                poke_service(h.run_dir, "executor")
                time.sleep(0.005)
                deadline = time.monotonic() + 30
                while True:
                    t = journal.tasks.get(task.task_id)
                    if t is not None and t.started_ms is not None:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("a latency task did not start in 30 s")
                    time.sleep(0.002)
                lat.append(int(t.started_ms) - created)
            sampler.stop()
            rss_peak_latency = sampler.peak_total
            latency = {
                "samples_ms": lat,
                "p50_ms": pct(lat, 50),
                "p90_ms": pct(lat, 90),
                "p99_ms": pct(lat, 99),
                "max_ms": max(lat) if lat else None,
                "peak_rss_bytes": rss_peak_latency,
            }
        finally:
            journal.close()
            cli(home, "daemon", "stop")
    return {"throughput": throughput, "latency": latency}


# --- the raw SQLite bound ---------------------------------------------------------------------


def raw_bound(seconds: float, tmp: Path) -> dict[str, Any]:
    """Single-row claim + complete, each its own BEGIN IMMEDIATE transaction, back to back;
    WAL + synchronous=NORMAL, on the same disk as the homes. Items per second."""
    done, elapsed = sqlite_claim_complete_bound(tmp, seconds)
    return {"items": done, "elapsed_s": elapsed, "per_s": done / elapsed}


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=2_000)
    ap.add_argument("--samples", type=int, default=200, help="latency samples per round")
    ap.add_argument("--raw-seconds", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--huey-child", metavar="DB")
    args = ap.parse_args()
    if args.huey_child:
        huey_child(args.huey_child)
        return
    if args.quick:
        args.rounds, args.n, args.samples, args.raw_seconds = 2, 500, 50, 1.0
    tmp = Path(tempfile.gettempdir())
    method = (
        f"method: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, palyra {palyra_version(ROOT)},"
        f" huey {package_version('huey')}; N={args.n} no-op tasks, one worker each"
        f" (Palyra [executor] task_workers=1; huey Consumer workers=1 thread, poll"
        f" {HUEY_POLL[0]}-{HUEY_POLL[1]} s, WAL+synchronous=NORMAL); {args.rounds} rounds"
        " A B A B (Palyra, huey, raw bound), fresh home/db per round, 2 s warm-up;"
        f" latency: {args.samples} single enqueues per round on the idle queue (20 ms apart);"
        f" raw bound: {args.raw_seconds} s of BEGIN IMMEDIATE claim+complete on {tmp}"
    )
    print(method, flush=True)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        p = palyra_round(args.n, args.samples, tmp)
        h = huey_round(args.n, tmp)
        b = raw_bound(args.raw_seconds, tmp)
        pt, pl = p["throughput"], p["latency"]
        rnd = {
            "round": r + 1,
            "palyra": p,
            "huey": h,
            "raw_bound": b,
            "palyra_vs_huey": pt["per_s"] / h["per_s"],
            "palyra_drain_vs_raw": pt["drain_per_s"] / b["per_s"],
        }
        rounds.append(rnd)
        print(
            f"round {r + 1}: Palyra {pt['per_s']:.0f}/s (drain {pt['drain_per_s']:.0f}/s,"
            f" cpu {pt['cpu_s']:.2f} s, rss {pt['peak_rss_bytes'] / 2**20:.0f} MiB) |"
            f" huey {h['per_s']:.0f}/s (cpu {h['cpu_s']:.2f} s,"
            f" rss {h['peak_rss_bytes'] / 2**20:.0f} MiB) | ×{rnd['palyra_vs_huey']:.2f} |"
            f" latency p50 {fmt(pl['p50_ms'], ' ms')} p99 {fmt(pl['p99_ms'], ' ms')}"
            f" max {fmt(pl['max_ms'], ' ms')} | raw {b['per_s']:.0f}/s"
            f" (Palyra drain = {rnd['palyra_drain_vs_raw']:.2f} of it)",
            flush=True,
        )

    def col(get: Any) -> list[float]:
        return [float(get(x)) for x in rounds]

    summary = {
        "palyra_per_s": col(lambda x: x["palyra"]["throughput"]["per_s"]),
        "palyra_drain_per_s": col(lambda x: x["palyra"]["throughput"]["drain_per_s"]),
        "huey_per_s": col(lambda x: x["huey"]["per_s"]),
        "ratio_vs_huey": col(lambda x: x["palyra_vs_huey"]),
        "raw_per_s": col(lambda x: x["raw_bound"]["per_s"]),
        "ratio_drain_vs_raw": col(lambda x: x["palyra_drain_vs_raw"]),
        "latency_p50_ms": col(lambda x: x["palyra"]["latency"]["p50_ms"]),
        "latency_p99_ms": col(lambda x: x["palyra"]["latency"]["p99_ms"]),
        "latency_max_ms": col(lambda x: x["palyra"]["latency"]["max_ms"]),
        "palyra_peak_rss_mib": col(lambda x: x["palyra"]["throughput"]["peak_rss_bytes"] / 2**20),
        "palyra_cpu_s": col(lambda x: x["palyra"]["throughput"]["cpu_s"]),
        "huey_peak_rss_mib": col(lambda x: x["huey"]["peak_rss_bytes"] / 2**20),
        "huey_cpu_s": col(lambda x: x["huey"]["cpu_s"]),
    }
    lower_is_worse = {
        "palyra_per_s",
        "palyra_drain_per_s",
        "huey_per_s",
        "ratio_vs_huey",
        "raw_per_s",
        "ratio_drain_vs_raw",
    }
    print("summary (median | worst round):")
    agg = {}
    for key, vals in summary.items():
        m, w = med(vals), worst(vals, higher_is_worse=key not in lower_is_worse)
        agg[key] = {"median": m, "worst": w}
        print(f"  {key:24} {fmt(m, digits=2):>10} | {fmt(w, digits=2)}")
    ratio, p99 = agg["ratio_vs_huey"]["median"], agg["latency_p99_ms"]["median"]
    ratio_ok = ratio is not None and ratio >= GOAL_VS_HUEY
    p99_ok = p99 is not None and p99 <= GOAL_LATENCY_P99_MS
    print(
        f"goals: throughput ≥ {GOAL_VS_HUEY}× huey: {'met' if ratio_ok else 'MISSED'}"
        f" (×{fmt(ratio, digits=2)}); latency p99 ≤ {GOAL_LATENCY_P99_MS} ms:"
        f" {'met' if p99_ok else 'MISSED'}"
        f" ({fmt(p99, ' ms')})"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"queue-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    out.write_text(
        json.dumps(
            {"method": method, "args": vars(args), "rounds": rounds, "summary": agg}, indent=1
        )
    )
    print(f"raw numbers: {out}")


if __name__ == "__main__":
    main()
