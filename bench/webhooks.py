"""Benchmark: the webhook listener — accepted requests/s beside a bare HTTP server on the same
stack, and POST → run started latency.

Each round starts a fresh daemon in a temp home (``[rpc] pairing_port = 0, node_port = 0``,
``[webhooks] port = 0, rate_per_minute = 1000000``) with ``--clients`` webhook routines
``load-<i>`` (``concurrency: forbid``, the default: a trigger that arrives while the routine's
previous run is active is decided ``skipped``; their action is ``--load-action``, by default
``sleep 600`` so the load measures the ingress, or ``true`` so that every trigger finding its
routine idle also spawns a process) and ``--lat-routines`` routines ``lat-<i>``
(``concurrency: allow``: every trigger starts a run, action ``["true"]``), all with
``secret_env`` (set in this process's environment before ``palyra daemon start``; the daemon
inherits it). It waits ``--warmup`` s
after ready, then:

1. **Throughput.** ``--clients`` threads, one keep-alive ``http.client.HTTPConnection`` each,
   send ``POST /hooks/load-<i>`` (client i → routine i) back to back for ``--seconds``: a
   ~200-byte JSON body (a fresh ``seq`` per request) signed with ``X-Palyra-Signature``
   (``webhook_signatures.sign``). Every answer must be 202; others are counted and printed.
   The 202 bodies' ``status`` is tallied (``pending``: a run was started / queued;
   ``skipped``: forbid). **Peer**: ``HttpServer`` (the listener's own transport: asyncio + h11,
   default ``Limits``) with a handler that reads the body, checks the HMAC with
   ``webhook_signatures.verify`` and answers ``202 {"run_id": null, "status": "pending",
   "error_kind": null}`` without a journal, in a child process (multiprocessing spawn, started
   once for all rounds) so it does not share the GIL with the clients. Same client code, same
   bodies, same secret. The sides take turns (daemon, bare) within each round. Reported:
   accepted/s, answer latency p50/p99, ours ÷ bare (goal ≥ 50 %), server CPU seconds.
2. **POST → run started.** An open-loop sender: request k is due at t0 + k/``--rate`` s
   (``--lat-seconds`` s), sent by the first free one of ``--senders`` threads (keep-alive
   connections), to ``lat-<k mod lat-routines>``. The wall clock in ms just before the request
   is written is the send instant; latency = the run's ``started_at_unix_ms`` (journal) − it.
   Also the POST → 202 answer latency and how late the sender was against its schedule.
   Goal: p99 ≤ 50 ms at 50 requests/s.
3. psutil: peak RSS summed over the daemon's processes (supervisor + its services) and their
   CPU seconds over each phase; the bare server's own.

Figures are the median of the per-round figures beside the worst round. After each round the
daemon log's ERROR / WARNING / Traceback lines are counted and the first few printed.

    .venv/bin/python bench/webhooks.py              # 5 rounds, ~2-3 min
    .venv/bin/python bench/webhooks.py --rounds 1   # smoke run

Raw numbers go to bench/results/webhooks-<date>.json (``--out``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    worst,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
SECRET_ENV = "PALYRA_BENCH_WEBHOOK_SECRET"
SECRET = b"bench-webhook-secret-0123456789abcdef"
GOAL_RATIO = 0.50
GOAL_STARTED_P99_MS = 50.0
BODY_PAD = "x" * 120


def body_for(seq: int) -> bytes:
    """A ~200-byte JSON body, different every request."""
    doc = {"event": "push", "seq": seq, "ref": "refs/heads/main", "pad": BODY_PAD}
    return json.dumps(doc, separators=(",", ":")).encode()


# --- the bare peer (child process) -----------------------------------------------------------


def bare_child(conn: Any) -> None:
    """Serve the bare peer until told to stop; report the bound port first."""
    from palyrad.runtime.webhook_signatures import (
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        verify,
    )
    from palyrad.services.node_rpc.webhooks.http_server import (
        Body,
        HttpServer,
        RequestHead,
        Response,
    )

    async def handler(head: RequestHead, body: Body) -> Response:
        data = await body.read(1024 * 1024)
        verdict = verify(
            SECRET,
            data,
            head.headers.get(SIGNATURE_HEADER.lower()),
            head.headers.get(TIMESTAMP_HEADER.lower()),
            time.time(),
            False,
        )
        if not verdict.ok:
            return Response(401, {"error": "bad signature"})
        return Response(202, {"run_id": None, "status": "pending", "error_kind": None})

    server = HttpServer(handler)
    _, port = server.start("127.0.0.1", 0)
    conn.send(port)
    conn.recv()  # anything: stop
    server.stop()


class BarePeer:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=bare_child, args=(child_conn,), daemon=True)
        self.proc.start()
        if not self._conn.poll(30):
            raise RuntimeError("the bare server did not start in 30 s")
        self.port = int(self._conn.recv())
        assert self.proc.pid is not None
        self.sampler = ProcSampler(lambda: [self.pid], names={self.pid: "bare"}).start()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def stop(self) -> None:
        self.sampler.stop()
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# --- the client (the same code for both servers) ---------------------------------------------


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    codes: collections.Counter[int] = field(default_factory=collections.Counter)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[str] = field(default_factory=list)  # first few non-202 answers

    def merge(self, other: Tally) -> None:
        self.latencies_ms += other.latencies_ms
        self.codes.update(other.codes)
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.samples += other.samples[: max(0, 5 - len(self.samples))]


class Client:
    """One keep-alive connection; ``post`` signs and sends one body, returns the answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        from palyrad.runtime.webhook_signatures import SIGNATURE_HEADER, sign

        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(SECRET, body),
        }
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("POST", path, body, headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def record(tally: Tally, status: int, data: bytes, ms: float) -> str | None:
    """Count one answer; its run_id when it was a 202 with one."""
    tally.latencies_ms.append(ms)
    tally.codes[status] += 1
    if status != 202:
        if len(tally.samples) < 5:
            tally.samples.append(f"{status} {data[:200]!r}")
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        tally.statuses["<not json>"] += 1
        return None
    tally.statuses[str(doc.get("status"))] += 1
    if doc.get("error_kind"):
        tally.statuses[f"error_kind={doc['error_kind']}"] += 1
    rid = doc.get("run_id")
    return str(rid) if rid else None


def closed_loop(port: int, paths: list[str], seconds: float) -> tuple[Tally, float]:
    """``len(paths)`` threads, one connection each, thread i posting to paths[i] back to
    back for ``seconds``. The tally and the elapsed wall seconds."""
    clients = [Client(port) for _ in paths]
    for c, p in zip(clients, paths, strict=True):  # connect + one warm request, untimed
        with contextlib.suppress(Exception):
            c.post(p, body_for(-1))
    tallies = [Tally() for _ in paths]
    barrier = threading.Barrier(len(paths) + 1)
    deadline = [0.0]

    def run(i: int) -> None:
        c, tally, path = clients[i], tallies[i], paths[i]
        seq = i * 10_000_000
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            body = body_for(seq)
            seq += 1
            t = time.perf_counter()
            try:
                status, data = c.post(path, body)
            except Exception as exc:
                tally.errors[type(exc).__name__] += 1
                continue
            record(tally, status, data, (time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(paths))]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    total = Tally()
    for t in tallies:
        total.merge(t)
    return total, elapsed


def throughput_figures(tally: Tally, elapsed: float) -> dict[str, Any]:
    ok = tally.codes.get(202, 0)
    return {
        "requests": sum(tally.codes.values()),
        "accepted": ok,
        "elapsed_s": round(elapsed, 3),
        "per_s": ok / elapsed,
        "p50_ms": pct(tally.latencies_ms, 50),
        "p99_ms": pct(tally.latencies_ms, 99),
        "max_ms": max(tally.latencies_ms) if tally.latencies_ms else None,
        "non_202": {str(k): v for k, v in tally.codes.items() if k != 202},
        "non_202_samples": tally.samples,
        "errors": dict(tally.errors),
        "statuses": dict(tally.statuses),
    }


@dataclass
class Sent:
    due_ms: float  # the schedule's instant (perf ms)
    sent_unix_ms: int  # wall clock just before the request was written
    late_ms: float  # sent − due
    answer_ms: float
    status: int
    run_id: str | None


def open_loop(
    port: int, paths: list[str], rate: float, seconds: float, senders: int
) -> tuple[list[Sent], Tally]:
    """Request k due at t0 + k/rate, to paths[k mod len]; the first free sender sends it."""
    local = threading.local()
    tally = Tally()
    lock = threading.Lock()
    n = int(rate * seconds)

    def client() -> Client:
        c: Client | None = getattr(local, "client", None)
        if c is None:
            c = local.client = Client(port)
        return c

    def send(k: int, due: float) -> Sent:
        c = client()
        now = time.perf_counter()
        late = (now - due) * 1000
        sent = now_ms()
        t = time.perf_counter()
        try:
            status, data = c.post(paths[k % len(paths)], body_for(k))
        except Exception as exc:
            with lock:
                tally.errors[type(exc).__name__] += 1
            return Sent(due * 1000, sent, late, float("nan"), 0, None)
        ms = (time.perf_counter() - t) * 1000
        with lock:
            rid = record(tally, status, data, ms)
        return Sent(due * 1000, sent, late, ms, status, rid)

    # Plain threads, each with its own keep-alive connection, fed from one queue.
    jobs: collections.deque[tuple[int, float] | None] = collections.deque()
    ready = threading.Semaphore(0)
    results: list[Sent | None] = [None] * n

    def worker() -> None:
        with contextlib.suppress(Exception):  # open the connection first, untimed
            client().post(paths[0], body_for(-2))
        warm.release()
        while True:
            ready.acquire()
            job = jobs.popleft()
            if job is None:
                return
            results[job[0]] = send(*job)

    warm = threading.Semaphore(0)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(senders)]
    for t in threads:
        t.start()
    for _ in threads:
        warm.acquire()
    t0 = time.perf_counter() + 0.05
    for k in range(n):
        due = t0 + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        jobs.append((k, due))
        ready.release()
    for _ in threads:
        jobs.append(None)
        ready.release()
    for t in threads:
        t.join()
    return [r for r in results if r is not None], tally


# --- the daemon ------------------------------------------------------------------------------


def routine(rid: str, concurrency: str, argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "trigger": {"kind": "webhook", "secret_env": SECRET_ENV},
        "action": {"kind": "command", "argv": argv or ["true"]},
        "concurrency": concurrency,
    }


# --load-action: what the throughput routines run. "sleep" (the default) measures the ingress:
# each routine's first trigger starts `sleep 600` and every later one is decided `skipped`
# (forbid), as a webhook storm on a busy routine is. "true" also measures the executor
# spawning a process for every trigger that finds its routine idle (on 2 cores the spawns
# compete with the listener for the CPU).
LOAD_ACTIONS = {"sleep": ["sleep", "600"], "true": ["true"]}


def write_home(home: Path, clients: int, lat_routines: int, load_action: str = "sleep") -> Path:
    from palyrad.runtime.home import Home

    Home.at(home).ensure()
    (home / "routines").mkdir(parents=True, exist_ok=True)
    argv = LOAD_ACTIONS[load_action]
    routines = [routine(f"load-{i}", "forbid", argv) for i in range(clients)]
    routines += [routine(f"lat-{i}", "allow") for i in range(lat_routines)]
    defs = home / "routines" / "definitions.json"
    defs.write_text(json.dumps({"schema_version": 1, "routines": routines}, indent=1))
    (home / "palyra.toml").write_text(
        "[rpc]\npairing_port = 0\nnode_port = 0\n[webhooks]\nport = 0\nrate_per_minute = 1000000\n"
        "[executor]\nmax_concurrent_runs = 64\n"
    )
    return defs


def start_daemon(home: Path) -> int:
    res = cli(home, "daemon", "start", timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"palyra daemon start failed: {res.stdout}\n{res.stderr}")
    deadline = time.monotonic() + 30
    while True:
        st = json.loads(cli(home, "daemon", "status", "--json").stdout)
        hook = (st.get("endpoints") or {}).get("webhook")
        if hook:
            return int(str(hook).rsplit(":", 1)[1])
        if time.monotonic() > deadline:
            raise RuntimeError(f"no webhook endpoint in daemon status: {st}")
        time.sleep(0.2)


def log_problems(home: Path) -> tuple[int, list[str], int]:
    """The daemon log's warning/error lines (count, first few) and its total line count."""
    path = home / "logs" / "palyrad.log"
    if not path.exists():
        return 0, [], 0
    lines = path.read_text(errors="replace").splitlines()
    bad = []
    for line in lines:
        try:
            level = str(json.loads(line).get("level", ""))
        except ValueError:
            level = "?"
        if level in ("warning", "error", "critical", "?") or "Traceback" in line:
            bad.append(line.strip())
    return len(bad), bad[:5], len(lines)


def wait_started(journal: Any, run_ids: list[str], timeout_s: float) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    deadline = time.monotonic() + timeout_s
    left = list(run_ids)
    while True:
        still = []
        for rid in left:
            run = journal.runs.get(rid)
            if run is not None and run.started_at_ms is not None:
                out[rid] = int(run.started_at_ms)
            else:
                still.append(rid)
        left = still
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for rid in left:
        out[rid] = None
    return out


def measure_cpu(
    sampler: ProcSampler, fn: Callable[[], Any]
) -> tuple[Any, float, int, dict[str, float]]:
    """``fn()``, the CPU seconds of the sampled processes over it (total and by process) and
    their peak summed RSS while it ran."""
    sampler.peak_window = 0
    sampler.in_window = True
    cpu0 = sampler.cpu_by_process()
    try:
        got = fn()
    finally:
        cpu1 = sampler.cpu_by_process()
        sampler.in_window = False
    sampler.peak_window = max(sampler.peak_window, sampler.rss())
    by = {k: round(v - cpu0.get(k, 0.0), 3) for k, v in cpu1.items()}
    return got, sum(by.values()), sampler.peak_window, by


def one_round(args: argparse.Namespace, i: int, tmp: Path, bare: BarePeer) -> dict[str, Any]:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home

    home = tmp / f"round-{i}"
    write_home(home, args.clients, args.lat_routines, args.load_action)
    sampler: ProcSampler | None = None
    journal: Journal | None = None
    try:
        port = start_daemon(home)
        sampler = daemon_sampler(home).start()
        journal = Journal(Home.at(home).journal)
        _, idle_cpu, _, _ = measure_cpu(sampler, lambda: time.sleep(args.warmup))
        load_paths = [f"/hooks/load-{c}" for c in range(args.clients)]
        # 1. throughput: the daemon, then the bare peer
        (tally, elapsed), d_cpu, d_rss, d_by = measure_cpu(
            sampler, lambda: closed_loop(port, load_paths, args.seconds)
        )
        daemon_tp = throughput_figures(tally, elapsed)
        daemon_tp.update(cpu_s=round(d_cpu, 3), peak_rss_bytes=d_rss, cpu_by_process_s=d_by)
        (btally, belapsed), b_cpu, b_rss, _ = measure_cpu(
            bare.sampler, lambda: closed_loop(bare.port, load_paths, args.seconds)
        )
        bare_tp = throughput_figures(btally, belapsed)
        bare_tp.update(cpu_s=round(b_cpu, 3), peak_rss_bytes=b_rss)
        time.sleep(1.0)  # let the last load runs end
        # 2. POST -> run started, open loop
        lat_paths = [f"/hooks/lat-{c}" for c in range(args.lat_routines)]
        (sent, ltally), l_cpu, l_rss, l_by = measure_cpu(
            sampler,
            lambda: open_loop(port, lat_paths, args.rate, args.lat_seconds, args.senders),
        )
        ids = [s.run_id for s in sent if s.run_id]
        started = wait_started(journal, ids, 15.0)
        lat = [
            float(started[s.run_id] - s.sent_unix_ms)  # type: ignore[operator]
            for s in sent
            if s.run_id and started.get(s.run_id) is not None
        ]
        answers = [s.answer_ms for s in sent if s.status == 202]
        lates = [s.late_ms for s in sent]
        latency = {
            "requests": len(sent),
            "non_202": {str(k): v for k, v in ltally.codes.items() if k != 202},
            "non_202_samples": ltally.samples,
            "errors": dict(ltally.errors),
            "statuses": dict(ltally.statuses),
            "not_started": sum(1 for v in started.values() if v is None),
            "started_p50_ms": pct(lat, 50),
            "started_p90_ms": pct(lat, 90),
            "started_p99_ms": pct(lat, 99),
            "started_max_ms": max(lat) if lat else None,
            "answer_p50_ms": pct(answers, 50),
            "answer_p99_ms": pct(answers, 99),
            "answer_max_ms": max(answers) if answers else None,
            "sender_late_p99_ms": pct(lates, 99),
            "sender_late_max_ms": max(lates) if lates else None,
            "cpu_s": round(l_cpu, 3),
            "cpu_by_process_s": l_by,
            "peak_rss_bytes": l_rss,
            "samples_ms": lat,
        }
        n_bad, bad, n_lines = log_problems(home)
        return {
            "round": i,
            "daemon": daemon_tp,
            "bare": bare_tp,
            "ratio": daemon_tp["per_s"] / bare_tp["per_s"] if bare_tp["per_s"] else None,
            "latency": latency,
            "idle_cpu_per_s": round(idle_cpu / args.warmup, 3) if args.warmup else None,
            "log_problems": n_bad,
            "log_lines": n_lines,
            "log_samples": bad,
        }
    finally:
        if journal is not None:
            journal.close()
        if sampler is not None:
            sampler.stop()
        cli(home, "daemon", "stop", timeout=120)


# --- reporting -------------------------------------------------------------------------------


def per_request_ms(cpu_s: float | None, n: int) -> float | None:
    return None if cpu_s is None or not n else cpu_s * 1000 / n


def top(by: dict[str, float]) -> str:
    parts = sorted(by.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v:.2f}" for k, v in parts if v >= 0.01) or "—"


def round_lines(r: dict[str, Any]) -> list[str]:
    d, b, lt = r["daemon"], r["bare"], r["latency"]

    def side(name: str, x: dict[str, Any]) -> str:
        return (
            f"{name} {x['per_s']:.0f}/s ({x['accepted']} × 202 in {x['elapsed_s']:.1f} s,"
            f" p50 {fmt(x['p50_ms'], ' ms', 1)} p99 {fmt(x['p99_ms'], ' ms', 1)}"
            f" max {fmt(x['max_ms'], ' ms', 1)}, cpu {x['cpu_s']:.2f} s,"
            f" rss {x['peak_rss_bytes'] / 2**20:.0f} MiB)"
        )

    lines = [
        f"round {r['round']}: {side('daemon', d)} | {side('bare', b)} |"
        f" ratio {fmt(r['ratio'], digits=2)}",
        f"  daemon answers {d['statuses']}, non-202 {d['non_202'] or 0}, errors"
        f" {d['errors'] or 0}; bare non-202 {b['non_202'] or 0}, errors {b['errors'] or 0}",
        f"  POST→started p50 {fmt(lt['started_p50_ms'], ' ms')} p99"
        f" {fmt(lt['started_p99_ms'], ' ms')} max {fmt(lt['started_max_ms'], ' ms')}"
        f" ({lt['requests']} sent, not started {lt['not_started']}); POST→202 p50"
        f" {fmt(lt['answer_p50_ms'], ' ms', 1)} p99 {fmt(lt['answer_p99_ms'], ' ms', 1)};"
        f" answers {lt['statuses']}, non-202 {lt['non_202'] or 0}; sender late p99"
        f" {fmt(lt['sender_late_p99_ms'], ' ms', 1)}; cpu {lt['cpu_s']:.2f} s, rss"
        f" {lt['peak_rss_bytes'] / 2**20:.0f} MiB",
        f"  daemon cpu by process: throughput {top(d['cpu_by_process_s'])}; latency"
        f" {top(lt['cpu_by_process_s'])}; idle (warm-up) {fmt(r['idle_cpu_per_s'], ' s/s', 3)}",
        f"  daemon log: {r['log_lines']} lines, {r['log_problems']} warning/error",
    ]
    for s in d["non_202_samples"] + lt["non_202_samples"]:
        lines.append(f"    non-202: {s}")
    for s in r["log_samples"]:
        lines.append(f"    log: {s[:300]}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    ap.add_argument("--seconds", type=float, default=3.0, help="throughput window per side")
    ap.add_argument("--rate", type=float, default=50.0, help="open-loop requests/s")
    ap.add_argument("--lat-seconds", type=float, default=10.0)
    ap.add_argument("--lat-routines", type=int, default=16)
    ap.add_argument("--senders", type=int, default=8, help="open-loop sender threads")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument(
        "--load-action", choices=sorted(LOAD_ACTIONS), default="sleep",
        help="throughput routines' action: sleep (ingress only) or true (a spawn per idle hit)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.environ[SECRET_ENV] = SECRET.decode()
    method = (
        f"method: {os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}, Python"
        f" {platform.python_version()}, SQLite {sqlite3.sqlite_version}, h11"
        f" {package_version('h11')}, palyra {palyra_version(ROOT)}; {args.rounds} rounds, a"
        f" fresh daemon per round, {args.warmup:g} s warm-up after ready. Throughput:"
        f" {args.clients} threads × one keep-alive http.client connection, each its own"
        f" webhook routine (concurrency forbid, action"
        f" {' '.join(LOAD_ACTIONS[args.load_action])}), {len(body_for(0))}-byte signed"
        f" JSON bodies back to back for {args.seconds:g} s per side, daemon then bare"
        " HttpServer (HMAC verify + 202, no journal; spawned child process) in each round."
        f" Latency: open loop {args.rate:g} req/s for {args.lat_seconds:g} s over"
        f" {args.lat_routines} routines (concurrency allow), {args.senders} sender threads;"
        " started = run started_at_unix_ms − wall ms at send. psutil: daemon = supervisor +"
        " its services."
    )
    print(method, flush=True)
    rounds: list[dict[str, Any]] = []
    bare = BarePeer()
    try:
        with tempfile.TemporaryDirectory(prefix="palyra-bench-webhooks-") as d:
            for i in range(1, args.rounds + 1):
                r = one_round(args, i, Path(d), bare)
                rounds.append(r)
                for line in round_lines(r):
                    print(line, flush=True)
    finally:
        bare.stop()

    def col(get: Callable[[dict[str, Any]], Any]) -> list[float | None]:
        return [None if get(r) is None else float(get(r)) for r in rounds]

    figures: dict[str, tuple[list[float | None], bool]] = {  # values, higher is worse
        "daemon accepted/s": (col(lambda r: r["daemon"]["per_s"]), False),
        "bare accepted/s": (col(lambda r: r["bare"]["per_s"]), False),
        "ratio daemon/bare": (col(lambda r: r["ratio"]), False),
        "daemon p50 ms": (col(lambda r: r["daemon"]["p50_ms"]), True),
        "daemon p99 ms": (col(lambda r: r["daemon"]["p99_ms"]), True),
        "bare p50 ms": (col(lambda r: r["bare"]["p50_ms"]), True),
        "bare p99 ms": (col(lambda r: r["bare"]["p99_ms"]), True),
        "daemon non-202": (col(lambda r: sum(r["daemon"]["non_202"].values())), True),
        "daemon 202 skipped": (col(lambda r: r["daemon"]["statuses"].get("skipped", 0)), True),
        "daemon 202 pending": (col(lambda r: r["daemon"]["statuses"].get("pending", 0)), True),
        "daemon cpu s (tput)": (col(lambda r: r["daemon"]["cpu_s"]), True),
        "node_rpc cpu ms/request": (
            col(
                lambda r: per_request_ms(
                    r["daemon"]["cpu_by_process_s"].get("node_rpc"), r["daemon"]["accepted"]
                )
            ),
            True,
        ),
        "bare cpu ms/request": (
            col(lambda r: per_request_ms(r["bare"]["cpu_s"], r["bare"]["accepted"])),
            True,
        ),
        "bare cpu s (tput)": (col(lambda r: r["bare"]["cpu_s"]), True),
        "daemon peak rss MiB (tput)": (
            col(lambda r: r["daemon"]["peak_rss_bytes"] / 2**20),
            True,
        ),
        "bare peak rss MiB": (col(lambda r: r["bare"]["peak_rss_bytes"] / 2**20), True),
        "POST→started p50 ms": (col(lambda r: r["latency"]["started_p50_ms"]), True),
        "POST→started p99 ms": (col(lambda r: r["latency"]["started_p99_ms"]), True),
        "POST→started max ms": (col(lambda r: r["latency"]["started_max_ms"]), True),
        "POST→202 p50 ms": (col(lambda r: r["latency"]["answer_p50_ms"]), True),
        "POST→202 p99 ms": (col(lambda r: r["latency"]["answer_p99_ms"]), True),
        "latency non-202": (col(lambda r: sum(r["latency"]["non_202"].values())), True),
        "latency not started": (col(lambda r: r["latency"]["not_started"]), True),
        "daemon cpu s (latency)": (col(lambda r: r["latency"]["cpu_s"]), True),
        "daemon peak rss MiB (lat)": (
            col(lambda r: r["latency"]["peak_rss_bytes"] / 2**20),
            True,
        ),
        "daemon log warn/error": (col(lambda r: r["log_problems"]), True),
    }
    print("summary (median | worst round):")
    agg: dict[str, dict[str, float | None]] = {}
    for name, (vals, higher_is_worse) in figures.items():
        m, w = med(vals), worst(vals, higher_is_worse=higher_is_worse)
        agg[name] = {"median": m, "worst": w}
        digits = 2 if ("ratio" in name or "/request" in name) else 1
        print(f"  {name:28} {fmt(m, digits=digits):>9} | {fmt(w, digits=digits)}")
    ratio = agg["ratio daemon/bare"]["median"]
    p99 = agg["POST→started p99 ms"]["median"]
    ratio_ok = ratio is not None and ratio >= GOAL_RATIO
    p99_ok = p99 is not None and p99 <= GOAL_STARTED_P99_MS
    print(
        f"goals: throughput ≥ {GOAL_RATIO:.0%} of bare: {'met' if ratio_ok else 'MISSED'}"
        f" ({fmt(None if ratio is None else ratio * 100, ' %')}); POST→started p99 ≤"
        f" {GOAL_STARTED_P99_MS:g} ms at {args.rate:g}/s: {'met' if p99_ok else 'MISSED'}"
        f" ({fmt(p99, ' ms')})"
    )
    out = args.out or RESULTS / f"webhooks-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"method": method, "args": vars(args), "rounds": rounds, "summary": agg},
            indent=1,
            default=str,
        )
    )
    print(f"raw numbers: {out}")


if __name__ == "__main__":
    main()
