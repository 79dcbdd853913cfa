"""Benchmark: ``palyra doctor`` on a healthy home with 10 000 routines (budget: 1 s for the
whole run, Python start excluded).

The home: the 10 000 routines of ``bench/definitions_load.py``'s generator (cron, every, at,
file_watch, webhook, event, hook and manual triggers; command, prompt and skill actions;
policies on a random subset), with the schedules moved to once a day / once a year, the file
watches to an empty folder of the bench and the system events to one nobody emits, so
nothing runs while it is measured (runs would compete with doctor for the two cores); ``[agent]
command = ["cat"]`` (prompt routines need a runner to be healthy); optionally ``--runs`` run
records of history, inserted into the journal before the start (default 100 000: ten per
routine, a journal of a home that has been running a while). A real palyrad is started once,
so the journal holds the applied definitions' hash and every routine's state; then
``run_doctor(home)`` is timed in-process, ``--rounds`` times with the daemon running and as
many with it stopped (the applied-hash shortcut still answers: the journal keeps the state).
A first, cold call (lazy imports: cryptography, the validator) is reported apart. Per-check
times come from the same rounds. Also reported: ``palyra doctor --json`` end to end (a fresh
process, Python start included), as the operator runs it. Last, outside the budget: the
same with an edit the daemon has not applied (one byte appended), where doctor validates
the 10 000 routines itself.

    .venv/bin/python bench/doctor.py [--routines N] [--runs N] [--rounds N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from benchlib import cli, cpu_model, fmt, palyra_version
from definitions_load import SECRET_ENV, make_document

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from palyrad.domain.runs import Run, new_ulid  # noqa: E402
from palyrad.journal import STATE_DEFINITIONS_APPLIED, Journal  # noqa: E402
from palyrad.ops.doctor import CHECK_IDS, DoctorReport, run_doctor  # noqa: E402
from palyrad.ops.doctor.context import DoctorContext  # noqa: E402
from palyrad.ops.doctor.registry import CHECKS  # noqa: E402
from palyrad.runtime.clock import SYSTEM_CLOCK  # noqa: E402
from palyrad.runtime.home import Home  # noqa: E402

BUDGET_S = 1.0
DAY_MS = 86_400_000


def quiet_document(n: int, watch_dir: Path) -> dict[str, Any]:
    """The generator's routines, with nothing that fires during the measurement."""
    doc = make_document(n)
    for r in doc["routines"]:
        trigger = r["trigger"]
        if trigger["kind"] == "schedule":
            sched = trigger["schedule"]
            if sched["type"] == "cron":
                sched["expr"] = "0 3 1 1 *"
            elif sched["type"] == "every":
                sched["interval_ms"] = DAY_MS
                sched.pop("anchor", None)  # first tick a day after the daemon first sees it
        elif trigger["kind"] == "file_watch":
            trigger["paths"] = [str(watch_dir)]
        elif trigger["kind"] == "system_event":
            trigger["event"] = "operator.bench-never"  # not daemon.started / run.failed
    return doc


def add_history(home: Home, routine_ids: list[str], count: int) -> None:
    """``count`` finished runs spread over the routines, as days of history leave them."""
    now = time.time_ns() // 1_000_000
    journal = Journal(home.journal)
    try:
        batch: list[Run] = []
        for i in range(count):
            run_id = new_ulid()
            t = now - DAY_MS + i * (DAY_MS // max(1, count))
            batch.append(
                Run(
                    run_id=run_id,
                    chain_id=run_id,
                    routine_id=routine_ids[i % len(routine_ids)],
                    attempt=1,
                    trigger_kind="schedule",
                    status="succeeded",
                    queued_at_ms=t,
                    scheduled_for_ms=t,
                    fire_at_ms=t,
                    started_at_ms=t + 2,
                    finished_at_ms=t + 40,
                    exit_code=0,
                    output_tail="done\n",
                    log_path=str(home.run_log(run_id)),
                    definition_hash="sha256:" + "0" * 64,
                )
            )
            if len(batch) == 5_000:
                journal.runs.insert_many(batch)
                batch = []
        if batch:
            journal.runs.insert_many(batch)
    finally:
        journal.close()


def timed_rounds(home: Home, rounds: int) -> dict[str, Any]:
    """``rounds`` timed ``run_doctor`` calls, and per-check times from the same rounds."""
    totals: list[float] = []
    per_check: dict[str, list[float]] = {c: [] for c in CHECK_IDS}
    reports: list[DoctorReport] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        reports.append(run_doctor(home))
        totals.append(time.perf_counter() - t0)
        ctx = DoctorContext(home, clock=SYSTEM_CLOCK)
        try:
            for check in CHECKS:
                t = time.perf_counter()
                check.run(ctx)
                per_check[check.check_id].append(time.perf_counter() - t)
        finally:
            ctx.close()
    last = reports[-1]
    return {
        "median_s": statistics.median(totals),
        "worst_s": max(totals),
        "rounds_s": totals,
        "per_check_median_ms": {k: statistics.median(v) * 1000 for k, v in per_check.items()},
        "ok": last.ok,
        "statuses": {c.check_id: c.status.value for c in last.checks},
        "not_ok": [f"{c.check_id}: {c.message}" for c in last.checks if c.status.value != "ok"],
    }


def compile_bytecode() -> None:
    """Compile the project's bytecode before the CLI samples (as dispatch.py does): a
    regular install has it; this sandbox sets PYTHONDONTWRITEBYTECODE=1, which would make
    every sample of the editable dev install recompile every module it imports."""
    pkgs = [str(ROOT / p) for p in ("palyra_cli", "palyrad", "routines", "certs", "palyra_proto")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *pkgs], check=True)


def cli_rounds(home: Path, rounds: int) -> dict[str, Any]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        proc = cli(home, "doctor", "--json")
        times.append(time.perf_counter() - t0)
        orjson.loads(proc.stdout)
    return {"median_s": statistics.median(times), "worst_s": max(times), "rounds_s": times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--routines", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "doctor.json")
    args = ap.parse_args()
    print(
        f"method: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, palyra {palyra_version(ROOT)}; a home with"
        f" {args.routines} generated routines (definitions_load generator, schedules moved to"
        f" daily/yearly, file watches to an empty folder) and {args.runs} run records, a real"
        " palyrad started once; run_doctor(home) in-process, wall time per call: median and"
        f" worst of {args.rounds} rounds with the daemon running, then {args.rounds} with it"
        " stopped (a cold first call reported apart); `palyra doctor --json` end to end"
        f" (Python start included; project bytecode compiled first) {args.rounds} times each;"
        f" budget {BUDGET_S:.0f} s"
    )
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="palyra-doctor-bench-") as tmp:
        root = Path(tmp) / "home"
        home = Home(root).ensure()
        watch_dir = Path(tmp) / "watched"
        watch_dir.mkdir()
        home.config.write_text(
            '[rpc]\npairing_port = 0\nnode_port = 0\n[agent]\ncommand = ["cat"]\n'
        )
        doc = quiet_document(args.routines, watch_dir)
        home.definitions.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        if args.runs:
            add_history(home, [r["id"] for r in doc["routines"]], args.runs)
        os.environ.update(SECRET_ENV)  # the webhook routines' secrets, for the daemon too
        started = cli(root, "daemon", "start", "--timeout", "120")
        if started.returncode != 0:
            raise SystemExit(f"palyrad did not start: {started.stderr}")
        try:
            probe = Journal(home.journal, readonly=True)
            applied = orjson.loads(probe.state.get(STATE_DEFINITIONS_APPLIED) or "{}")
            probe.close()
            assert applied.get("count") == args.routines, applied
            journal_mb = home.journal.stat().st_size / 2**20
            t0 = time.perf_counter()
            cold = run_doctor(home)
            cold_s = time.perf_counter() - t0
            running = timed_rounds(home, args.rounds)
            running_cli = cli_rounds(root, args.rounds)
        finally:
            cli(root, "daemon", "stop")
        stopped = timed_rounds(home, args.rounds)
        stopped_cli = cli_rounds(root, args.rounds)
        file_mb = home.definitions.stat().st_size / 2**20
        # An edit the daemon has not applied: no shortcut, doctor validates every routine.
        with open(home.definitions, "ab") as f:
            f.write(b"\n")
        edited = timed_rounds(home, args.rounds)
    figures = {
        "routines": args.routines,
        "runs": args.runs,
        "definitions_mb": file_mb,
        "journal_mb": journal_mb,
        "cold_first_call_s": cold_s,
        "cold_ok": cold.ok,
        "running": running,
        "stopped": stopped,
        "cli_running": running_cli,
        "cli_stopped": stopped_cli,
        "stopped_unapplied_edit": edited,
        "budget_s": BUDGET_S,
        "load_average_after": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"home: definitions.json {file_mb:.1f} MiB, journal {journal_mb:.1f} MiB;"
        f" cold first call {fmt(cold_s * 1000, ' ms')}"
    )
    for name, r, c in (("running", running, running_cli), ("stopped", stopped, stopped_cli)):
        slowest = sorted(r["per_check_median_ms"].items(), key=lambda kv: -kv[1])[:4]
        print(
            f"daemon {name}: run_doctor median {r['median_s'] * 1000:.0f} ms, worst"
            f" {r['worst_s'] * 1000:.0f} ms (budget {BUDGET_S * 1000:.0f} ms:"
            f" {'met' if r['worst_s'] <= BUDGET_S else 'MISSED'}); `palyra doctor --json`"
            f" median {c['median_s'] * 1000:.0f} ms, worst {c['worst_s'] * 1000:.0f} ms;"
            " slowest checks (median): " + ", ".join(f"{k} {v:.0f} ms" for k, v in slowest)
        )
        if r["not_ok"]:
            print("  not ok: " + "; ".join(r["not_ok"]))
    print(
        f"daemon stopped, an edit it has not applied (validated in full; outside the budget,"
        f" which is for a healthy home): median {edited['median_s'] * 1000:.0f} ms, worst"
        f" {edited['worst_s'] * 1000:.0f} ms; definitions check median"
        f" {edited['per_check_median_ms']['definitions']:.0f} ms"
    )
    print(f"raw figures: {args.out}")


if __name__ == "__main__":
    main()
