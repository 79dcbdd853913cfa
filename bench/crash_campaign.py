"""Crash campaign: kill -9 the whole daemon at random instants, then check SPEC §3's promises.

``every 1s`` routines (concurrency ``allow``, retries off) whose action first appends its tick
and run id to a file (one ``O_APPEND`` line), then sleeps a little so that runs are in flight
when the daemon dies. The daemon is started, left up for a random while, and every one of its
processes is SIGKILLed at once (supervisor and services), ``--kills`` times; a last start
recovers and a graceful stop ends the campaign. Then:

* duplicates: ticks whose action ran more than once (any run record), and runs whose action
  ran more than once (one record spawned twice);
* records: ticks with more than one attempt-1 record (the schema forbids it);
* lost: ticks between a routine's first and last recorded tick with neither a run record nor a
  skip record's ``first_missed``..``last_missed`` range;
* in flight at a kill: runs ``running`` (or leased ``pending`` with a spawn that may have
  happened) in the journal right after the kill, and how the next start ended them (must be
  ``failed`` / ``daemon_crashed``, or — leased and never spawned — back in the queue);
* nothing left running: no ``running`` record at the end, no live process carrying one of the
  campaign's run ids;
* crash-recovery time: ``palyra daemon start`` after a kill until ready (recovery runs before
  the executor reports ready), and until the first run of the new daemon started.

    .venv/bin/python bench/crash_campaign.py                 # 20 routines, 20 kills, ~2 min
    .venv/bin/python bench/crash_campaign.py --routines 200 --kills 30

Not a test (not in CI's default run): it takes minutes and its figures are the point. Raw
numbers go to bench/results/crash_campaign.json (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchlib import cli, now_ms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from palyrad.journal import Journal  # noqa: E402
from palyrad.runtime.home import Home  # noqa: E402
from palyrad.runtime.status import read_status  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routines", type=int, default=20)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--up-min", type=float, default=1.5, help="s up before a kill, at least")
    ap.add_argument("--up-max", type=float, default=4.0, help="s up before a kill, at most")
    ap.add_argument("--action-sleep", default="0.3", help="s each action sleeps after its line")
    ap.add_argument("--max-concurrent", type=int, default=64)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "crash_campaign.json")
    ap.add_argument("--keep", action="store_true", help="keep the temp home")
    return ap.parse_args()


def write_home(home: Home, args: argparse.Namespace, ticks: Path) -> None:
    home.config.write_text(f"[executor]\nmax_concurrent_runs = {args.max_concurrent}\n")
    action = (
        f'printf "%s %s %s\\n" "$PALYRA_ROUTINE_ID" "$PALYRA_SCHEDULED_FOR" "$PALYRA_RUN_ID"'
        f" >> {ticks}; sleep {args.action_sleep}"
    )
    routines = [
        {
            "id": f"r{i:03d}",
            "trigger": {
                "kind": "schedule",
                "schedule": {
                    "type": "every",
                    "interval_ms": 1000,
                    "anchor": "2026-01-01T00:00:00Z",
                },
            },
            "action": {"kind": "command", "shell": action},
            "concurrency": "allow",
            "retry": {"max_attempts": 1},
        }
        for i in range(args.routines)
    ]
    home.definitions.write_text(json.dumps({"schema_version": 1, "routines": routines}))


def daemon_pids(home: Home) -> list[int]:
    st = read_status(home)
    pids = [st.pid] if st.pid else []
    return pids + [p.pid for p in st.processes if p.pid]


def kill_all(home: Home) -> None:
    """SIGKILL the supervisor and every service at once, as a crash of the machine's daemon."""
    pids = daemon_pids(home)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not read_status(home).running and not any(alive(p) for p in pids):
            return
        time.sleep(0.01)
    raise SystemExit("the daemon did not die")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def live_run_ids() -> set[str]:
    """PALYRA_RUN_ID of every live process we can read."""
    out: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        for var in env.split(b"\0"):
            if var.startswith(b"PALYRA_RUN_ID="):
                out.add(var[14:].decode(errors="replace"))
    return out


def all_runs(journal: Journal, routine_ids: list[str]) -> list[Any]:
    runs = []
    for rid in routine_ids:
        runs += journal.runs.for_routine(rid, limit=1_000_000)
    return runs


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="palyra-crash-"))
    home = Home.at(tmp / "home").ensure()
    ticks_file = tmp / "ticks.txt"
    write_home(home, args, ticks_file)
    routine_ids = [f"r{i:03d}" for i in range(args.routines)]
    method = (
        f"Method: {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; {args.routines} routines every 1 s (same anchor), "
        f"concurrency allow, retries off, action = append tick+run id to a file then sleep "
        f"{args.action_sleep} s; [executor] max_concurrent_runs = {args.max_concurrent}; "
        f"{args.kills} kills (SIGKILL of supervisor + all services) after up "
        f"U({args.up_min}, {args.up_max}) s from ready; then one recovery start, 3 s up, "
        f"graceful stop; seed {args.seed}; code under test: "
        f"{Path(sys.modules['palyrad'].__file__ or '').parent}; "
        f"load avg at start {os.getloadavg()[0]:.2f}"
    )
    print(method, flush=True)
    kills: list[dict[str, Any]] = []
    journal: Journal | None = None
    started_all = time.monotonic()
    for k in range(args.kills + 1):
        t0 = time.monotonic()
        t0_ms = now_ms()
        proc = cli(home.root, "daemon", "start")
        if proc.returncode != 0:
            raise SystemExit(f"daemon start failed: {proc.stdout}{proc.stderr}")
        ready_s = time.monotonic() - t0
        if journal is None:
            journal = Journal(home.journal)
        if kills:
            rec = kills[-1]
            rec["recovery_ready_s"] = round(ready_s, 3)
            after = {r.run_id: r for r in all_runs(journal, routine_ids)}
            rec["in_flight_outcome"] = {
                rid: (after[rid].status, after[rid].error_kind, after[rid].lease_owner)
                for rid in rec["in_flight"]
                if rid in after
            }
            # The first run the new daemon started: when the daemon runs again.
            deadline = time.monotonic() + 10
            first = None
            while first is None and time.monotonic() < deadline:
                first = min(
                    (
                        r.started_at_ms
                        for r in all_runs(journal, routine_ids)
                        if r.started_at_ms is not None and r.started_at_ms >= t0_ms
                    ),
                    default=None,
                )
                time.sleep(0.02)
            rec["first_start_after_s"] = None if first is None else (first - t0_ms) / 1000
        if k == args.kills:
            time.sleep(3)
            cli(home.root, "daemon", "stop")
            break
        time.sleep(rng.uniform(args.up_min, args.up_max))
        kill_ms = now_ms()
        kill_all(home)
        runs = all_runs(journal, routine_ids)
        in_flight = {
            r.run_id: [r.status, r.lease_owner]
            for r in runs
            if r.status == "running" or (r.status == "pending" and r.lease_owner is not None)
        }
        kills.append({"kill": k + 1, "at_ms": kill_ms, "in_flight": in_flight})
        print(f"  kill {k + 1:2d}: {len(in_flight)} runs in flight", flush=True)
    assert journal is not None
    elapsed = time.monotonic() - started_all

    # --- the checks ---------------------------------------------------------------------
    runs = all_runs(journal, routine_ids)
    by_id = {r.run_id: r for r in runs}
    lines = [ln.split() for ln in ticks_file.read_text().splitlines() if ln.strip()]
    exec_per_run = Counter(ln[2] for ln in lines if len(ln) == 3)
    exec_per_tick = Counter((ln[0], ln[1]) for ln in lines if len(ln) == 3)
    respawned = {rid: n for rid, n in exec_per_run.items() if n > 1}
    dup_ticks = {f"{t[0]} {t[1]}": n for t, n in exec_per_tick.items() if n > 1}
    records = Counter(
        (r.routine_id, r.scheduled_for_ms)
        for r in runs
        if r.attempt == 1 and r.scheduled_for_ms is not None and r.status != "skipped"
    )
    dup_records = sum(1 for n in records.values() if n > 1)
    lost: list[str] = []
    total_ticks = 0
    by_routine: dict[str, list[Any]] = defaultdict(list)
    for r in runs:
        by_routine[r.routine_id].append(r)
    for rid, rs in by_routine.items():
        covered: set[int] = set()
        for r in rs:
            if r.scheduled_for_ms is not None and r.status != "skipped":
                covered.add(r.scheduled_for_ms)
            if r.first_missed_ms is not None and r.last_missed_ms is not None:
                covered.update(range(r.first_missed_ms, r.last_missed_ms + 1, 1000))
        if not covered:
            continue
        for t in range(min(covered), max(covered) + 1, 1000):
            total_ticks += 1
            if t not in covered:
                lost.append(f"{rid} {t}")
    running_left = [r.run_id for r in runs if r.status == "running"]
    procs_left = sorted(live_run_ids() & set(by_id))
    in_flight_bad: list[dict[str, Any]] = []
    crashed = requeued = 0
    for rec in kills:
        for rid, (status, kind, owner) in rec.get("in_flight_outcome", {}).items():
            was_status, was_owner = rec["in_flight"][rid]
            if status == "failed" and kind == "daemon_crashed":
                crashed += 1
            elif was_status == "pending" and (status != "pending" or owner != was_owner):
                # Leased but provably never spawned: back in the queue (and run since).
                requeued += 1
            else:
                in_flight_bad.append({"run_id": rid, "status": status, "error_kind": kind})
    executed_not_started = [
        rid for rid in exec_per_run if rid in by_id and by_id[rid].started_at_ms is None
    ]
    recov = [k["recovery_ready_s"] for k in kills if "recovery_ready_s" in k]
    first = [k["first_start_after_s"] for k in kills if k.get("first_start_after_s") is not None]
    summary = {
        "kills": len(kills),
        "ticks": total_ticks,
        "run_records": len(runs),
        "action_executions": len(lines),
        "duplicate_ticks": len(dup_ticks),
        "respawned_runs": len(respawned),
        "duplicate_records": dup_records,
        "lost_ticks": len(lost),
        "in_flight_at_kills": sum(len(k["in_flight"]) for k in kills),
        "in_flight_ended_daemon_crashed": crashed,
        "in_flight_requeued_never_spawned": requeued,
        "in_flight_other": len(in_flight_bad),
        "executed_but_never_marked_started": len(executed_not_started),
        "running_records_left": len(running_left),
        "processes_left": len(procs_left),
        "recovery_start_to_ready_s": {
            "median": round(statistics.median(recov), 3) if recov else None,
            "max": round(max(recov), 3) if recov else None,
        },
        "recovery_start_to_first_run_s": {
            "median": round(statistics.median(first), 3) if first else None,
            "max": round(max(first), 3) if first else None,
        },
        "final_statuses": dict(
            Counter(f"{r.status}/{r.error_kind}" if r.error_kind else r.status for r in runs)
        ),
        "elapsed_s": round(elapsed, 1),
    }
    print("figures:")
    for key, value in summary.items():
        print(f"  {key:36s} {value}")
    ok = (
        not dup_ticks
        and not respawned
        and not dup_records
        and not lost
        and not in_flight_bad
        and not running_left
        and not procs_left
    )
    print("verdict:", "PASS" if ok else "FAIL")
    if respawned:
        print("  runs executed more than once:", dict(list(respawned.items())[:10]))
    if in_flight_bad:
        print("  in-flight runs not ended daemon_crashed:", in_flight_bad[:10])
    if lost:
        print("  lost ticks:", lost[:10])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "method": method,
                "summary": summary,
                "kills": kills,
                "respawned": respawned,
                "duplicate_ticks": dup_ticks,
                "lost": lost,
                "in_flight_bad": in_flight_bad,
                "executed_but_never_marked_started": executed_not_started,
                "processes_left": procs_left,
                "home": str(home.root),
            },
            indent=1,
        )
    )
    print(f"raw numbers: {args.out}")
    journal.close()
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
