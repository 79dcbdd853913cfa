"""Benchmark: load + validate a 100 000-routine definitions.json (targets: < 5 s, < 300 MB).

Each round runs in a fresh Python process so that its peak RSS is that of the load alone
(interpreter and imports included). Also measures the error path: the same document with
~100 errors, reported with line/column.

    .venv/bin/python bench/definitions_load.py [--rounds N] [--routines N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 5.0
TARGET_RSS_MB = 300.0

ZONES = [
    "UTC",
    "Europe/Prague",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "America/Chicago",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Africa/Cairo",
    "Europe/Moscow",
    "America/Denver",
    "Asia/Dubai",
    "Europe/Paris",
    "Europe/Madrid",
    "America/Toronto",
    "Asia/Seoul",
    "Atlantic/Reykjavik",
    "America/Halifax",
    "Asia/Kathmandu",
    "Australia/Adelaide",
]
DOWS = ["*", "1-5", "0,6", "MON", "1", "2-4", "SAT,SUN", "5L", "MON#1"]
SECRET_ENV = {f"HOOK_SECRET_{i}": "s3cret" for i in range(20)}
FUTURE = "2031-06-01T09:00:00+02:00"
DISTINCT_CRONS = 3_000

# One "measure" child: load, validate, report time and peak RSS of this process.
_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from routines.definitions_file import load

def peak_rss_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss would include the parent's
    # RSS at fork time on Linux (it survives exec).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

env = json.loads(sys.argv[2])
base = peak_rss_mb()
t0, c0 = time.perf_counter(), time.process_time()
res = load(Path(sys.argv[1]), now_ms=1_700_000_000_000, env=env)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
n = len(res.definitions.routines) if res.definitions else 0
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "rss_mb": peak_rss_mb(),
                  "base_rss_mb": base, "routines": n, "errors": len(res.errors),
                  "warnings": len(res.warnings)}))
"""


def _cron(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.5:
        return f"{rng.randrange(60)} {rng.randrange(24)} * * {rng.choice(DOWS)}"
    if style < 0.7:
        step = rng.choice([5, 10, 15, 20, 30])
        return f"*/{step} {rng.randrange(6, 20)}-{rng.randrange(20, 24)} * * *"
    if style < 0.8:
        dom = rng.choice(["1", "15", "L", "1,15", "LW"])
        return f"{rng.randrange(60)} {rng.randrange(24)} {dom} * *"
    if style < 0.9:
        return rng.choice(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])
    return f"{rng.randrange(60)} {rng.randrange(60)} {rng.randrange(24)} * * {rng.choice(DOWS)}"


def _cron_pool(rng: random.Random, size: int) -> list[str]:
    pool: set[str] = set()
    while len(pool) < size:
        pool.add(_cron(rng))
    return sorted(pool)


def _routine(i: int, rng: random.Random, crons: list[str]) -> dict[str, Any]:
    r: dict[str, Any] = {"id": f"routine-{i:06d}"}
    if rng.random() < 0.6:
        r["name"] = f"Routine number {i}"
    x = rng.random()
    if x < 0.55:
        sched: dict[str, Any] = {"type": "cron", "expr": rng.choice(crons)}
        if rng.random() < 0.8:
            sched["timezone"] = rng.choice(ZONES)
        trigger: dict[str, Any] = {"kind": "schedule", "schedule": sched}
    elif x < 0.70:
        sched = {"type": "every", "interval_ms": rng.choice([1000, 30_000, 60_000, 3_600_000])}
        if rng.random() < 0.7:
            sched["anchor"] = (
                f"2026-03-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:00:00.250Z"
            )
        trigger = {"kind": "schedule", "schedule": sched}
    elif x < 0.74:
        trigger = {"kind": "schedule", "schedule": {"type": "at", "at": FUTURE}}
    elif x < 0.82:
        trigger = {
            "kind": "file_watch",
            "paths": [rng.choice(["/tmp", "~", "/"])],
            "patterns": ["*.csv", "*.json"],
            "events": ["created", "modified"],
            "debounce_ms": 500,
        }
    elif x < 0.87:
        trigger = {"kind": "webhook", "secret_env": rng.choice(list(SECRET_ENV))}
    elif x < 0.92:
        trigger = {"kind": "system_event", "event": rng.choice(["run.failed", "daemon.started"])}
    elif x < 0.96:
        trigger = {"kind": "hook", "hook_id": f"hook-{i % 50}", "event": "push"}
    else:
        trigger = {"kind": "manual"}
    r["trigger"] = trigger
    y = rng.random()
    if y < 0.6:
        action: dict[str, Any] = {
            "kind": "command",
            "argv": ["python3", f"job_{i % 300}.py", "--fast"],
        }
        if rng.random() < 0.5:
            action["cwd"] = "~/jobs"
            action["env"] = {"MODE": "short", "LEVEL": str(i % 7)}
    elif y < 0.75:
        action = {"kind": "command", "shell": f"backup.sh --target /srv/{i % 40} && echo done"}
    elif y < 0.9:
        action = {"kind": "prompt", "prompt": f"Summarize today's inbox for project {i % 97}."}
    else:
        action = {"kind": "skill", "skill_id": f"skill-{i % 20}", "args": ["--verbose"]}
    if rng.random() < 0.3:
        action["timeout_ms"] = 600_000
    r["action"] = action
    if rng.random() < 0.4:
        r["concurrency"] = rng.choice(["forbid", "replace", "queue(1)", "allow", "queue-one"])
    if rng.random() < 0.4:
        r["misfire"] = {"policy": rng.choice(["skip", "catch-up"]), "grace_ms": 60_000}
    if rng.random() < 0.2:
        r["jitter_ms"] = rng.randrange(60_001)
    if rng.random() < 0.3:
        r["retry"] = {"max_attempts": rng.randrange(1, 6), "backoff_ms": 5000}
    if rng.random() < 0.15:
        r["quiet_hours"] = {"start": "22:00", "end": "07:00", "timezone": rng.choice(ZONES)}
    if rng.random() < 0.2:
        r["delivery"] = {"mode": "channel", "channel": "phone", "silent_policy": "failure_only"}
    if rng.random() < 0.5:
        r["tags"] = ["bench", f"group-{i % 13}"]
    return r


def make_document(n: int, seed: int = 7, distinct_crons: int = DISTINCT_CRONS) -> dict[str, Any]:
    rng = random.Random(seed)
    crons = _cron_pool(rng, distinct_crons)
    return {"schema_version": 1, "routines": [_routine(i, rng, crons) for i in range(n)]}


def inject_errors(doc: dict[str, Any], count: int, seed: int = 11) -> None:
    """Break ``count`` routines in assorted ways (each adds exactly one error)."""
    rng = random.Random(seed)
    routines = doc["routines"]
    for k, i in enumerate(rng.sample(range(len(routines)), count)):
        r = routines[i]
        kind = k % 5
        if kind == 0:
            r["trigger"] = {"kind": "schedule", "schedule": {"type": "cron", "expr": "0 25 * * *"}}
        elif kind == 1:
            r["concurency"] = "forbid"
        elif kind == 2:
            r["jitter_ms"] = 4.0
        elif kind == 3:
            r["retry"] = {"max_attempts": 99}
        else:
            r["id"] = routines[(i + 1) % len(routines)]["id"]


def _measure(path: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), json.dumps(SECRET_ENV)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run(rounds: int = 5, routines: int = 100_000) -> dict[str, Any]:
    """Generate the documents, measure ``rounds`` fresh-process loads of each; return figures."""
    with tempfile.TemporaryDirectory(prefix="palyra-bench-") as tmp:
        good = Path(tmp) / "definitions.json"
        doc = make_document(routines)
        good.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        inject_errors(doc, 100)
        bad = Path(tmp) / "broken.json"
        bad.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        del doc
        ok_runs = [_measure(good) for _ in range(rounds)]
        err_runs = [_measure(bad) for _ in range(max(1, rounds // 2))]
        figures = {
            "routines": routines,
            "file_mb": good.stat().st_size / 2**20,
            "load_median_s": statistics.median(r["seconds"] for r in ok_runs),
            "load_worst_s": max(r["seconds"] for r in ok_runs),
            "load_cpu_median_s": statistics.median(r["cpu_seconds"] for r in ok_runs),
            "base_rss_mb": ok_runs[0]["base_rss_mb"],
            "rss_peak_mb": max(r["rss_mb"] for r in ok_runs),
            "loaded_routines": ok_runs[0]["routines"],
            "warnings": ok_runs[0]["warnings"],
            "errors_on_valid": ok_runs[0]["errors"],
            "error_path_median_s": statistics.median(r["seconds"] for r in err_runs),
            "error_path_cpu_median_s": statistics.median(r["cpu_seconds"] for r in err_runs),
            "error_path_rss_mb": max(r["rss_mb"] for r in err_runs),
            "error_path_errors": err_runs[0]["errors"],
        }
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--routines", type=int, default=100_000)
    ap.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    args = ap.parse_args()
    print(
        f"method: {args.routines} generated routines (55% cron from a pool of {DISTINCT_CRONS} "
        f"distinct exprs, {len(ZONES)} zones, every/at/file_watch/webhook/event/hook/manual; "
        "command/prompt/skill actions; policies on a random subset) written as orjson "
        f"INDENT_2; each round is a fresh `{Path(sys.executable).name}` process calling "
        "routines.definitions_file.load(): wall and CPU time of that call (median and worst of "
        f"{args.rounds} rounds), peak RSS = the child's VmHWM (interpreter and imports "
        "included); error path = the same file with 100 injected errors"
    )
    f = run(args.rounds, args.routines)
    if args.out is not None:
        f["load_average_after"] = os.getloadavg()[0]
        args.out.write_text(json.dumps(f, indent=2) + "\n")
    print(
        f"file: {f['file_mb']:.1f} MiB, {f['loaded_routines']} routines loaded, "
        f"{f['errors_on_valid']} errors, {f['warnings']} warnings"
    )
    print(
        f"load+validate: median {f['load_median_s']:.2f} s, worst {f['load_worst_s']:.2f} s, "
        f"CPU median {f['load_cpu_median_s']:.2f} s (target < {TARGET_SECONDS:.0f} s)"
    )
    print(
        f"peak RSS: {f['rss_peak_mb']:.0f} MB, of which {f['base_rss_mb']:.0f} MB before the "
        f"load (target < {TARGET_RSS_MB:.0f} MB)"
    )
    print(
        f"error path: {f['error_path_errors']} errors with positions in "
        f"{f['error_path_median_s']:.2f} s (median; CPU {f['error_path_cpu_median_s']:.2f} s), "
        f"peak RSS {f['error_path_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
