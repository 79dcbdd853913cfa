"""Benchmark: signed skills — the audit's hashing speed beside ``sha256sum``, and what a skill
adds to a run's start beside a command.

1. **Audit.** A temp home with ``--count`` installed skills (default 100) whose artifacts are
   ``--mb`` MB (10⁶ bytes, default 10) of random bytes, each signed with Ed25519 over
   ``skill_audit.signed_message(id, version, publisher, sha256)`` and placed by the product's
   own path (``ops.skills.trust`` once, ``ops.skills.install`` per skill; not timed). Every
   artifact is read once before the rounds (warm page cache: this measures hashing + the
   audit's bookkeeping, not the disk). Each round times, in alternating order (ours first in
   odd rounds, ``sha256sum`` first in even ones):
   - ours: ``ops.skills.audit_installed(home, journal, index, trust, now)`` over all skills
     (``read_index``/``read_trust`` just before, outside the timer) — hashes every artifact,
     checks every signature and records the results in the journal;
   - peer: one ``sha256sum f1 … fN`` process over the same installed artifact files.
   Reported: MB/s of each, ours ÷ sha256sum (goal ≥ 50 %), CPU seconds of each (this
   process's / the child's). Once, after the rounds: the wall time of the whole
   ``palyra skills audit`` command (process start-up included).
2. **Added start latency of a skill run** (goal: < 5 ms at p50 for a 1 MB artifact). A second
   temp home with one skill ``s1`` whose artifact is a 1 MB ``#!/bin/sh`` script (``exit 0``,
   then comment lines padding it to 1 MB), and two manual routines (``concurrency: allow``):
   ``skill`` → ``{"kind": "skill", "skill_id": "s1"}``, ``command`` →
   ``["/bin/sh", "-c", "exit 0"]``.
   a) in-process: ``SkillRunner.prepare(run, SkillAction("s1"))`` + the invocation's
      ``release`` (the sealed memfd's close) vs ``CommandRunner().prepare(run, command)``,
      ``--calls`` calls of each per round, interleaved (A B A B …), after a few warm-up
      calls (the runner's first call parses the skill files); p50/p90 of each, added =
      skill p50 − command p50.
   b) end to end: ``palyra daemon start`` on that home (one daemon for all rounds,
      ``--warmup`` s after ready), then per round ``--triggers`` run-now of each routine,
      alternately (skill first in odd rounds), through ``ops.triggers.run_now`` (the
      library call the CLI's command makes; ``--via cli`` spawns ``palyra routines run-now
      ID --json`` instead), each waited for until its run is final before the next trigger;
      latency = the run record's ``started_at_ms − queued_at_ms`` (ms resolution). p50/p90
      of each, added = the difference of the p50s. psutil: the daemon's CPU seconds and peak
      summed RSS over each round's triggers.

Figures are the median of the per-round figures beside the worst round.

    .venv/bin/python bench/skills.py                # 5 rounds, ~2-3 min, ~1 GB in /tmp
    .venv/bin/python bench/skills.py --rounds 1 --count 10   # smoke run

Raw numbers go to bench/results/skills-<date>.json (``--out``; bench/results/ is gitignored).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    cli,
    cpu_model,
    daemon_sampler,
    fmt,
    med,
    now_ms,
    package_version,
    palyra_cli,
    palyra_version,
    pct,
    worst,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
GOAL_AUDIT_RATIO = 0.50
GOAL_ADDED_P50_MS = 5.0
PUBLISHER = "bench-publisher"
VERSION = "1.0.0"
SCRIPT_MB = 1
WARMUP_CALLS = 5
COMMAND_ARGV = ["/bin/sh", "-c", "exit 0"]


# --- set-up (never timed) --------------------------------------------------------------------


def file_digest(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


class Signer:
    """An Ed25519 publisher key that signs artifacts as ``palyra skills install`` expects."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_b64 = base64.b64encode(raw).decode()

    def sign(self, skill_id: str, version: str, digest: bytes) -> str:
        from palyrad.domain.skill_audit import signed_message

        message = signed_message(skill_id, version, PUBLISHER, digest)
        return base64.b64encode(self.key.sign(message)).decode()


def new_home(path: Path, signer: Signer) -> tuple[Any, Any]:
    """An ensured home with ``PUBLISHER`` trusted; (Home, Journal)."""
    from palyrad.journal import Journal
    from palyrad.ops import skills
    from palyrad.runtime.home import Home

    home = Home.at(path).ensure()
    journal = Journal(home.journal)
    skills.trust(home, journal, PUBLISHER, signer.public_b64, now_ms())
    return home, journal


def install(home: Any, journal: Any, signer: Signer, src: Path, skill_id: str) -> Path:
    """Install ``src`` as ``skill_id`` through ``ops.skills.install``; the installed path."""
    from palyrad.ops import skills

    sig = signer.sign(skill_id, VERSION, file_digest(src))
    view = skills.install(
        home, journal, src, skill_id=skill_id, version=VERSION, publisher=PUBLISHER,
        signature=sig, now_ms=now_ms(),
    )  # fmt: skip
    if view.state != "active":
        raise RuntimeError(f"{skill_id} installed but {view.state}: {view.reason}")
    return Path(skills.artifact_path(home, skill_id, VERSION))


def setup_audit_home(
    tmp: Path, count: int, size: int, signer: Signer
) -> tuple[Any, Any, list[Path]]:
    home, journal = new_home(tmp / "audit-home", signer)
    rng = random.Random(1)
    src = tmp / "artifact.bin"
    paths = []
    for i in range(count):
        src.write_bytes(rng.randbytes(size))
        paths.append(install(home, journal, signer, src, f"skill-{i:03d}"))
    src.unlink()
    return home, journal, paths


def warm(paths: list[Path]) -> int:
    """Read every file once (page cache warm); the bytes read."""
    total = 0
    buf = bytearray(1 << 20)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total


def shebang_script(size: int) -> bytes:
    """A valid ``#!/bin/sh`` script of exactly ``size`` bytes: ``exit 0``, then comments."""
    head = b"#!/bin/sh\nexit 0\n"
    line = b"# " + b"x" * 997 + b"\n"  # 1000 bytes
    body = line * ((size - len(head)) // len(line))
    rest = size - len(head) - len(body)
    tail = (b"#" + b"x" * (rest - 2) + b"\n") if rest >= 2 else b"\n" * rest
    return head + body + tail


def setup_run_home(tmp: Path, signer: Signer) -> tuple[Any, Any]:
    home, journal = new_home(tmp / "run-home", signer)
    src = tmp / "script.sh"
    src.write_bytes(shebang_script(SCRIPT_MB * 1_000_000))
    install(home, journal, signer, src, "s1")
    src.unlink()
    routines = [
        {
            "id": "skill",
            "trigger": {"kind": "manual"},
            "concurrency": "allow",
            "action": {"kind": "skill", "skill_id": "s1"},
        },
        {
            "id": "command",
            "trigger": {"kind": "manual"},
            "concurrency": "allow",
            "action": {"kind": "command", "argv": COMMAND_ARGV},
        },
    ]
    home.definitions.parent.mkdir(parents=True, exist_ok=True)
    home.definitions.write_text(json.dumps({"schema_version": 1, "routines": routines}, indent=1))
    (home.root / "palyra.toml").write_text(
        "[rpc]\npairing_port = 0\nnode_port = 0\n[webhooks]\nport = 0\n"
    )
    return home, journal


# --- 1. audit vs sha256sum -------------------------------------------------------------------


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_ours(home: Any, journal: Any) -> dict[str, Any]:
    from palyrad.ops import skills

    index = skills.read_index(home)
    trust = skills.read_trust(home)
    c0 = self_cpu()
    t0 = time.perf_counter()
    results = skills.audit_installed(home, journal, index, trust, now_ms())
    elapsed = time.perf_counter() - t0
    cpu = self_cpu() - c0
    failed = [f"{r.skill_id}: {r.reason}" for r in results if not r.passed]
    return {"s": elapsed, "cpu_s": cpu, "n": len(results), "failed": failed[:5]}


def parse_sha256sum(stdout: str) -> dict[str, str]:
    """``HEX  PATH`` lines → {path: hex}."""
    return dict(reversed(line.split(maxsplit=1)) for line in stdout.splitlines())


def parse_openssl(stdout: str) -> dict[str, str]:
    """``SHA2-256(PATH)= HEX`` lines → {path: hex}."""
    out = {}
    for line in stdout.splitlines():
        head, _, digest = line.rpartition("= ")
        out[head[head.index("(") + 1 : -1]] = digest.strip()
    return out


# The peer (the goal's baseline) and a stronger reference: one process over all the files.
PEERS: dict[str, tuple[list[str], Callable[[str], dict[str, str]]]] = {
    "sha256sum": (["sha256sum"], parse_sha256sum),
    "openssl": (["openssl", "dgst", "-sha256"], parse_openssl),
}


def time_peer(name: str, paths: list[Path], expected: dict[str, str]) -> dict[str, Any]:
    cmd, parse = PEERS[name]
    c0 = children_cpu()
    t0 = time.perf_counter()
    res = subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    cpu = children_cpu() - c0
    got = parse(res.stdout)
    wrong = [p for p, d in expected.items() if got.get(p) != d]
    return {"s": elapsed, "cpu_s": cpu, "n": len(got), "rc": res.returncode, "wrong": wrong[:5]}


def audit_round(
    i: int,
    home: Any,
    journal: Any,
    paths: list[Path],
    expected: dict[str, str],
    mb_total: float,
    peers: list[str],
) -> dict[str, Any]:
    """One round; the sides' order rotates between rounds (ours first in round 1)."""
    sides: dict[str, dict[str, Any]] = {}
    names = ["ours", *peers]
    k = (i - 1) % len(names)
    order = names[k:] + names[:k]
    for side in order:
        sides[side] = (
            time_ours(home, journal) if side == "ours" else time_peer(side, paths, expected)
        )
        sides[side]["mb_per_s"] = mb_total / sides[side]["s"]
    return {
        "round": i,
        "order": order,
        **sides,
        "ratio": sides["ours"]["mb_per_s"] / sides["sha256sum"]["mb_per_s"],
        "ratio_openssl": sides["ours"]["mb_per_s"] / sides["openssl"]["mb_per_s"]
        if "openssl" in sides
        else None,
    }


def cli_audit(home: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = cli(home.root, "skills", "audit", "--json", timeout=600)
    wall = time.perf_counter() - t0
    skills_out: list[dict[str, Any]] = []
    with contextlib.suppress(ValueError, KeyError, TypeError):
        skills_out = json.loads(res.stdout)["skills"]
    states: dict[str, int] = {}
    for s in skills_out:
        st = str(s.get("state"))
        states[st] = states.get(st, 0) + 1
    return {"wall_s": wall, "rc": res.returncode, "states": states, "stderr": res.stderr[-300:]}


# --- 2a. prepare in-process ------------------------------------------------------------------


def make_run(routine_id: str) -> Any:
    from palyrad.domain.runs import Run, new_ulid

    run_id = new_ulid()
    return Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id=routine_id,
        attempt=1,
        trigger_kind="manual",
        status="pending",
        queued_at_ms=now_ms(),
    )


def prepare_round(i: int, home: Any, journal: Any, calls: int) -> dict[str, Any]:
    from palyrad.services.executor.actions.command import CommandRunner
    from palyrad.services.executor.actions.skill import SkillRunner
    from routines.model import CommandAction, SkillAction

    skill = SkillRunner(home, lambda: journal, now_ms)  # a fresh runner per round
    command = CommandRunner()
    s_action = SkillAction(skill_id="s1")
    c_action = CommandAction(argv=tuple(COMMAND_ARGV))
    s_run, c_run = make_run("skill"), make_run("command")

    def one_skill() -> float:
        t0 = time.perf_counter_ns()
        inv = skill.prepare(s_run, s_action)
        if inv.release is not None:
            inv.release()
        return (time.perf_counter_ns() - t0) / 1e6

    def one_command() -> float:
        t0 = time.perf_counter_ns()
        inv = command.prepare(c_run, c_action)
        if inv.release is not None:
            inv.release()
        return (time.perf_counter_ns() - t0) / 1e6

    first_skill_ms = one_skill()  # parses the index and the trust store
    for _ in range(WARMUP_CALLS):
        one_skill()
        one_command()
    s_ms: list[float] = []
    c_ms: list[float] = []
    for k in range(calls):
        pair = (one_skill, one_command) if k % 2 == 0 else (one_command, one_skill)
        for fn in pair:
            (s_ms if fn is one_skill else c_ms).append(fn())
    return {
        "round": i,
        "first_skill_ms": first_skill_ms,
        "skill_p50_ms": pct(s_ms, 50),
        "skill_p90_ms": pct(s_ms, 90),
        "skill_max_ms": max(s_ms),
        "command_p50_ms": pct(c_ms, 50),
        "command_p90_ms": pct(c_ms, 90),
        "added_p50_ms": pct(s_ms, 50) - pct(c_ms, 50),  # type: ignore[operator]
        "skill_samples_ms": s_ms,
        "command_samples_ms": c_ms,
    }


# --- 2b. end to end in a daemon --------------------------------------------------------------


def start_daemon(home: Any) -> None:
    res = cli(home.root, "daemon", "start", timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"palyra daemon start failed: {res.stdout}\n{res.stderr}")
    deadline = time.monotonic() + 30
    while True:
        st = json.loads(cli(home.root, "daemon", "status", "--json").stdout or "{}")
        if st.get("running"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"daemon not running after start: {st}")
        time.sleep(0.2)


def trigger(home: Any, journal: Any, routine_id: str, via: str) -> str | None:
    if via == "cli":
        res = cli(home.root, "routines", "run-now", routine_id, "--json", timeout=60)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(res.stdout)["run_id"])
        return None
    from palyrad.ops.triggers import run_now

    def no_defs() -> Any:
        raise RuntimeError("the daemon is not listening: run-now would not go through it")

    run, _running = run_now(home, journal, routine_id, None, no_defs)
    return str(run.run_id)


def wait_final(journal: Any, run_id: str, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        run = journal.runs.get(run_id)
        if run is not None and not run.is_active:
            return run
        if time.monotonic() > deadline:
            return run
        time.sleep(0.002)


def daemon_round(
    i: int, home: Any, journal: Any, sampler: Any, triggers: int, via: str
) -> dict[str, Any]:
    lat: dict[str, list[float]] = {"skill": [], "command": []}
    bad: list[str] = []
    order = ["skill", "command"] if i % 2 else ["command", "skill"]
    sampler.peak_window = 0
    sampler.in_window = True
    cpu0 = sampler.cpu()
    try:
        for _ in range(triggers):
            for rid in order:
                run_id = trigger(home, journal, rid, via)
                run = None if run_id is None else wait_final(journal, run_id)
                if run is None or run.started_at_ms is None:
                    status = None if run is None else f"{run.status} {run.error_kind}"
                    bad.append(f"{rid}: no start ({status})")
                    continue
                if run.status != "succeeded":
                    bad.append(f"{rid}: {run.status} {run.error_kind} {run.error_message}")
                lat[rid].append(float(run.started_at_ms - run.queued_at_ms))
    finally:
        cpu = sampler.cpu() - cpu0
        sampler.in_window = False
    out: dict[str, Any] = {"round": i, "order": order}
    for rid, v in lat.items():
        out[f"{rid}_p50_ms"] = pct(v, 50)
        out[f"{rid}_p90_ms"] = pct(v, 90)
        out[f"{rid}_max_ms"] = max(v) if v else None
        out[f"{rid}_samples_ms"] = v
    sp, cp = out["skill_p50_ms"], out["command_p50_ms"]
    out["added_p50_ms"] = None if sp is None or cp is None else sp - cp
    out.update(cpu_s=cpu, peak_rss_bytes=max(sampler.peak_window, sampler.rss()), problems=bad)
    return out


def log_problems(home: Any) -> tuple[int, list[str], int]:
    """The daemon log's warning/error lines (count, first few) and its total line count."""
    path = home.root / "logs" / "palyrad.log"
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


# --- reporting -------------------------------------------------------------------------------


def summarize(
    rounds: list[dict[str, Any]], figures: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]]
) -> dict[str, dict[str, float | None]]:
    agg: dict[str, dict[str, float | None]] = {}
    for name, (get, higher_is_worse) in figures.items():
        vals = [None if get(r) is None else float(get(r)) for r in rounds]
        m, w = med(vals), worst(vals, higher_is_worse=higher_is_worse)
        agg[name] = {"median": m, "worst": w}
        if name.startswith("prepare"):
            digits = 3
        elif "ratio" in name or "cpu" in name:
            digits = 2
        elif name.startswith("daemon") and name.endswith(" ms"):
            digits = 1
        else:
            digits = 0
        print(f"  {name:34} {fmt(m, digits=digits):>9} | {fmt(w, digits=digits)}")
    return agg


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=100, help="installed skills for the audit")
    ap.add_argument("--mb", type=int, default=10, help="artifact size for the audit, MB (10^6)")
    ap.add_argument("--calls", type=int, default=200, help="in-process prepares per side/round")
    ap.add_argument("--triggers", type=int, default=30, help="run-nows per routine per round")
    ap.add_argument("--via", choices=("library", "cli"), default="library")
    ap.add_argument("--warmup", type=float, default=2.0, help="s after the daemon is ready")
    ap.add_argument(
        "--no-openssl", dest="openssl", action="store_false",
        help="skip the `openssl dgst -sha256` reference",
    )  # fmt: skip
    ap.add_argument("--tmp", type=Path, default=None, help="where the temp homes go")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    size = args.mb * 1_000_000
    mb_total = args.count * size / 1e6
    sha_version = subprocess.run(["sha256sum", "--version"], capture_output=True, text=True)
    peers = ["sha256sum"] + (["openssl"] if args.openssl and shutil.which("openssl") else [])
    ssl_version = (
        subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
        if "openssl" in peers
        else "no openssl reference"
    )
    tmp_root = args.tmp or Path(tempfile.gettempdir())
    free_gb = shutil.disk_usage(tmp_root).free / 1e9
    method = (
        f"method: {os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}, Python"
        f" {platform.python_version()}, SQLite {sqlite3.sqlite_version}, cryptography"
        f" {package_version('cryptography')}, {sha_version.stdout.splitlines()[0]},"
        f" {ssl_version}, palyra {palyra_version(ROOT)}; {args.rounds} rounds; {load_line()}"
        f" at start; temp homes under {tmp_root} ({free_gb:.0f} GB free). Audit:"
        f" {args.count} installed skills × {args.mb} MB random artifacts (installed by"
        " ops.skills.install, Ed25519-signed), WARM page cache (all read once before the"
        " rounds); per round ops.skills.audit_installed over all vs one `sha256sum f1 … fN`"
        " over the same files, order rotating between rounds (plus `openssl dgst -sha256 f1"
        " … fN` as a stronger reference: OpenSSL is also what Python's hashlib uses). Start"
        " latency: a 1 MB #!/bin/sh skill vs /bin/sh -c 'exit 0'; (a) in-process"
        " SkillRunner.prepare+release vs CommandRunner.prepare,"
        f" {args.calls} interleaved calls each per round; (b) one daemon for all rounds,"
        f" {args.warmup:g} s + 2 uncounted runs of each routine of warm-up, {args.triggers}"
        f" run-nows of each routine per round, alternating, via {args.via}, each waited until"
        " final; started_at_ms − queued_at_ms."
    )
    print(method, flush=True)
    if free_gb * 1e9 < args.count * size * 1.2 + 1e8:
        sys.exit(f"not enough space under {tmp_root}: {free_gb:.1f} GB free; use --count/--mb")

    audit_rounds: list[dict[str, Any]] = []
    prep_rounds: list[dict[str, Any]] = []
    daemon_rounds: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    signer = Signer()
    with tempfile.TemporaryDirectory(prefix="palyra-bench-skills-", dir=tmp_root) as d:
        tmp = Path(d)
        # 1. audit
        t0 = time.perf_counter()
        home, journal, paths = setup_audit_home(tmp, args.count, size, signer)
        setup_s = time.perf_counter() - t0
        expected = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
        warm(paths)
        print(
            f"set-up: {args.count} skills installed in {setup_s:.1f} s ({mb_total:.0f} MB);"
            f" warm cache; {load_line()}",
            flush=True,
        )
        try:
            for i in range(1, args.rounds + 1):
                r = audit_round(i, home, journal, paths, expected, mb_total, peers)
                audit_rounds.append(r)
                o = r["ours"]
                parts = [
                    f"ours {o['mb_per_s']:.0f} MB/s ({o['s']:.3f} s, cpu {o['cpu_s']:.2f} s,"
                    f" {o['n']} audited, failed {len(o['failed'])})"
                ]
                problems = list(o["failed"])
                for name in peers:
                    p = r[name]
                    parts.append(
                        f"{name} {p['mb_per_s']:.0f} MB/s ({p['s']:.3f} s, cpu {p['cpu_s']:.2f}"
                        f" s, rc {p['rc']}, wrong {len(p['wrong'])})"
                    )
                    problems += [f"{name}: {w}" for w in p["wrong"]]
                ratios = f"ratio ours/sha256sum {r['ratio']:.2f}"
                if r["ratio_openssl"] is not None:
                    ratios += f", ours/openssl {r['ratio_openssl']:.2f}"
                print(
                    f"audit round {i} ({' → '.join(r['order'])}): {' | '.join(parts)} | {ratios}",
                    flush=True,
                )
                for f in problems:
                    print(f"    problem: {f}")
            extra["cli_audit"] = c = cli_audit(home)
            print(
                f"CLI `palyra skills audit --json` ({args.count} skills, whole command): wall"
                f" {c['wall_s']:.2f} s, rc {c['rc']}, states {c['states']}"
                + (f", stderr {c['stderr']!r}" if c["rc"] else ""),
                flush=True,
            )
        finally:
            journal.close()
        shutil.rmtree(home.root)  # free the space before the next part

        # 2. start latency
        home, journal = setup_run_home(tmp, signer)
        try:
            for i in range(1, args.rounds + 1):
                r = prepare_round(i, home, journal, args.calls)
                prep_rounds.append(r)
                print(
                    f"prepare round {i}: skill p50 {r['skill_p50_ms']:.3f} ms p90"
                    f" {r['skill_p90_ms']:.3f} max {r['skill_max_ms']:.2f} (first"
                    f" {r['first_skill_ms']:.2f}) | command p50 {r['command_p50_ms']:.4f} ms"
                    f" p90 {r['command_p90_ms']:.4f} | added p50 {r['added_p50_ms']:.3f} ms",
                    flush=True,
                )
        finally:
            journal.close()

        from palyrad.journal import Journal

        sampler = None
        journal = None
        try:
            start_daemon(home)
            sampler = daemon_sampler(home.root).start()
            time.sleep(args.warmup)
            journal = Journal(home.journal)
            for rid in ("skill", "command", "skill", "command"):  # not counted
                run_id = trigger(home, journal, rid, args.via)
                if run_id is not None:
                    wait_final(journal, run_id)
            print(f"daemon ready; {load_line()}", flush=True)
            for i in range(1, args.rounds + 1):
                r = daemon_round(i, home, journal, sampler, args.triggers, args.via)
                daemon_rounds.append(r)
                print(
                    f"daemon round {i} ({' → '.join(r['order'])}): skill p50"
                    f" {fmt(r['skill_p50_ms'], ' ms')} p90 {fmt(r['skill_p90_ms'], ' ms')} max"
                    f" {fmt(r['skill_max_ms'], ' ms')} | command p50"
                    f" {fmt(r['command_p50_ms'], ' ms')} p90 {fmt(r['command_p90_ms'], ' ms')}"
                    f" max {fmt(r['command_max_ms'], ' ms')} | added p50"
                    f" {fmt(r['added_p50_ms'], ' ms')} | daemon cpu {r['cpu_s']:.2f} s, rss"
                    f" {r['peak_rss_bytes'] / 2**20:.0f} MiB | problems {len(r['problems'])}",
                    flush=True,
                )
                for p in r["problems"][:5]:
                    print(f"    problem: {p}")
        finally:
            if journal is not None:
                journal.close()
            if sampler is not None:
                sampler.stop()
            cli(home.root, "daemon", "stop", timeout=120)
            n_bad, bad, n_lines = log_problems(home)
            extra["daemon_log"] = {"lines": n_lines, "problems": n_bad, "samples": bad}
            print(f"daemon log: {n_lines} lines, {n_bad} warning/error")
            for line in bad:
                print(f"    log: {line[:300]}")
    print(f"end: {load_line()}")

    print("summary (median | worst round):")
    agg: dict[str, dict[str, float | None]] = {}
    agg |= summarize(
        audit_rounds,
        {
            "audit ours MB/s": (lambda r: r["ours"]["mb_per_s"], False),
            "audit sha256sum MB/s": (lambda r: r["sha256sum"]["mb_per_s"], False),
            "audit ratio ours/sha256sum": (lambda r: r["ratio"], False),
            "audit ours cpu s": (lambda r: r["ours"]["cpu_s"], True),
            "audit sha256sum cpu s": (lambda r: r["sha256sum"]["cpu_s"], True),
            **(
                {
                    "audit openssl MB/s (reference)": (lambda r: r["openssl"]["mb_per_s"], False),
                    "audit ratio ours/openssl": (lambda r: r["ratio_openssl"], False),
                }
                if "openssl" in peers
                else {}
            ),
        },
    )
    agg |= summarize(
        prep_rounds,
        {
            "prepare skill p50 ms": (lambda r: r["skill_p50_ms"], True),
            "prepare skill p90 ms": (lambda r: r["skill_p90_ms"], True),
            "prepare command p50 ms": (lambda r: r["command_p50_ms"], True),
            "prepare command p90 ms": (lambda r: r["command_p90_ms"], True),
            "prepare added p50 ms": (lambda r: r["added_p50_ms"], True),
        },
    )
    agg |= summarize(
        daemon_rounds,
        {
            "daemon skill queued→started p50 ms": (lambda r: r["skill_p50_ms"], True),
            "daemon skill queued→started p90 ms": (lambda r: r["skill_p90_ms"], True),
            "daemon cmd queued→started p50 ms": (lambda r: r["command_p50_ms"], True),
            "daemon cmd queued→started p90 ms": (lambda r: r["command_p90_ms"], True),
            "daemon added p50 ms": (lambda r: r["added_p50_ms"], True),
            "daemon cpu s per round": (lambda r: r["cpu_s"], True),
            "daemon peak rss MiB": (lambda r: r["peak_rss_bytes"] / 2**20, True),
            "daemon problems": (lambda r: len(r["problems"]), True),
        },
    )
    ratio = agg["audit ratio ours/sha256sum"]["median"]
    added_a = agg["prepare added p50 ms"]["median"]
    added_b = agg["daemon added p50 ms"]["median"]
    ratio_ok = ratio is not None and ratio >= GOAL_AUDIT_RATIO
    a_ok = added_a is not None and added_a < GOAL_ADDED_P50_MS
    b_ok = added_b is not None and added_b < GOAL_ADDED_P50_MS
    print(
        f"goals: audit ≥ {GOAL_AUDIT_RATIO:.0%} of sha256sum: {'met' if ratio_ok else 'MISSED'}"
        f" ({fmt(None if ratio is None else ratio * 100, ' %')}); added start p50 <"
        f" {GOAL_ADDED_P50_MS:g} ms for 1 MB: in-process {'met' if a_ok else 'MISSED'}"
        f" ({fmt(added_a, ' ms', 2)}), daemon {'met' if b_ok else 'MISSED'}"
        f" ({fmt(added_b, ' ms', 1)})"
    )
    out = args.out or RESULTS / f"skills-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "method": method,
                "args": vars(args),
                "cli": palyra_cli(),
                "audit_rounds": audit_rounds,
                "prepare_rounds": prep_rounds,
                "daemon_rounds": daemon_rounds,
                **extra,
                "summary": agg,
            },
            indent=1,
            default=str,
        )
    )
    print(f"raw numbers: {out}")


if __name__ == "__main__":
    main()
