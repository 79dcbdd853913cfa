"""Benchmark: next-fire computations per second for 1 000 distinct cron expressions.

The mix spans zones with and without DST (one with a 30-minute shift), wildcard and
fixed-time schedules, ``L``/``W``/``#`` and 6-field (seconds) expressions; start instants are
spread over a year so DST days are included. Palyra's engine (``routines.cron``) is measured
warm (parsed once, zone tables built) — which is how the scheduler uses it — and also on a
cold first pass; croniter is measured as a peer on the same expressions it accepts, also
parsed once (``set_current`` + ``get_next``).

    .venv/bin/python bench/schedule_engine.py [--rounds N] [--starts K]

Raw numbers go to bench/results/schedule_engine.json. When bench/definitions_load.py exists
(loading 100 000 routines) and exposes ``run(rounds) -> dict``, its section runs too.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routines.cron import CronExpr, parse_cron  # noqa: E402
from routines.timefmt import get_zone, parse_rfc3339  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "schedule_engine.json"
TARGET_PER_SECOND = 50_000
EXPRESSIONS = 1_000
ZONES = [
    "UTC",
    "Europe/Prague",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Tokyo",
    "Europe/London",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Sao_Paulo",
]
YEAR_START = parse_rfc3339("2026-01-01T00:00:00Z")
YEAR_MS = 365 * 86_400_000


def make_mix(seed: int = 2026, n: int = EXPRESSIONS) -> list[tuple[str, str]]:
    """n distinct (expression, zone) pairs; the kinds are weighted like real schedules."""
    rng = random.Random(seed)
    dows = ["*", "1-5", "MON", "0,6", "SAT,SUN", "2-4", "FRI"]

    def fixed() -> str:
        return f"{rng.randrange(60)} {rng.randrange(24)} * * {rng.choice(dows)}"

    def fixed_dom() -> str:
        return f"{rng.randrange(60)} {rng.randrange(24)} {rng.randint(1, 28)} * *"

    def wildcard() -> str:
        return rng.choice(
            [
                f"*/{rng.choice([2, 5, 10, 15, 20, 30])} * * * *",
                f"{rng.randrange(60)} * * * {rng.choice(dows)}",
                f"*/{rng.choice([5, 10, 15])} {rng.randint(0, 8)}-{rng.randint(9, 23)} * * 1-5",
                f"* {rng.randrange(24)} * * *",
                f"{rng.randrange(60)} */{rng.choice([2, 3, 4, 6])} * * *",
            ]
        )

    def special() -> str:
        m, h = rng.randrange(60), rng.randrange(24)
        return rng.choice(
            [
                f"{m} {h} L * *",
                f"{m} {h} LW * *",
                f"{m} {h} {rng.randint(1, 28)}W * *",
                f"{m} {h} * * {rng.randint(1, 5)}L",
                f"{m} {h} * * {rng.choice(['MON', 'TUE', 'FRI', '3'])}#{rng.randint(1, 4)}",
            ]
        )

    def six() -> str:
        return rng.choice(
            [
                f"{rng.randrange(60)} {rng.randrange(60)} {rng.randrange(24)} * * *",
                f"*/{rng.choice([10, 15, 30])} * * * * *",
                f"{rng.randrange(60)} */{rng.choice([5, 10])} * * * *",
            ]
        )

    kinds = [(fixed, 35), (fixed_dom, 10), (wildcard, 25), (special, 15), (six, 15)]
    makers = [k for k, w in kinds for _ in range(w)]
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    while len(out) < n:
        pair = (rng.choice(makers)(), rng.choice(ZONES))
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def start_instants(k: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [YEAR_START + rng.randrange(YEAR_MS) for _ in range(k)]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def section_palyra(mix: list[tuple[str, str]], starts: list[int], rounds: int) -> dict[str, Any]:
    """Palyra: a cold first pass over every start (parsing, zone transition tables and
    per-month day lists built on the way), then warm rounds (how the scheduler runs)."""
    parse_cron.cache_clear()
    work: list[tuple[CronExpr, tzinfo]] = []
    t0 = time.perf_counter()
    for expr, zone_name in mix:
        work.append((parse_cron(expr), get_zone(zone_name)))
    for after in starts:
        for cron, zone in work:
            cron.next_after(after, zone)
    cold = _rate(len(starts) * len(work), time.perf_counter() - t0)
    per_round = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for after in starts:
            for cron, zone in work:
                cron.next_after(after, zone)
        per_round.append(_rate(len(starts) * len(work), time.perf_counter() - t0))
    return {
        "expressions": len(work),
        "calls_per_round": len(starts) * len(work),
        "cold_first_pass_per_s": cold,
        "rounds_per_s": per_round,
        "median_per_s": statistics.median(per_round),
        "worst_per_s": min(per_round),
    }


def section_croniter(mix: list[tuple[str, str]], starts: list[int], rounds: int) -> dict[str, Any]:
    """croniter as a peer on the expressions it accepts (6-field read seconds-first)."""
    from croniter import croniter

    work: list[tuple[Any, list[datetime]]] = []
    skipped: list[str] = []
    for expr, zone_name in mix:
        zone = get_zone(zone_name)
        dts = [datetime.fromtimestamp(t / 1000, zone) for t in starts]
        try:
            it = croniter(expr, dts[0], second_at_beginning=len(expr.split()) == 6)
            it.get_next(float)
        except Exception:  # croniter rejects LW, nL and friends
            skipped.append(expr)
            continue
        work.append((it, dts))
    for i in range(len(starts)):  # warm-up, like Palyra's cold pass
        for it, dts in work:
            it.set_current(dts[i], force=True)
            it.get_next(float)
    per_round = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(len(starts)):
            for it, dts in work:
                it.set_current(dts[i], force=True)
                it.get_next(float)
        per_round.append(_rate(len(starts) * len(work), time.perf_counter() - t0))
    return {
        "version": importlib.metadata.version("croniter"),
        "expressions": len(work),
        "skipped_unsupported": len(skipped),
        "skipped_examples": sorted(set(skipped))[:5],
        "calls_per_round": len(starts) * len(work),
        "rounds_per_s": per_round,
        "median_per_s": statistics.median(per_round),
        "worst_per_s": min(per_round),
    }


def section_definitions_load(rounds: int) -> dict[str, Any] | None:
    """The 100 000-routine load benchmark, when its module is present and runnable."""
    path = ROOT / "bench" / "definitions_load.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("bench_definitions_load", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = getattr(module, "run", None)
    if run is None:
        return {"skipped": "bench/definitions_load.py has no run(rounds) yet"}
    result: dict[str, Any] = run(rounds)
    return result


def method(rounds: int, starts: int) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "expressions": EXPRESSIONS,
        "starts_per_expression": starts,
        "rounds": rounds,
        "python": platform.python_version(),
        "cronsim": importlib.metadata.version("cronsim"),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=20, help="start instants per expression")
    args = parser.parse_args(argv)

    m = method(args.rounds, args.starts)
    print(
        f"method: {m['cores']} cores ({m['usable_cores']} usable), N={EXPRESSIONS} expressions "
        f"x {args.starts} starts, {args.rounds} rounds (single thread), python {m['python']}, "
        f"cronsim {m['cronsim']}"
    )
    mix = make_mix()
    starts = start_instants(args.starts)
    results: dict[str, Any] = {"method": m}

    palyra = section_palyra(mix, starts, args.rounds)
    results["palyra"] = palyra
    verdict = "ok" if palyra["median_per_s"] >= TARGET_PER_SECOND else "BELOW TARGET"
    print(
        f"palyra   next-fire/s: median {palyra['median_per_s']:,.0f}, worst "
        f"{palyra['worst_per_s']:,.0f} (target {TARGET_PER_SECOND:,}: {verdict}); cold first "
        f"pass incl. parsing and table building {palyra['cold_first_pass_per_s']:,.0f}"
    )
    peer = section_croniter(mix, starts, args.rounds)
    results["croniter"] = peer
    print(
        f"croniter next-fire/s: median {peer['median_per_s']:,.0f}, worst "
        f"{peer['worst_per_s']:,.0f} (croniter {peer['version']}; "
        f"{peer['skipped_unsupported']} of {EXPRESSIONS} expressions unsupported, skipped)"
    )

    load = section_definitions_load(args.rounds)
    if load is not None:
        results["definitions_load"] = load
        print(f"definitions load: {json.dumps(load, sort_keys=True)}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"raw numbers: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
