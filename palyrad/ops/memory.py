"""``palyra memory …`` (SPEC §4.8) and the memory work of the background queue (SPEC §6).

Every command works on the journal directly, daemon running or not: an item added is stored
(and, with the built-in embedder, embedded) before the command returns, and searchable at
once. A command embedder (``[memory] embedder = [...]``) is not run by ``add``: the item is
found by its text at once and by meaning once ``embeddings_backfill`` has run (``add``
queues one and pokes the executor). Search is ``palyrad.domain.memory_search``'s hybrid over
``palyrad.ops.memory_index``'s cached codes.

Maintenance keeps the store inside ``[memory]``: expired items first, then the oldest beyond
``max_entries``, then the oldest beyond ``max_bytes``, each in transactions of at most
``MAINTENANCE_BATCH`` items (a search, a reader of the WAL, never waits on it; a writer waits
at most one batch), then one bounded incremental-vacuum step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from palyrad.domain.memory import (
    DAY_MS,
    MAX_LIST,
    SOURCE_OPERATOR,
    check_id,
    check_limit,
    check_query,
    check_tag,
    check_tags,
    check_text,
    check_ttl_days,
    format_time,
    item_to_json,
)
from palyrad.domain.memory_embedding import (
    BUILTIN_NAME,
    STOP_WORDS,
    Embedder,
    code_int,
    encode_vector,
    similarity,
)
from palyrad.domain.memory_search import (
    MIN_SIMILARITY,
    RELATIVE_SIMILARITY,
    RESCORE_FACTOR,
    fts_query,
    fts_terms,
    fuse,
    pool_size,
)
from palyrad.domain.runs import new_ulid
from palyrad.domain.tasks import EMBEDDINGS_BACKFILL
from palyrad.journal import NewMemoryItem, StoredVector
from palyrad.ops.memory_index import VectorIndex, index_for
from palyrad.runtime.command_embedder import EmbedderError, make_embedder
from palyrad.runtime.notify import poke_service
from routines.errors import PalyraError

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.config import DaemonConfig
    from palyrad.runtime.home import Home

BACKFILL_BATCH = 64  # SPEC §6
MAINTENANCE_BATCH = 500
VACUUM_PAGES = 2_000
# The maintenance ticks' key: one backfill at a time, whoever queued it (a running one
# loops until nothing is left, so it also embeds what was added meanwhile).
BACKFILL_KEY = EMBEDDINGS_BACKFILL


# A search waits this long for a command embedder to embed its query, then answers by text
# (a backfill batch gets the embedder's full minute).
QUERY_EMBED_TIMEOUT_S = 10.0


def embedder_of(config: DaemonConfig, timeout_s: float = 60.0) -> Embedder:
    return make_embedder(config.memory_embedder, timeout_s)


def queue_backfill(journal: Journal, home: Home | None, now_ms: int) -> None:
    """Queue an ``embeddings_backfill`` (unless one is pending or running) for an item
    stored without a vector, and poke the executor when there is a home to poke through."""
    journal.tasks.enqueue(
        new_ulid(now_ms), EMBEDDINGS_BACKFILL, "{}", now_ms, unique_key=BACKFILL_KEY
    )
    if home is not None:
        poke_service(home.run_dir, "executor")


def stored_vector(embedder: Embedder, vector: list[float]) -> StoredVector:
    quantized, code = encode_vector(vector)
    return StoredVector(embedder.name, quantized, code)


def new_item(
    text: str,
    tags: tuple[str, ...],
    source: str,
    now_ms: int,
    ttl_days: int,
    embedder: Embedder | None,
) -> NewMemoryItem:
    """A checked item, with its vector when ``embedder`` is the in-process built-in one
    (cheap); a command embedder's vectors come from the backfill."""
    text = check_text(text)
    vector = None
    if embedder is not None and embedder.name == BUILTIN_NAME:
        vector = stored_vector(embedder, embedder.embed([text])[0])
    return NewMemoryItem(
        item_id=new_ulid(now_ms),
        text=text,
        tags=check_tags(tags),
        source=source,
        created_ms=now_ms,
        expires_ms=now_ms + check_ttl_days(ttl_days) * DAY_MS,
        vector=vector,
    )


def add(
    journal: Journal,
    home: Home | None,
    config: DaemonConfig,
    text: str,
    tags: tuple[str, ...],
    now_ms: int,
    ttl_days: int | None = None,
) -> dict[str, Any]:
    """``palyra memory add``: the stored item's JSON."""
    embedder = embedder_of(config)
    item = new_item(
        text,
        tags,
        SOURCE_OPERATOR,
        now_ms,
        config.memory_ttl_days if ttl_days is None else ttl_days,
        embedder,
    )
    stored = journal.memory.insert([item])[0]
    if item.vector is None:
        queue_backfill(journal, home, now_ms)
    return item_to_json(stored)


@dataclass(frozen=True, slots=True)
class SearchResults:
    results: list[dict[str, Any]]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"results": self.results}
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def search(
    journal: Journal,
    embedder: Embedder,
    query: str,
    now_ms: int,
    *,
    limit: int = 10,
    tag: str | None = None,
    index: VectorIndex | None = None,
) -> SearchResults:
    """Hybrid search (``memory_search``): items sharing a word with the query or close to
    it in embedding space, best first, each with its ``score``. An embedder that fails
    leaves the text half working and says so in ``warnings``."""
    query = check_query(query)
    limit = check_limit(limit)
    if tag is not None:
        tag = check_tag(tag)
    pool = pool_size(limit)
    # Stop words match nearly every item: BM25 gives them almost no weight, but FTS5 would
    # still walk their whole doclists. They count only in a query of nothing else.
    terms = fts_terms(query)
    terms = [w for w in terms if w.casefold() not in STOP_WORDS] or terms
    text_hits = (
        [s for s, _ in journal.memory.text_matches(fts_query(terms), pool, tag)] if terms else []
    )
    warnings: list[str] = []
    vector_hits: list[tuple[int, float]] = []
    try:
        qvec = embedder.embed([query])[0]
    except EmbedderError as exc:
        warnings.append(f"searched by text only: {exc}")
    else:
        vector_hits = _nearest(journal, embedder.name, qvec, pool, tag, index)
    fused = fuse(text_hits, vector_hits)
    items = journal.memory.by_seq([r.seq for r in fused], now_ms, tag)
    results: list[dict[str, Any]] = []
    for ranked in fused:
        item = items.get(ranked.seq)
        if item is None:
            continue
        entry = item_to_json(item)
        entry["score"] = round(ranked.score, 4)
        entry["matched"] = {
            "text_rank": ranked.text_rank,
            "similarity": None if ranked.similarity is None else round(ranked.similarity, 4),
        }
        results.append(entry)
        if len(results) >= limit:
            break
    return SearchResults(results, warnings)


# node_rpc answers within milliseconds once its index is warm; the first search after a
# daemon start loads it (~0.1 s per 100 000 items) — well inside this.
DAEMON_SEARCH_TIMEOUT_S = 5.0


def search_via_daemon(
    home: Home, query: str, *, limit: int = 10, tag: str | None = None
) -> SearchResults | None:
    """The same search, answered by the running daemon from its warm index; None when no
    daemon serves it (not running, a command embedder, or any failure: search locally)."""
    from palyrad.ops.nodes import SOCKET_NAME
    from palyrad.runtime.control_client import NotListening, request

    query = check_query(query)
    check_limit(limit)
    if tag is not None:
        check_tag(tag)
    message = {"op": "memory_search", "query": query, "limit": limit, "tag": tag}
    try:
        reply = request(home.run_dir, message, DAEMON_SEARCH_TIMEOUT_S, name=SOCKET_NAME)
    except (NotListening, OSError, ValueError):
        return None
    if not isinstance(reply, dict) or reply.get("ok") is not True:
        return None
    results, warnings = reply.get("results"), reply.get("warnings", [])
    if not isinstance(results, list) or not isinstance(warnings, list):
        return None
    return SearchResults(results, warnings)


def _nearest(
    journal: Journal,
    embedder: str,
    qvec: list[float],
    pool: int,
    tag: str | None,
    index: VectorIndex | None,
) -> list[tuple[int, float]]:
    quantized, code = encode_vector(qvec)
    if not any(quantized):
        return []  # a query without features (punctuation only) is near nothing
    index = index if index is not None else index_for(journal)
    with index.lock:
        index.refresh(journal, embedder)
        allowed = set(journal.memory.tagged(tag)) if tag is not None else None
        near = index.nearest(code_int(code), pool * RESCORE_FACTOR, allowed)
    vectors = journal.memory.quantized(near, embedder)
    scored = sorted(
        ((similarity(quantized, vectors[s]), s) for s in near if s in vectors),
        key=lambda p: (-p[0], -p[1]),
    )
    if not scored:
        return []
    bar = max(MIN_SIMILARITY, RELATIVE_SIMILARITY * scored[0][0])
    return [(s, sim) for sim, s in scored if sim >= bar][:pool]


def list_items(journal: Journal, now_ms: int, limit: int = 50) -> dict[str, Any]:
    """``palyra memory list``: live items, newest first."""
    items = journal.memory.newest(check_limit(limit, MAX_LIST), now_ms)
    return {"items": [item_to_json(i) for i in items]}


def delete(journal: Journal, item_id: str, now_ms: int) -> None:
    item_id = check_id(item_id, "memory item")
    if not journal.memory.delete(item_id, now_ms):
        raise PalyraError(f"no memory item {item_id}", "list them: palyra memory list")


def stats(journal: Journal, config: DaemonConfig, now_ms: int) -> dict[str, Any]:
    """``palyra memory stats`` (SPEC §4.8): ``embedded + not_embedded = entries``."""
    name = embedder_of(config).name
    s = journal.memory.stats(name, now_ms)
    return {
        "entries": s.entries,
        "bytes": s.bytes,
        "embedded": s.embedded,
        "not_embedded": s.entries - s.embedded,
        "embedder": s.embedder,
        "refused": journal.memory.refused(name, now_ms),
        "oldest_at": format_time(s.oldest_ms),
        "oldest_at_unix_ms": s.oldest_ms,
        "max_entries": config.memory_max_entries,
        "max_bytes": config.memory_max_bytes,
    }


# --- the background queue's memory work ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackfillResult:
    embedded: int
    refused: tuple[tuple[int, str], ...] = ()  # (seq, error) of texts the embedder refused

    def note(self, embedder: str) -> str:
        text = f"embedded {self.embedded} items with {embedder}"
        if self.refused:
            text += (
                f"; {len(self.refused)} items refused (skipped until the embedder or the item"
                f" changes): {self.refused[0][1]}"
            )
        return text


def backfill(
    journal: Journal,
    embedder: Embedder,
    now: Callable[[], int],
    keep_going: Callable[[], bool],
) -> BackfillResult:
    """Embed every live item without a vector from ``embedder``, ``BACKFILL_BATCH`` at a
    time, each batch its own transaction; stop when ``keep_going()`` says the lease is lost.

    A batch the embedder fails is retried one text at a time: the texts it refuses alone are
    remembered as refused (so one text over a model's limit never stalls everything after
    it), provided the embedder works at all — if it answers none of them and never answered
    here before, it is broken, and its ``EmbedderError`` propagates (the task retries)."""
    done = 0
    refused: list[tuple[int, str]] = []
    after = 0
    while True:
        batch = journal.memory.unembedded(embedder.name, now(), BACKFILL_BATCH, after)
        if not batch:
            return BackfillResult(done, tuple(refused))
        after = batch[-1][0]
        try:
            vectors = embedder.embed([text for _, text in batch])
            rows = [
                (seq, stored_vector(embedder, vec))
                for (seq, _), vec in zip(batch, vectors, strict=True)
            ]
        except (EmbedderError, ValueError) as exc:
            rows, alone = _one_by_one(embedder, batch)
            if not rows and not journal.memory.has_vectors(embedder.name) and not done:
                if isinstance(exc, EmbedderError):
                    raise
                raise EmbedderError(
                    f"embedder {embedder.name} returned a bad vector: {exc}"
                ) from exc
            journal.memory.record_refusals(embedder.name, alone, now())
            refused.extend(alone)
        done += journal.memory.store_vectors(rows)
        if not keep_going():
            return BackfillResult(done, tuple(refused))


def _one_by_one(
    embedder: Embedder, batch: list[tuple[int, str]]
) -> tuple[list[tuple[int, StoredVector]], list[tuple[int, str]]]:
    """Embed each text alone: (vectors of those it took, (seq, error) of those it refused)."""
    rows: list[tuple[int, StoredVector]] = []
    refused: list[tuple[int, str]] = []
    for seq, text in batch:
        try:
            rows.append((seq, stored_vector(embedder, embedder.embed([text])[0])))
        except (EmbedderError, ValueError) as exc:
            refused.append((seq, str(exc)))
    return rows, refused


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    expired: int
    over_entries: int
    over_bytes: int
    free_pages: int
    forgotten: int = 0  # learning reflections and candidates past their use

    def note(self) -> str:
        return (
            f"deleted {self.expired} expired, {self.over_entries} over max_entries,"
            f" {self.over_bytes} over max_bytes; forgot {self.forgotten} learning rows;"
            f" {self.free_pages} free pages before vacuum"
        )


def maintain(
    journal: Journal,
    config: DaemonConfig,
    now: Callable[[], int],
    keep_going: Callable[[], bool],
) -> MaintenanceResult:
    """TTL, then ``max_entries``, then ``max_bytes`` (oldest first), then a bounded
    incremental vacuum (see the module docstring)."""
    expired = 0
    while batch := journal.memory.expired(now(), MAINTENANCE_BATCH):
        expired += journal.memory.delete_seqs(batch, now())
        if not keep_going():
            return MaintenanceResult(expired, 0, 0, 0, 0)
    count, size = journal.memory.totals()
    over_entries = 0
    while count > config.memory_max_entries:
        oldest = journal.memory.oldest(min(MAINTENANCE_BATCH, count - config.memory_max_entries))
        gone = journal.memory.delete_seqs([seq for _, seq, _ in oldest], now())
        over_entries += gone
        count, size = journal.memory.totals()
        if not gone or not keep_going():
            break
    over_bytes = 0
    while size > config.memory_max_bytes:
        excess, picked = size - config.memory_max_bytes, []
        for _, seq, nbytes in journal.memory.oldest(MAINTENANCE_BATCH):
            picked.append(seq)
            excess -= nbytes
            if excess <= 0:
                break
        gone = journal.memory.delete_seqs(picked, now())
        over_bytes += gone
        count, size = journal.memory.totals()
        if not gone or not keep_going():
            break
    forgotten = _forget_learning(journal, config, now, keep_going)
    free = journal.memory.free_pages(VACUUM_PAGES)
    return MaintenanceResult(expired, over_entries, over_bytes, free, forgotten)


# A reflection row answers "was this run read?" (a retried task) and "when did this routine
# last teach?" (the cooldown): kept this long, or the cooldown if longer.
REFLECTION_KEEP_MS = 30 * DAY_MS


def _forget_learning(
    journal: Journal,
    config: DaemonConfig,
    now: Callable[[], int],
    keep_going: Callable[[], bool],
) -> int:
    """Reflections past their use, and candidates older than an item would live (a
    candidate nobody decided on within ``ttl_days`` would have expired as an item)."""
    forgotten = 0
    while True:
        at = now()
        gone = journal.learning.prune(
            at - max(REFLECTION_KEEP_MS, config.learning_cooldown_ms),
            at - config.memory_ttl_days * DAY_MS,
            MAINTENANCE_BATCH,
        )
        forgotten += gone
        if gone < MAINTENANCE_BATCH or not keep_going():
            return forgotten
