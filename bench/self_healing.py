"""Benchmark: how fast the self-healing process notices a failure and recovers from it.

Two scenarios, each on a fresh daemon in a temp home per round, alternating (A B A B …) so
drift hits both (SPEC §3 "Stuck runs", §6 "Self-healing"; BENCHMARKS.md):

(a) stuck run: ``[self_healing] stale_run_ms = 2000``, ``[executor] heartbeat_interval_ms =
    200`` (``process_silence_ms = 60000``, so the process domain never acts first). A manual
    routine runs ``sleep 300``; once it is ``running`` (and a random 0-1 s later, so the
    freeze falls anywhere in the heartbeat and sweep phases) the executor is SIGSTOPped.
    From the journal: detection = incident ``opened_at_unix_ms`` − the SIGSTOP instant, and
    − the instant the run became stale (its last ``heartbeat_ms`` + ``stale_run_ms``);
    recovery = ``resolved_at_unix_ms`` − ``opened_at_unix_ms`` (the run failed
    ``heartbeat_lost``, its group SIGKILLed, the next sweep finds it no longer stuck).
(b) silent service: ``[self_healing] process_silence_ms = 3000`` (other keys default), a
    routine ``every`` 1 s running ``/bin/true``; the scheduler is SIGSTOPped (random phase as
    above). Detection = opened − SIGSTOP, and − the instant its last journal heartbeat became
    ``process_silence_ms`` old; recovery = resolved − opened (SIGKILL, the supervisor's restart,
    the new scheduler ready and heartbeating, the next sweep). Also: the first tick run
    started after the incident resolved, and the whole outage (resolved − SIGSTOP).

A service is frozen only outside a journal write (a stopped writer would hold SQLite's lock
and block self-healing too; the freeze is retried, and the retries are counted). Median of
the rounds and the worst round, per figure; daemon CPU seconds and peak RSS (psutil:
supervisor + its children; CPU of the processes alive at the window's end, so a killed
scheduler's share is missing) per round window.

    .venv/bin/python bench/self_healing.py              # 5 rounds each, ~2 min
    .venv/bin/python bench/self_healing.py --rounds 1   # smoke run

Raw numbers go to bench/results/self_healing-<date>.json (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from benchlib import cli, cpu_model, daemon_sampler, fmt, med, now_ms, palyra_version, worst

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from palyrad.domain.runs import Run  # noqa: E402
from palyrad.journal import Journal  # noqa: E402
from palyrad.runtime.home import Home  # noqa: E402
from palyrad.runtime.status import read_status  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LOAD_LIMIT = 1.5
STALE_RUN_MS = 2_000
RUN_HEARTBEAT_MS = 200
SILENCE_MS = 3_000
RPC_ANY_PORTS = "[rpc]\npairing_port = 0\nnode_port = 0\n"
STUCK_CONFIG = (
    f"[executor]\nheartbeat_interval_ms = {RUN_HEARTBEAT_MS}\n"
    f"[self_healing]\nstale_run_ms = {STALE_RUN_MS}\nprocess_silence_ms = 60000\n"
)
SILENT_CONFIG = f"[self_healing]\nprocess_silence_ms = {SILENCE_MS}\n"

T = TypeVar("T")


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.01) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


# --- the daemon ------------------------------------------------------------------------------


def write_home(home: Path, config: str, routines: list[dict[str, Any]]) -> None:
    (home / "routines").mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    doc = {"schema_version": 1, "routines": routines}
    (home / "routines" / "definitions.json").write_text(json.dumps(doc))
    (home / "palyra.toml").write_text(RPC_ANY_PORTS + config)


def start(home: Path) -> None:
    res = cli(home, "daemon", "start", timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"palyra daemon start failed: {res.stderr.strip()}")


def stop(home: Path) -> None:
    st = read_status(Home.at(home))
    for pid in [st.pid, *(p.pid for p in st.processes)]:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # never leave a frozen process behind
    cli(home, "daemon", "stop", timeout=120)


def service_pid(home: Path, name: str) -> tuple[int, int]:
    proc = read_status(Home.at(home)).process(name)
    if proc is None or proc.pid is None or proc.state != "running":
        raise RuntimeError(f"{name} is not running")
    return proc.pid, proc.restarts


def write_lock_free(journal: Path, timeout_s: float = 2.0) -> bool:
    db = sqlite3.connect(str(journal), timeout=timeout_s, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def freeze(home: Path, pid: int) -> tuple[int, int]:
    """SIGSTOP ``pid`` outside a journal write: (the instant in ms, retries needed)."""
    for attempt in range(20):
        os.kill(pid, signal.SIGSTOP)
        stopped = now_ms()
        if write_lock_free(Home.at(home).journal):
            return stopped, attempt
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise RuntimeError(f"pid {pid} kept holding the journal's write lock")


def thaw(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def live_members(pgid: int) -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            n += 1
    return n


# --- rounds ----------------------------------------------------------------------------------


def stuck_round(tmp: Path, i: int, warmup_s: float) -> dict[str, Any]:
    home = tmp / f"stuck-{i}"
    sleeper = {
        "id": "sleeper",
        "trigger": {"kind": "manual"},
        "action": {"kind": "command", "argv": ["sleep", "300"]},
    }
    write_home(home, STUCK_CONFIG, [sleeper])
    start(home)
    journal = Journal(Home.at(home).journal)
    sampler = daemon_sampler(home).start()
    executor = 0
    try:
        time.sleep(warmup_s)
        res = cli(home, "routines", "run-now", "sleeper", "--json")
        run_id = json.loads(res.stdout)["run_id"]

        def spawned() -> Run | None:
            r = journal.runs.get(run_id)
            return r if r is not None and r.status == "running" and r.pid is not None else None

        run = wait_for(spawned, 30, "the run to start")
        pgid = run.pid or 0  # the action leads its own process group
        time.sleep(random.uniform(0, 1))  # any phase of heartbeats and sweeps
        executor, _ = service_pid(home, "executor")
        cpu0 = sampler.cpu()
        sampler.in_window = True
        stopped, retries = freeze(home, executor)
        beat = journal.runs.get(run_id)
        assert beat is not None and beat.heartbeat_ms is not None
        last_beat = beat.heartbeat_ms

        def incident() -> Any:
            for inc in journal.incidents.all(100):
                if inc.domain == "run" and inc.subject == run_id and inc.state == "resolved":
                    return inc
            return None

        inc = wait_for(incident, 60, "the run incident to resolve")
        group_gone_at = wait_for(
            lambda: now_ms() if live_members(pgid) == 0 else None, 30, "the group to die"
        )
        final = journal.runs.get(run_id)
        thaw(executor)
        sampler.in_window = False
        cpu = sampler.cpu() - cpu0
        assert final is not None
        attempts = [(a.action, a.outcome, a.at_ms) for a in inc.remediations]
        return {
            "round": i,
            "run_id": run_id,
            "sigstop_ms": stopped,
            "freeze_retries": retries,
            "last_heartbeat_ms": last_beat,
            "stale_at_ms": last_beat + STALE_RUN_MS,
            "opened_ms": inc.opened_ms,
            "resolved_ms": inc.resolved_ms,
            "attempts": attempts,
            "run_status": final.status,
            "run_error_kind": final.error_kind,
            "run_finished_ms": final.finished_at_ms,
            "group_gone_seen_ms": group_gone_at,
            "detect_since_sigstop_ms": inc.opened_ms - stopped,
            "detect_since_stale_ms": inc.opened_ms - (last_beat + STALE_RUN_MS),
            "recover_ms": (inc.resolved_ms or 0) - inc.opened_ms,
            "daemon_cpu_s": round(cpu, 3),
            "peak_rss_mb": round(sampler.peak_window / 2**20, 1),
        }
    finally:
        if executor:
            thaw(executor)
        sampler.stop()
        journal.close()
        stop(home)


def silent_round(tmp: Path, i: int, warmup_s: float) -> dict[str, Any]:
    home = tmp / f"silent-{i}"
    tick = {
        "id": "tick",
        "trigger": {
            "kind": "schedule",
            "schedule": {"type": "every", "interval_ms": 1000, "anchor": "2026-01-01T00:00:00Z"},
        },
        "action": {"kind": "command", "argv": ["/bin/true"]},
    }
    write_home(home, SILENT_CONFIG, [tick])
    start(home)
    journal = Journal(Home.at(home).journal)
    sampler = daemon_sampler(home).start()
    scheduler = 0
    try:
        time.sleep(warmup_s)
        time.sleep(random.uniform(0, 1))
        scheduler, restarts = service_pid(home, "scheduler")
        cpu0 = sampler.cpu()
        sampler.in_window = True
        stopped, retries = freeze(home, scheduler)
        last_beat = journal.heartbeats.all()["scheduler"]
        assert last_beat.pid == scheduler

        def incident() -> Any:
            for inc in journal.incidents.all(100):
                if (
                    inc.domain == "process"
                    and inc.subject == "scheduler"
                    and inc.opened_ms >= stopped
                    and inc.state == "resolved"
                ):
                    return inc
            return None

        inc = wait_for(incident, 60, "the process incident to resolve")
        assert inc.resolved_ms is not None
        thaw(scheduler)
        new_pid, new_restarts = service_pid(home, "scheduler")

        def first_tick() -> Any:
            for r in journal.runs.for_routine("tick", limit=20):
                if r.status == "succeeded" and (r.started_at_ms or 0) > (inc.resolved_ms or 0):
                    return r
            return None

        tick_run = wait_for(first_tick, 30, "a tick after the restart", interval=0.05)
        sampler.in_window = False
        cpu = sampler.cpu() - cpu0
        attempts = [(a.action, a.outcome, a.at_ms) for a in inc.remediations]
        return {
            "round": i,
            "sigstop_ms": stopped,
            "freeze_retries": retries,
            "last_heartbeat_ms": last_beat.heartbeat_ms,
            "silent_at_ms": last_beat.heartbeat_ms + SILENCE_MS,
            "opened_ms": inc.opened_ms,
            "resolved_ms": inc.resolved_ms,
            "attempts": attempts,
            "old_pid": scheduler,
            "new_pid": new_pid,
            "restarts": [restarts, new_restarts],
            "first_tick_started_ms": tick_run.started_at_ms,
            "detect_since_sigstop_ms": inc.opened_ms - stopped,
            "detect_since_silent_ms": inc.opened_ms - (last_beat.heartbeat_ms + SILENCE_MS),
            "recover_ms": inc.resolved_ms - inc.opened_ms,
            "outage_ms": inc.resolved_ms - stopped,
            "first_tick_after_resolved_ms": (tick_run.started_at_ms or 0) - inc.resolved_ms,
            "daemon_cpu_s": round(cpu, 3),
            "peak_rss_mb": round(sampler.peak_window / 2**20, 1),
        }
    finally:
        if scheduler:
            thaw(scheduler)
        sampler.stop()
        journal.close()
        stop(home)


# --- reporting -------------------------------------------------------------------------------


def wait_for_quiet_host(limit: float, max_wait_s: float) -> dict[str, Any]:
    first = os.getloadavg()[0]
    t0 = time.monotonic()
    load = first
    while load > limit and time.monotonic() - t0 < max_wait_s:
        time.sleep(5)
        load = os.getloadavg()[0]
    return {
        "initial": round(first, 2),
        "at_start": round(load, 2),
        "waited_s": round(time.monotonic() - t0, 1),
        "quiet": load <= limit,
    }


def method_line(args: argparse.Namespace, load: dict[str, Any]) -> str:
    return (
        f"method: {os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}; load avg"
        f" (1 min) {load['initial']:.2f} at launch, {load['at_start']:.2f} at start after"
        f" waiting {load['waited_s']:.0f} s (limit {LOAD_LIMIT}); {args.rounds} rounds per"
        f" scenario, alternating, a fresh daemon in a temp home per round, warm-up"
        f" {args.warmup:g} s after ready, then a random 0-1 s before SIGSTOP. (a) stuck run:"
        f" stale_run_ms {STALE_RUN_MS}, executor heartbeat {RUN_HEARTBEAT_MS} ms, sweep every"
        f" {min(1000, STALE_RUN_MS // 4)} ms, process_silence_ms 60000; one manual `sleep 300`"
        f" run, SIGSTOP the executor. (b) silent service: process_silence_ms {SILENCE_MS}"
        f" (journal heartbeat every {max(1, min(5, SILENCE_MS // 4000))} s, sweep every 1000 ms"
        f" at the default stale_run_ms), an every-1s /bin/true routine, SIGSTOP the scheduler."
        f" Times from journal *_unix_ms fields; detection = incident opened − SIGSTOP (and −"
        f" the instant the threshold passed), recovery = resolved − opened. Versions: palyra"
        f" {palyra_version(ROOT)}, Python {platform.python_version()}, SQLite"
        f" {sqlite3.sqlite_version}"
    )


def mw(values: Sequence[float | None]) -> str:
    return f"{fmt(med(values))} / {fmt(worst(values))}"


def summarize(stuck: list[dict[str, Any]], silent: list[dict[str, Any]]) -> dict[str, Any]:
    def fig(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
        values = [r[key] for r in rounds]
        return {"median": med(values), "worst": worst(values), "rounds": values}

    return {
        "stuck_run": {
            k: fig(stuck, k)
            for k in ("detect_since_sigstop_ms", "detect_since_stale_ms", "recover_ms")
        },
        "silent_service": {
            k: fig(silent, k)
            for k in (
                "detect_since_sigstop_ms",
                "detect_since_silent_ms",
                "recover_ms",
                "outage_ms",
                "first_tick_after_resolved_ms",
            )
        },
    }


def stuck_line(r: dict[str, Any]) -> str:
    return (
        f"  round {r['round']} stuck run: detected {r['detect_since_sigstop_ms']} ms after"
        f" SIGSTOP ({r['detect_since_stale_ms']} ms after stale), recovered"
        f" {r['recover_ms']} ms after opening; run {r['run_status']}/{r['run_error_kind']},"
        f" attempts {[(a, o) for a, o, _ in r['attempts']]}, freeze retries"
        f" {r['freeze_retries']} | daemon cpu {r['daemon_cpu_s']:.2f} s, peak rss"
        f" {r['peak_rss_mb']:.0f} MB"
    )


def silent_line(r: dict[str, Any]) -> str:
    return (
        f"  round {r['round']} silent scheduler: detected {r['detect_since_sigstop_ms']} ms"
        f" after SIGSTOP ({r['detect_since_silent_ms']} ms after silent), recovered"
        f" {r['recover_ms']} ms after opening (outage {r['outage_ms']} ms), first tick"
        f" {r['first_tick_after_resolved_ms']} ms after; pid {r['old_pid']}→{r['new_pid']},"
        f" restarts {r['restarts'][0]}→{r['restarts'][1]}, attempts"
        f" {[(a, o) for a, o, _ in r['attempts']]}, freeze retries {r['freeze_retries']} |"
        f" daemon cpu {r['daemon_cpu_s']:.2f} s, peak rss {r['peak_rss_mb']:.0f} MB"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=float, default=3.0, help="s after the daemon is ready")
    ap.add_argument("--load-wait", type=float, default=120.0, help="s to wait for a quiet host")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="raw JSON (default bench/results/self_healing-<date>.json)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    random.seed(args.seed)
    load = wait_for_quiet_host(LOAD_LIMIT, args.load_wait)
    method = method_line(args, load)
    print(method, flush=True)
    out = Path(args.out or RESULTS / f"self_healing-{datetime.now(UTC).date().isoformat()}.json")
    stuck: list[dict[str, Any]] = []
    silent: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "method": method,
        "load": load,
        "config": vars(args),
        "started_at": datetime.now(UTC).isoformat(),
        "stuck_run_rounds": stuck,
        "silent_service_rounds": silent,
    }
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="palyra-bench-sh-") as tmp:
            for i in range(1, args.rounds + 1):
                stuck.append(stuck_round(Path(tmp), i, args.warmup))
                print(stuck_line(stuck[-1]), flush=True)
                silent.append(silent_round(Path(tmp), i, args.warmup))
                print(silent_line(silent[-1]), flush=True)
    finally:
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        result["summary"] = summarize(stuck, silent)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    s, p = result["summary"]["stuck_run"], result["summary"]["silent_service"]

    def row(label: str, f: dict[str, Any]) -> str:
        return f"  {label:<44} {mw(f['rounds'])}"

    print("\nmedian / worst of the rounds (ms):")
    print("(a) stuck run")
    print(row("detection since SIGSTOP", s["detect_since_sigstop_ms"]))
    print(row("detection since the run went stale", s["detect_since_stale_ms"]))
    print(row("recovery (resolved − opened)", s["recover_ms"]))
    print("(b) silent scheduler")
    print(row("detection since SIGSTOP", p["detect_since_sigstop_ms"]))
    print(row("detection since it went silent", p["detect_since_silent_ms"]))
    print(row("recovery (resolved − opened)", p["recover_ms"]))
    print(row("outage (resolved − SIGSTOP)", p["outage_ms"]))
    print(row("first tick after resolved", p["first_tick_after_resolved_ms"]))
    print(f"\nraw numbers: {out} (elapsed {result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
