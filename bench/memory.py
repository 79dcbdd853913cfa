"""Benchmark: memory search (SPEC §4.8) — hybrid search latency beside a plain FTS5 BM25 query
on the same rows, the vector backfill's items/s, and the peak RSS of the processes doing them.

For each size (``--sizes``, default 10 000 and 100 000 items):

0. **Corpus** (not timed): a deterministic synthetic corpus (``random.Random(--seed)``):
   notes of 60–300 characters drawn word by word from a vocabulary of a few thousand
   distinct words — ~50 English stop words (35 % of the draws), and content words (technical
   terms, names, numbers, version strings, generated pseudo-words for the long tail) drawn
   by a Zipf–Mandelbrot law (weight ∝ 1 / (rank + ``--zipf-offset``), default 30: the most
   common content word is in ~10 % of the items, as "server" might be in an operator's
   notes; 2.7 makes a stress corpus whose head word is in ~60 %); 0–2 tags from a set of 8.
   The document frequency of the top stems (``memory_fts_vocab``) is printed. Queries:
   a fixed set of ``--queries`` (default 200, the same every round) of 1–4 words from that
   vocabulary — common (content rank < 100), mid (100–999), rare (≥ 1000) and stop words —
   15 % with a typo in one word (an inner letter dropped, swapped or replaced), 15 % with a
   suffix variant (``-s``, ``-ing``, ``-ed``, ``-er`` added, or one removed).
1. **Insert** (informational, once): a fresh journal in a temp dir, the items WITHOUT
   vectors through ``ops.memory.new_item(..., embedder=None)`` + ``journal.memory.insert``
   in transactions of ``--batch`` (1 000); created times spread over the past year, oldest
   first; items/s. The journal is closed (WAL checkpointed) and kept as the un-embedded copy.
2. Per round (``--rounds``, default 5):
   a) **Backfill**: a copy of the un-embedded journal file, and a fresh child process
      (``python bench/memory.py --child backfill``) that opens it and runs
      ``ops.memory.backfill(journal, BuiltinEmbedder(), now_ms, lambda: True)`` (batches of
      64, each its own transaction). Items/s over the call (imports and the open outside the
      timer), the time spent in each step (timers around ``Memory.unembedded``,
      ``BuiltinEmbedder.embed``, ``ops.memory.stored_vector`` (the int8/sign encoding) and
      ``Memory.store_vectors``; one timer call per batch or item, well under 1 % of the
      figure), the child's CPU seconds and peak RSS (``VmHWM``: its own high-water mark;
      ``ru_maxrss`` would count the parent's RSS at fork). Round 1's embedded copy is the
      journal the searches below use; later rounds' copies are deleted.
   b) **Warm search, A/B**: a fresh child process opens the embedded journal and searches
      one warm-up query with each side (the hybrid's first call loads the process's
      ``VectorIndex``: reported as "cold load in process", and excluded), then every query of
      the set with both sides taking turns (A B for even query numbers, B A for odd ones,
      the order flipping each round):
      - A, **hybrid**: ``ops.memory.search(journal, BuiltinEmbedder(), q, now, limit=10)``
        (BM25 pool of 50 + embedding of the query + the Hamming scan of the cached sign
        codes + int8 re-scoring of the nearest 200 + RRF + the items' fetch and JSON);
      - B, **BM25 baseline**: ``journal.memory.text_matches(fts_query(words(q)), 10)`` (one
        FTS5 ``MATCH`` of the query's words OR-ed, ``ORDER BY bm25 LIMIT 10``) then
        ``journal.memory.by_seq(those seqs, now)`` (one ``SELECT … WHERE seq IN (…)``
        fetching the items): the same tokenization and the same SQL the hybrid's text half
        runs, with the result size the user asked for.
      ``time.perf_counter_ns`` around each call. Per round: p50, p99 (nearest rank) and max
      of each side over the query set; ratio hybrid / BM25 of the per-round p50s and p99s.
      The child's peak RSS (``VmHWM``) and its RSS before / after the index load. Then, not
      part of the figures above, a **breakdown** pass: the same queries once more through
      ``search`` with the steps wrapped by timers (class-level wrappers on
      ``Memory.text_matches``, ``BuiltinEmbedder.embed``, ``VectorIndex.refresh`` /
      ``nearest``, ``Memory.quantized``, ``similarity``, ``fuse``, ``Memory.by_seq``,
      ``item_to_json``; "other" is the rest of the call), and the query plan of every SELECT
      one search runs (``EXPLAIN QUERY PLAN`` of the statements a trace callback saw).
   c) **Cold one-shot search**: two fresh child processes, one per side (order alternating
      between rounds), each timing from ``Journal(path)`` to the results of one search (the
      round's query, the same for both; imports before the timer, reported apart): what a
      one-shot ``palyra memory search`` pays beyond interpreter start and imports (the
      journal's pages are in the page cache: the warm child just read them).

Figures are the median of the per-round figures beside the worst round. The SPEC's goal:
hybrid search p99 ≤ 50 ms at 100 000 items.

    .venv/bin/python bench/memory.py            # 10 000 and 100 000 items, 5 rounds, ~25 min
    .venv/bin/python bench/memory.py --quick    # 2 000 and 10 000 items, 2 rounds

Raw numbers (every query's latency on both sides, every round) go to
bench/results/memory-<date-time>.json (``--out``; bench/results/ is gitignored).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import cpu_model, fmt, med, now_ms, palyra_version, pct, worst

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
GOAL_P99_MS = 50.0
GOAL_SIZE = 100_000
LIMIT = 10
TTL_DAYS = 3650
YEAR_MS = 365 * 86_400_000

# --- the corpus ---------------------------------------------------------------------------

STOP_WORDS = (
    "the", "a", "to", "and", "of", "in", "is", "for", "on", "it", "with", "that", "this",
    "at", "by", "from", "be", "was", "are", "as", "or", "not", "we", "i", "my", "you", "an",
    "after", "before", "when", "then", "need", "should", "can", "all", "new", "if", "but",
    "so", "do", "have", "has", "will", "there", "about", "again", "into", "our", "its", "up",
)  # fmt: skip
TECH_WORDS = (
    "server", "deploy", "deployment", "backup", "restore", "database", "postgres", "sqlite",
    "nginx", "docker", "container", "kubernetes", "cluster", "node", "pod", "service",
    "restart", "reboot", "config", "configuration", "cron", "schedule", "job", "queue",
    "worker", "timeout", "retry", "error", "warning", "log", "logs", "disk", "memory", "cpu",
    "latency", "throughput", "cache", "redis", "index", "query", "migration", "schema",
    "table", "column", "replica", "primary", "failover", "certificate", "tls", "ssl", "key",
    "secret", "token", "password", "login", "ssh", "firewall", "port", "proxy", "dns",
    "domain", "router", "wifi", "network", "vpn", "tunnel", "gateway", "load", "balancer",
    "upstream", "webhook", "api", "endpoint", "request", "response", "payload", "json",
    "yaml", "toml", "script", "python", "rust", "golang", "typescript", "compile", "build",
    "release", "tag", "branch", "merge", "commit", "rebase", "pipeline", "ci", "test",
    "tests", "flaky", "benchmark", "profile", "trace", "metric", "metrics", "alert",
    "dashboard", "grafana", "prometheus", "monitor", "uptime", "incident", "outage",
    "postmortem", "rollback", "hotfix", "patch", "upgrade", "version", "dependency",
    "package", "library", "module", "plugin", "extension", "daemon", "process", "thread",
    "signal", "socket", "pipe", "file", "directory", "folder", "path", "permission", "owner",
    "group", "user", "account", "invoice", "payment", "budget", "expense", "receipt",
    "report", "weekly", "monthly", "daily", "meeting", "standup", "review", "deadline",
    "ticket", "issue", "bug", "feature", "roadmap", "milestone", "sprint", "estimate",
    "calendar", "reminder", "email", "inbox", "newsletter", "subscription", "renewal",
    "license", "contract", "vendor", "backlog", "priority", "blocker", "handover",
    "onboarding", "laptop", "phone", "battery", "charger", "printer", "scanner", "camera",
    "photo", "video", "music", "playlist", "podcast", "recipe", "grocery", "pharmacy",
    "doctor", "dentist", "appointment", "insurance", "tax", "bank", "transfer", "mortgage",
    "rent", "utility", "electricity", "heating", "thermostat", "garden", "plants", "water",
    "bike", "car", "tyres", "garage", "train", "flight", "hotel", "booking", "passport",
    "visa", "travel", "luggage", "weekend", "holiday", "birthday", "gift", "party",
    "snapshot", "volume", "mount", "partition", "filesystem", "raid", "nas", "sync",
    "rsync", "restic", "borg", "archive", "compress", "encrypt", "decrypt", "rotate",
    "rotation", "expire", "expired", "renew", "quota", "limit", "threshold", "spike",
    "regression", "leak", "crash", "panic", "deadlock", "race", "lock", "mutex", "shard",
    "partitioning", "vacuum", "checkpoint", "wal", "fsync", "journal", "embedding", "vector",
    "search", "ranking", "prompt", "model", "agent", "routine", "trigger", "webhooks",
)  # fmt: skip
NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "oscar", "peggy", "rupert", "sybil", "trent", "victor", "walter", "anna",
    "marek", "tomasz", "kasia", "ola", "piotr", "jan", "ewa", "lukas", "sofia", "mateo",
    "yuki", "hana", "ravi", "priya", "omar", "leila", "noah", "emma", "liam", "mia",
    "atlas", "orion", "vega", "nebula", "zephyr", "falcon", "phoenix", "hermes", "apollo",
    "athena", "titan", "kestrel", "osprey", "heron", "lynx", "otter", "badger", "raven",
    "hetzner", "ovh", "aws", "gcp", "azure", "github", "gitlab", "cloudflare", "tailscale",
    "proxmox", "synology", "ubuntu", "debian", "fedora", "arch", "alpine", "macbook",
    "thinkpad", "raspberry", "homeassistant", "pihole", "jellyfin", "nextcloud", "palyra",
)  # fmt: skip
TAGS = ("home", "work", "infra", "ops", "personal", "project:palyra", "finance", "health")
_CONS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"
STOP_SHARE = 0.35


class Vocabulary:
    """Stop words (Zipf among themselves) and ranked content words (Zipf–Mandelbrot)."""

    def __init__(self, seed: int, offset: float, pseudo: int = 3500) -> None:
        rng = random_for(seed, "vocabulary")
        numbers = {str(rng.randrange(2, 10_000)) for _ in range(250)}
        numbers |= {f"v{rng.randrange(1, 9)}.{rng.randrange(0, 20)}" for _ in range(40)}
        numbers |= {f"20{rng.randrange(19, 26)}-{rng.randrange(1, 13):02d}" for _ in range(40)}
        pseudo_words: set[str] = set()
        while len(pseudo_words) < pseudo:
            syllables = rng.choice((2, 2, 3, 3, 3, 4))
            word = "".join(rng.choice(_CONS) + rng.choice(_VOWELS) for _ in range(syllables))
            if rng.random() < 0.4:
                word += rng.choice(_CONS)
            pseudo_words.add(word)
        head = sorted({*TECH_WORDS, *NAMES} - set(STOP_WORDS))
        rng.shuffle(head)
        tail = sorted((numbers | pseudo_words) - set(head))
        rng.shuffle(tail)
        # The head (technical words and names) mostly ranks first, with some of the tail
        # mixed in, so common words are not all technical and rare ones not all made up.
        ranked: list[str] = []
        hi, ti = 0, 0
        while hi < len(head) or ti < len(tail):
            take_head = hi < len(head) and (ti >= len(tail) or rng.random() < 0.8)
            if take_head:
                ranked.append(head[hi])
                hi += 1
            else:
                ranked.append(tail[ti])
                ti += 1
        self.content = ranked
        self.stop = STOP_WORDS
        weights = (1.0 / (r + offset) for r in range(len(ranked)))
        self._content_cum = list(itertools.accumulate(weights))
        self._stop_cum = list(itertools.accumulate(1.0 / (r + 1.0) for r in range(len(STOP_WORDS))))

    def __len__(self) -> int:
        return len(self.content) + len(self.stop)

    def draw(self, rng: Any, k: int) -> list[str]:
        out = []
        content = rng.choices(self.content, cum_weights=self._content_cum, k=k)
        stops = rng.choices(self.stop, cum_weights=self._stop_cum, k=k)
        for i in range(k):
            out.append(stops[i] if rng.random() < STOP_SHARE else content[i])
        return out

    def content_in(self, rng: Any, lo: int, hi: int) -> str:
        """A content word of rank lo..hi-1, Zipf-weighted within the band."""
        hi = min(hi, len(self.content))
        base = self._content_cum[lo - 1] if lo else 0.0
        x = base + rng.random() * (self._content_cum[hi - 1] - base)
        return self.content[min(hi - 1, bisect.bisect_left(self._content_cum, x))]


def random_for(seed: int, what: str) -> Any:
    import random

    return random.Random(f"{seed}:{what}")


def make_texts(vocab: Vocabulary, n: int, seed: int) -> list[tuple[str, tuple[str, ...]]]:
    """``n`` (text, tags) of 60–300 characters."""
    rng = random_for(seed, "items")
    out: list[tuple[str, tuple[str, ...]]] = []
    for _ in range(n):
        target = rng.randint(60, 300)
        parts: list[str] = []
        length = 0
        while True:
            for word in vocab.draw(rng, 12):
                if length + len(word) + 1 > 300:
                    break
                punct = ""
                r = rng.random()
                if r < 0.06:
                    punct = ","
                elif r < 0.10:
                    punct = "."
                parts.append(word + punct)
                length += len(word) + len(punct) + 1
                if length >= target:
                    break
            if length >= target or length + 12 > 300:
                break
        text = " ".join(parts).rstrip(",.") + "."
        text = text[0].upper() + text[1:]
        r = rng.random()
        tags: tuple[str, ...] = ()
        if r < 0.15:
            tags = tuple(rng.sample(TAGS, 2))
        elif r < 0.50:
            tags = (rng.choice(TAGS),)
        out.append((text, tags))
    return out


def typo(rng: Any, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(("drop", "swap", "replace"))
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "swap":
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]


def variant(rng: Any, word: str) -> str:
    for suffix in ("ing", "ed", "er", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 3:
            return word[: -len(suffix)]
    return word + rng.choice(("s", "s", "ing", "ed", "er"))


def make_queries(vocab: Vocabulary, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` queries: {"q": text, "kinds": [band of each word], "mod": None|typo|variant}."""
    rng = random_for(seed, "queries")
    bands = (("common", 0, 100), ("mid", 100, 1000), ("rare", 1000, len(vocab.content)))
    queries = []
    for _ in range(n):
        nwords = rng.choices((1, 2, 3, 4), weights=(30, 35, 25, 10))[0]
        words_: list[str] = []
        kinds: list[str] = []
        for j in range(nwords):
            r = rng.random()
            if r < 0.12 and j > 0:
                words_.append(rng.choice(vocab.stop[:20]))
                kinds.append("stop")
                continue
            name, lo, hi = bands[0] if r < 0.45 else bands[1] if r < 0.80 else bands[2]
            words_.append(vocab.content_in(rng, lo, hi))
            kinds.append(name)
        mod = None
        content_at = [i for i, k in enumerate(kinds) if k != "stop"]
        r = rng.random()
        if r < 0.15:
            i = rng.choice(content_at)
            if len(words_[i]) >= 5 and words_[i].isalpha():
                words_[i], mod = typo(rng, words_[i]), "typo"
        elif r < 0.30:
            i = rng.choice(content_at)
            if words_[i].isalpha():
                words_[i], mod = variant(rng, words_[i]), "variant"
        queries.append({"q": " ".join(words_), "kinds": kinds, "mod": mod})
    return queries


# --- child processes ------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's own high-water RSS (VmHWM); ru_maxrss would include the parent's RSS at
    fork time on Linux (it survives exec)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ms_since(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1e6


def child_backfill(p: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter_ns()
    from palyrad.domain.memory_embedding import BuiltinEmbedder
    from palyrad.journal import Journal
    from palyrad.ops.memory import backfill

    import_ms = ms_since(t0)
    journal = Journal(Path(p["db"]))
    rss_open = rss_mib()
    phases = Phases(BACKFILL_PHASES)
    phases.install()
    cpu0 = cpu_s()
    t0 = time.perf_counter_ns()
    done = backfill(journal, BuiltinEmbedder(), now_ms, lambda: True).embedded
    seconds = (time.perf_counter_ns() - t0) / 1e9
    cpu = cpu_s() - cpu0
    phases.uninstall()
    steps = phases.take()
    steps["other"] = seconds * 1000 - sum(steps.values())
    journal.close()
    return {
        "import_ms": import_ms,
        "embedded": done,
        "seconds": seconds,
        "per_s": done / seconds if seconds else None,
        "steps_ms": steps,
        "cpu_s": cpu,
        "rss_after_open_mib": rss_open,
        "peak_rss_mib": peak_rss_mib(),
    }


# (module, class or None, attribute, step name): what a breakdown wraps with a timer.
SEARCH_PHASES = (
    ("palyrad.journal.memory", "Memory", "text_matches", "text_matches"),
    ("palyrad.domain.memory_embedding", "BuiltinEmbedder", "embed", "embed"),
    ("palyrad.ops.memory_index", "VectorIndex", "refresh", "refresh"),
    ("palyrad.ops.memory_index", "VectorIndex", "nearest", "nearest"),
    ("palyrad.journal.memory", "Memory", "quantized", "quantized"),
    ("palyrad.ops.memory", None, "similarity", "similarity"),
    ("palyrad.ops.memory", None, "fuse", "fuse"),
    ("palyrad.journal.memory", "Memory", "by_seq", "by_seq"),
    ("palyrad.ops.memory", None, "item_to_json", "item_to_json"),
)
BACKFILL_PHASES = (
    ("palyrad.journal.memory", "Memory", "unembedded", "unembedded"),
    ("palyrad.domain.memory_embedding", "BuiltinEmbedder", "embed", "embed"),
    ("palyrad.ops.memory", None, "stored_vector", "encode_vector"),
    ("palyrad.journal.memory", "Memory", "store_vectors", "store_vectors"),
)


class Phases:
    """Timers around steps of a call, installed on the classes / modules (``specs``)."""

    def __init__(self, specs: Sequence[tuple[str, str | None, str, str]]) -> None:
        self.specs = specs
        self.names = [name for *_, name in specs]
        self.ns: dict[str, int] = dict.fromkeys(self.names, 0)
        self._undo: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)
        ns = self.ns
        clock = time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return original(*args, **kwargs)
            finally:
                ns[name] += clock() - t0

        self._undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    def install(self) -> None:
        import importlib

        for module, cls, attr, name in self.specs:
            owner: Any = importlib.import_module(module)
            if cls is not None:
                owner = getattr(owner, cls)
            self._wrap(owner, attr, name)

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def take(self) -> dict[str, float]:
        """ms per step since the last take."""
        out = {k: v / 1e6 for k, v in self.ns.items()}
        for k in self.ns:
            self.ns[k] = 0
        return out


def child_search(p: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter_ns()
    from palyrad.domain.memory_embedding import BuiltinEmbedder, words
    from palyrad.domain.memory_search import fts_query
    from palyrad.journal import Journal
    from palyrad.ops.memory import search
    from palyrad.ops.memory_index import index_for

    import_ms = ms_since(t0)
    journal = Journal(Path(p["db"]))
    embedder = BuiltinEmbedder()
    now = now_ms()
    rss_open = rss_mib()
    cpu0 = cpu_s()

    def hybrid(q: str) -> int:
        return len(search(journal, embedder, q, now, limit=LIMIT).results)

    def bm25(q: str) -> tuple[int, int, int]:
        """(results, ns in the MATCH, ns in the fetch)."""
        terms = words(q)
        t0 = time.perf_counter_ns()
        hits = journal.memory.text_matches(fts_query(terms), LIMIT) if terms else []
        t1 = time.perf_counter_ns()
        items = journal.memory.by_seq([s for s, _ in hits], now)
        t2 = time.perf_counter_ns()
        return len(items), t1 - t0, t2 - t1

    # Warm-up: the hybrid's first call loads this process's VectorIndex (cold load).
    phases = Phases(SEARCH_PHASES)
    phases.install()
    t0 = time.perf_counter_ns()
    hybrid(p["warmup"])
    cold_load_ms = ms_since(t0)
    phases.uninstall()
    cold_steps = phases.take()
    rss_index = rss_mib()
    index_len = len(index_for(journal))
    t0 = time.perf_counter_ns()
    bm25(p["warmup"])
    bm25_first_ms = ms_since(t0)

    queries: list[str] = p["queries"]
    hyb_ms: list[float] = []
    bm_ms: list[float] = []
    bm_match_ms: list[float] = []
    bm_fetch_ms: list[float] = []
    hyb_n: list[int] = []
    bm_n: list[int] = []
    for i, q in enumerate(queries):
        order = ("A", "B") if (i + p["round"]) % 2 == 0 else ("B", "A")
        for side in order:
            if side == "A":
                t0 = time.perf_counter_ns()
                n = hybrid(q)
                hyb_ms.append(ms_since(t0))
                hyb_n.append(n)
            else:
                t0 = time.perf_counter_ns()
                n, match_ns, fetch_ns = bm25(q)
                bm_ms.append(ms_since(t0))
                bm_match_ms.append(match_ns / 1e6)
                bm_fetch_ms.append(fetch_ns / 1e6)
                bm_n.append(n)
    cpu = cpu_s() - cpu0

    phases.install()
    breakdown: list[dict[str, float]] = []
    try:
        for q in queries:
            t0 = time.perf_counter_ns()
            hybrid(q)
            total = ms_since(t0)
            row = phases.take()
            row["other"] = total - sum(row.values())
            row["total"] = total
            breakdown.append(row)
    finally:
        phases.uninstall()
    plans = query_plans(journal.db, lambda: hybrid(queries[0]))
    journal.close()
    return {
        "import_ms": import_ms,
        "plans": plans,
        "index_items": index_len,
        "cold_load_ms": cold_load_ms,
        "cold_load_steps_ms": cold_steps,
        "bm25_first_ms": bm25_first_ms,
        "hybrid_ms": hyb_ms,
        "bm25_ms": bm_ms,
        "bm25_match_ms": bm_match_ms,
        "bm25_fetch_ms": bm_fetch_ms,
        "hybrid_results": hyb_n,
        "bm25_results": bm_n,
        "cpu_s": cpu,
        "rss_after_open_mib": rss_open,
        "rss_after_index_mib": rss_index,
        "peak_rss_mib": peak_rss_mib(),
        "breakdown": breakdown,
    }


def query_plans(db: sqlite3.Connection, call: Callable[[], Any]) -> list[dict[str, Any]]:
    """The SELECTs ``call`` runs on ``db`` (as SQLite expanded them) and their query plans."""
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    try:
        call()
    finally:
        db.set_trace_callback(None)
    out = []
    for sql in dict.fromkeys(seen):
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        plan = [str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
        out.append({"sql": short_sql(sql), "plan": plan})
    return out


def child_cold(p: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter_ns()
    from palyrad.domain.memory_embedding import BuiltinEmbedder, words
    from palyrad.domain.memory_search import fts_query
    from palyrad.journal import Journal
    from palyrad.ops.memory import search

    import_ms = ms_since(t0)
    q = p["query"]
    t0 = time.perf_counter_ns()
    journal = Journal(Path(p["db"]))
    open_ms = ms_since(t0)
    now = now_ms()
    if p["side"] == "hybrid":
        n = len(search(journal, BuiltinEmbedder(), q, now, limit=LIMIT).results)
    else:
        hits = journal.memory.text_matches(fts_query(words(q)), LIMIT)
        n = len(journal.memory.by_seq([s for s, _ in hits], now))
    total_ms = ms_since(t0)
    journal.close()
    return {
        "import_ms": import_ms,
        "open_ms": open_ms,
        "total_ms": total_ms,
        "results": n,
        "peak_rss_mib": peak_rss_mib(),
    }


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "backfill": child_backfill,
    "search": child_search,
    "cold": child_cold,
}


def run_child(mode: str, params: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", mode],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} child failed ({res.returncode}): {res.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


# --- the parent -----------------------------------------------------------------------------


def build_journal(path: Path, texts: Sequence[tuple[str, tuple[str, ...]]], batch: int) -> float:
    """Insert ``texts`` without vectors; items/s (the journal is closed afterwards)."""
    from palyrad.domain.memory import SOURCE_OPERATOR
    from palyrad.journal import Journal
    from palyrad.ops.memory import new_item

    journal = Journal(path)
    n = len(texts)
    start_ms = now_ms() - YEAR_MS
    step = YEAR_MS / max(1, n)
    t0 = time.perf_counter_ns()
    for lo in range(0, n, batch):
        items = [
            new_item(text, tags, SOURCE_OPERATOR, int(start_ms + i * step), TTL_DAYS, None)
            for i, (text, tags) in enumerate(texts[lo : lo + batch], start=lo)
        ]
        with journal.transaction():
            journal.memory.insert(items)
    seconds = (time.perf_counter_ns() - t0) / 1e9
    journal.close()
    return n / seconds


def top_terms(path: Path, n: int, k: int = 6) -> dict[str, float]:
    """The share of items holding "the", "to", and the ``k`` content stems (porter, as FTS5
    indexed them) in most items."""
    db = sqlite3.connect(str(path))
    try:
        rows = db.execute(
            "SELECT term, doc FROM memory_fts_vocab ORDER BY doc DESC LIMIT ?",
            (len(STOP_WORDS) + 3 * k,),
        ).fetchall()
    finally:
        db.close()
    share = {str(term): int(doc) / n for term, doc in rows}
    stops = porter_stems(STOP_WORDS)
    content = [t for t in share if t not in stops][:k]
    return {t: share[t] for t in ("the", "to", *content) if t in share}


def porter_stems(words_: Sequence[str]) -> set[str]:
    """The stems the journal's FTS5 tokenizer makes of ``words_``."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute(
            "CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61 remove_diacritics 2')"
        )
        db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
        db.execute("INSERT INTO t VALUES (?)", (" ".join(words_),))
        return {str(r[0]) for r in db.execute("SELECT term FROM v")}
    finally:
        db.close()


def side_stats(values: list[float]) -> dict[str, float | None]:
    return {"p50_ms": pct(values, 50), "p99_ms": pct(values, 99), "max_ms": max(values)}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def host_cpu() -> Any:
    import psutil

    return psutil.cpu_times()


def host_busy(before: Any) -> float:
    from benchlib import host_busy_fraction

    return host_busy_fraction(before, host_cpu())


def one_size(
    args: argparse.Namespace, vocab: Vocabulary, queries: list[dict[str, Any]], n: int, tmp: Path
) -> dict[str, Any]:
    print(f"\n== {n:,} items ==".replace(",", " "), flush=True)
    t0 = time.perf_counter()
    texts = make_texts(vocab, n, args.seed)
    corpus_s = time.perf_counter() - t0
    chars = sum(len(t) for t, _ in texts)
    pristine = tmp / f"memory-{n}-pristine.sqlite3"
    insert_per_s = build_journal(pristine, texts, args.batch)
    del texts
    db_mib = pristine.stat().st_size / 2**20
    top_df = top_terms(pristine, n)
    print(
        f"corpus {n} items, mean {chars / n:.0f} chars (generated in {corpus_s:.1f} s);"
        f" insert without vectors {insert_per_s:,.0f} items/s in transactions of {args.batch};"
        f" journal {db_mib:.1f} MiB",
        flush=True,
    )
    print(
        "items holding a stem: " + ", ".join(f"{t} {share:.0%}" for t, share in top_df.items()),
        flush=True,
    )
    search_db = tmp / f"memory-{n}-embedded.sqlite3"
    qtexts = [q["q"] for q in queries]
    rounds: list[dict[str, Any]] = []
    for r in range(1, args.rounds + 1):
        copy = search_db if r == 1 else tmp / f"memory-{n}-backfill-{r}.sqlite3"
        shutil.copyfile(pristine, copy)
        before = host_cpu()
        bf = run_child("backfill", {"db": str(copy)})
        bf["host_busy"] = host_busy(before)
        if bf["embedded"] != n:
            raise RuntimeError(f"backfill embedded {bf['embedded']} of {n}")
        if r != 1:
            copy.unlink()
        before = host_cpu()
        sr = run_child(
            "search",
            {"db": str(search_db), "queries": qtexts, "warmup": args.warmup_query, "round": r},
        )
        sr["host_busy"] = host_busy(before)
        cold_q = args.cold_query
        cold: dict[str, Any] = {"query": cold_q}
        for side in ("hybrid", "bm25") if r % 2 else ("bm25", "hybrid"):
            cold[side] = run_child("cold", {"db": str(search_db), "query": cold_q, "side": side})
        hyb, bm = side_stats(sr["hybrid_ms"]), side_stats(sr["bm25_ms"])
        rnd = {
            "round": r,
            "backfill": bf,
            "search": sr,
            "hybrid": hyb,
            "bm25": bm,
            "bm25_match_p99_ms": pct(sr["bm25_match_ms"], 99),
            "bm25_fetch_p99_ms": pct(sr["bm25_fetch_ms"], 99),
            "ratio_p50": ratio(hyb["p50_ms"], bm["p50_ms"]),
            "ratio_p99": ratio(hyb["p99_ms"], bm["p99_ms"]),
            "cold": cold,
        }
        rounds.append(rnd)
        print(round_line(rnd), flush=True)
    search_db.unlink()
    pristine.unlink()
    return {
        "items": n,
        "mean_chars": chars / n,
        "insert_per_s": insert_per_s,
        "journal_mib_unembedded": db_mib,
        "top_terms_share": top_df,
        "rounds": rounds,
    }


def round_line(r: dict[str, Any]) -> str:
    bf, sr, h, b, c = r["backfill"], r["search"], r["hybrid"], r["bm25"], r["cold"]
    return (
        f"round {r['round']}: backfill {bf['per_s']:,.0f} items/s ({bf['seconds']:.1f} s, cpu"
        f" {bf['cpu_s']:.1f} s, peak rss {bf['peak_rss_mib']:.0f} MiB) | hybrid p50"
        f" {h['p50_ms']:.2f} p99 {h['p99_ms']:.2f} max {h['max_ms']:.1f} ms | bm25 p50"
        f" {b['p50_ms']:.2f} p99 {b['p99_ms']:.2f} max {b['max_ms']:.1f} ms | ×"
        f"{fmt(r['ratio_p50'], digits=2)} p50, ×{fmt(r['ratio_p99'], digits=2)} p99 | cold"
        f" load in process {sr['cold_load_ms']:.0f} ms, search peak rss"
        f" {sr['peak_rss_mib']:.0f} MiB | one-shot hybrid {c['hybrid']['total_ms']:.0f} ms,"
        f" bm25 {c['bm25']['total_ms']:.0f} ms | host busy {sr['host_busy']:.0%}"
    )


def summarize(size: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    rounds = size["rounds"]

    def col(get: Callable[[dict[str, Any]], Any]) -> list[float | None]:
        return [None if get(r) is None else float(get(r)) for r in rounds]

    figures: dict[str, tuple[list[float | None], bool, int]] = {  # higher is worse, digits
        "hybrid p50 ms": (col(lambda r: r["hybrid"]["p50_ms"]), True, 2),
        "hybrid p99 ms": (col(lambda r: r["hybrid"]["p99_ms"]), True, 2),
        "hybrid max ms": (col(lambda r: r["hybrid"]["max_ms"]), True, 1),
        "bm25 p50 ms": (col(lambda r: r["bm25"]["p50_ms"]), True, 2),
        "bm25 p99 ms": (col(lambda r: r["bm25"]["p99_ms"]), True, 2),
        "bm25 max ms": (col(lambda r: r["bm25"]["max_ms"]), True, 1),
        "ratio hybrid/bm25 p50": (col(lambda r: r["ratio_p50"]), True, 2),
        "ratio hybrid/bm25 p99": (col(lambda r: r["ratio_p99"]), True, 2),
        "bm25 MATCH part p99 ms": (col(lambda r: r["bm25_match_p99_ms"]), True, 2),
        "bm25 fetch part p99 ms": (col(lambda r: r["bm25_fetch_p99_ms"]), True, 2),
        "cold load in process ms": (col(lambda r: r["search"]["cold_load_ms"]), True, 0),
        "  of which index refresh ms": (
            col(lambda r: r["search"]["cold_load_steps_ms"]["refresh"]),
            True,
            0,
        ),
        "one-shot hybrid ms": (col(lambda r: r["cold"]["hybrid"]["total_ms"]), True, 0),
        "one-shot bm25 ms": (col(lambda r: r["cold"]["bm25"]["total_ms"]), True, 0),
        "one-shot imports ms": (col(lambda r: r["cold"]["hybrid"]["import_ms"]), True, 0),
        "search cpu s (A+B)": (col(lambda r: r["search"]["cpu_s"]), True, 2),
        "search rss: index MiB": (
            col(lambda r: r["search"]["rss_after_index_mib"] - r["search"]["rss_after_open_mib"]),
            True,
            0,
        ),
        "search peak rss MiB": (col(lambda r: r["search"]["peak_rss_mib"]), True, 0),
        "one-shot hybrid peak MiB": (col(lambda r: r["cold"]["hybrid"]["peak_rss_mib"]), True, 0),
        "one-shot bm25 peak MiB": (col(lambda r: r["cold"]["bm25"]["peak_rss_mib"]), True, 0),
        "backfill items/s": (col(lambda r: r["backfill"]["per_s"]), False, 0),
        "backfill cpu s": (col(lambda r: r["backfill"]["cpu_s"]), True, 1),
        **{
            f"  backfill {k} s": (col(lambda r, k=k: r["backfill"]["steps_ms"][k] / 1000), True, 1)
            for k in (*Phases(BACKFILL_PHASES).names, "other")
        },
        "backfill peak rss MiB": (col(lambda r: r["backfill"]["peak_rss_mib"]), True, 0),
        "host busy (search)": (col(lambda r: r["search"]["host_busy"] * 100), True, 0),
    }
    n = size["items"]
    lines = [
        f"{n:,} items (mean {size['mean_chars']:.0f} chars; insert {size['insert_per_s']:,.0f}"
        f" items/s once; un-embedded journal {size['journal_mib_unembedded']:.1f} MiB)"
        "  median | worst round",
    ]
    agg: dict[str, dict[str, float | None]] = {}
    for name, (vals, higher_is_worse, digits) in figures.items():
        m, w = med(vals), worst(vals, higher_is_worse=higher_is_worse)
        agg[name] = {"median": m, "worst": w}
        unit = " %" if name.startswith("host") else ""
        lines.append(f"  {name:26} {fmt(m, unit, digits):>10} | {fmt(w, unit, digits)}")
    lines.extend(breakdown_lines(rounds))
    lines.append("  query plans of one warm hybrid search (round 1, first query):")
    for p in rounds[0]["search"]["plans"]:
        lines.append(f"    {short_sql(p['sql'])}")
        lines.extend(f"      {step}" for step in p["plan"])
    return lines, agg


def short_sql(sql: str) -> str:
    """A statement on one line with its IN (...) lists of numbers shortened."""
    import re

    def values(m: re.Match[str]) -> str:
        return f"IN ({m.group(1)}, … {m.group(0).count(',') + 1} values)"

    return re.sub(r"IN \(([0-9]+)(?:,[0-9]+)+\)", values, " ".join(sql.split()))


def breakdown_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """Per-step ms of the hybrid (breakdown pass), pooled over rounds: p50, p99, mean, and
    the mean over the slowest 2 % of calls."""
    rows = [b for r in rounds for b in r["search"]["breakdown"]]
    if not rows:
        return []
    slow_n = max(1, len(rows) // 50)
    slowest = sorted(rows, key=lambda b: b["total"])[-slow_n:]
    names = [*Phases(SEARCH_PHASES).names, "other", "total"]
    lines = [
        f"  hybrid breakdown (separate timed pass, {len(rows)} calls over all rounds), ms:"
        f"  p50 / p99 / mean / mean of the slowest {slow_n}"
    ]
    for name in names:
        vals = [b[name] for b in rows]
        lines.append(
            f"    {name:13} {fmt(pct(vals, 50), digits=2):>7} {fmt(pct(vals, 99), digits=2):>7}"
            f" {sum(vals) / len(vals):>7.2f} {sum(b[name] for b in slowest) / slow_n:>7.2f}"
        )
    return lines


def slow_queries(size: dict[str, Any], queries: list[dict[str, Any]], k: int = 8) -> list[str]:
    """The queries with the highest median (over rounds) hybrid latency, both sides."""
    rounds = size["rounds"]
    nq = len(queries)
    hyb = [med(r["search"]["hybrid_ms"][i] for r in rounds) or 0.0 for i in range(nq)]
    bm = [med(r["search"]["bm25_ms"][i] for r in rounds) or 0.0 for i in range(nq)]
    order = sorted(range(nq), key=lambda i: -hyb[i])[:k]
    lines = [f"  slowest {k} queries (median over rounds: hybrid ms / bm25 ms, word bands):"]
    for i in order:
        q = queries[i]
        lines.append(
            f"    {hyb[i]:7.1f} / {bm[i]:6.1f}  {q['q']!r} {'+'.join(q['kinds'])}"
            + (f" ({q['mod']})" if q["mod"] else "")
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=None, help="rounds per size (default 5)")
    ap.add_argument("--sizes", default=None, help="comma-separated item counts")
    ap.add_argument("--quick", action="store_true", help="2 000 and 10 000 items, 2 rounds")
    ap.add_argument("--queries", type=int, default=200, help="queries per round (each side)")
    ap.add_argument("--batch", type=int, default=1000, help="items per insert transaction")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--zipf-offset", type=float, default=30.0, help="weight 1/(rank + this)")
    ap.add_argument("--warmup-query", default="disk quota alert", help="excluded first query")
    ap.add_argument(
        "--cold-query", default="backup of the nas with rsync", help="the one-shot query"
    )
    ap.add_argument("--tmp", type=Path, default=None, help="where the journals go")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        result = CHILDREN[args.child](json.loads(sys.stdin.read()))
        print(json.dumps(result))
        return
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.sizes is None:
        args.sizes = "2000,10000" if args.quick else "10000,100000"
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    pkgs = [str(ROOT / p) for p in ("palyra_cli", "palyrad", "routines")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *pkgs], check=True)

    from palyrad.domain.memory_embedding import BUILTIN_DIM, BUILTIN_NAME
    from palyrad.domain.memory_search import MIN_POOL, RESCORE_FACTOR

    vocab = Vocabulary(args.seed, args.zipf_offset)
    queries = make_queries(vocab, args.queries, args.seed)
    mods = {m: sum(1 for q in queries if q["mod"] == m) for m in ("typo", "variant")}
    tmp_root = args.tmp or Path(tempfile.gettempdir())
    one, five, _ = os.getloadavg()
    method = (
        f"method: {os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}, Python"
        f" {platform.python_version()}, SQLite {sqlite3.sqlite_version}, palyra"
        f" {palyra_version(ROOT)}; load average {one:.2f} {five:.2f} at start; sizes"
        f" {', '.join(f'{n:,}' for n in sizes)} items, {args.rounds} rounds each. Corpus: seeded"
        f" synthetic notes of 60–300 chars, {len(vocab):,} distinct words (Zipf–Mandelbrot"
        f" content words, 1/(rank + {args.zipf_offset:g}), {STOP_SHARE:.0%} stop words), 0–2"
        f" of {len(TAGS)} tags; inserted without vectors in transactions of {args.batch} (once"
        " per size). Backfill: per round"
        " a copy of the un-embedded journal file, a fresh child process running"
        f" ops.memory.backfill with {BUILTIN_NAME} ({BUILTIN_DIM} dims; batches of 64);"
        " items/s, its CPU s and VmHWM, time per step (timers around unembedded, embed,"
        " stored_vector, store_vectors). Search: per round a fresh child on round 1's embedded"
        f" journal; {len(queries)} fixed queries of 1–4 words ({mods['typo']} with a typo,"
        f" {mods['variant']} a suffix variant), limit {LIMIT}, after one warm-up query per side"
        " (the hybrid's loads the VectorIndex: 'cold load in process'); per query A B or B A"
        " alternately: A = ops.memory.search (hybrid: BM25 pool"
        f" {MIN_POOL}, Hamming scan, {MIN_POOL * RESCORE_FACTOR} re-scored, RRF, items'"
        f" JSON), B = journal.memory.text_matches(fts_query(words(q)), {LIMIT}) +"
        " journal.memory.by_seq (plain FTS5 BM25 + the items' fetch); p50/p99/max per round"
        " (nearest rank). One-shot: per round one fresh child per side, Journal(path) →"
        " results of one query (imports before the timer), page cache warm. Then a separate"
        " breakdown pass of the hybrid (timers around its steps) and the query plans of one"
        " search. Host busy = all cores' busy share over the search child (psutil). Median of"
        " the per-round figures | worst round."
    )
    print(method, flush=True)
    sizes_out: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="palyra-bench-memory-", dir=tmp_root) as d:
        for n in sizes:
            sizes_out.append(one_size(args, vocab, queries, n, Path(d)))
    print("\nsummary (median | worst round):")
    for size in sizes_out:
        lines, agg = summarize(size)
        summary[str(size["items"])] = agg
        for line in lines + slow_queries(size, queries):
            print(line)
    goal = summary.get(str(GOAL_SIZE))
    if goal is not None:
        p99 = goal["hybrid p99 ms"]["median"]
        w = goal["hybrid p99 ms"]["worst"]
        ok = p99 is not None and p99 <= GOAL_P99_MS
        print(
            f"goal: hybrid search p99 ≤ {GOAL_P99_MS:g} ms at {GOAL_SIZE:,} items:"
            f" {'met' if ok else 'MISSED'} (median of per-round p99 {fmt(p99, ' ms', 1)},"
            f" worst round {fmt(w, ' ms', 1)})"
        )
    else:
        print(f"goal: hybrid search p99 ≤ {GOAL_P99_MS:g} ms at {GOAL_SIZE:,} items: not run")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    out = args.out or RESULTS / f"memory-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "method": method,
                "args": vars(args),
                "queries": queries,
                "sizes": sizes_out,
                "summary": summary,
            },
            indent=1,
            default=str,
        )
    )
    print(f"raw numbers: {out}")


if __name__ == "__main__":
    main()
