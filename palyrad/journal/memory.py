"""Memory items, their full-text index and their vectors (SPEC §4.8, §6).

Items are immutable rows of ``memory_items``; ``memory_fts`` (FTS5, porter-stemmed, external
content) indexes their text and ``memory_vectors`` holds one vector per item from the
embedder named with it. Everything an item owns is written and deleted here, in the item's
own transaction, so the three never disagree. Deletions bump ``STATE_MEMORY_CHANGED``: a
process that caches vectors (``palyrad.ops.memory_index``) reloads on a new value, and
otherwise loads only vectors with a ``vid`` above the last one it saw.

Policy lives elsewhere: what to delete first (``palyrad.services.executor.tasks.memory``),
how to rank (``palyrad.domain.memory_search``). This module answers questions in SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from palyrad.journal.connection import Domain
from palyrad.journal.records import MemoryItem, MemoryStats
from palyrad.journal.state import STATE_MEMORY_CHANGED, bump_counter, read_counter

_ITEM = "seq, item_id, text, tags, source, created_ms, expires_ms"
# Parameters per IN (...) list: far below SQLite's limit, and a bounded statement.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredVector:
    """A vector as stored: the embedder's name, int8 components and the sign-bit code."""

    embedder: str
    quantized: bytes
    code: bytes


@dataclass(frozen=True, slots=True)
class NewMemoryItem:
    item_id: str
    text: str
    tags: tuple[str, ...]
    source: str
    created_ms: int
    expires_ms: int
    vector: StoredVector | None = None


def _item(row: Sequence[object]) -> MemoryItem:
    tags = orjson.loads(str(row[3]))
    return MemoryItem(
        seq=int(row[0]),  # type: ignore[call-overload]
        item_id=str(row[1]),
        text=str(row[2]),
        tags=tuple(str(t) for t in tags),
        source=str(row[4]),
        created_ms=int(row[5]),  # type: ignore[call-overload]
        expires_ms=int(row[6]),  # type: ignore[call-overload]
    )


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Memory(Domain):
    """The memory store's rows."""

    __slots__ = ()

    # -- writes -------------------------------------------------------------------------

    def insert(self, items: Sequence[NewMemoryItem]) -> list[MemoryItem]:
        """Store items (with their vectors when given) and index their text, as one write."""
        stored: list[MemoryItem] = []
        with self._write() as db:
            for it in items:
                cur = db.execute(
                    "INSERT INTO memory_items (item_id, text, tags, source, created_ms,"
                    " expires_ms, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        it.item_id,
                        it.text,
                        orjson.dumps(list(it.tags)).decode(),
                        it.source,
                        it.created_ms,
                        it.expires_ms,
                        len(it.text.encode("utf-8")),
                    ),
                )
                seq = int(cur.lastrowid or 0)
                db.execute("INSERT INTO memory_fts (rowid, text) VALUES (?, ?)", (seq, it.text))
                db.executemany(
                    "INSERT OR IGNORE INTO memory_tags (tag, seq) VALUES (?, ?)",
                    [(t, seq) for t in it.tags],
                )
                if it.vector is not None:
                    db.execute(
                        "INSERT INTO memory_vectors (seq, embedder, quantized, code)"
                        " VALUES (?, ?, ?, ?)",
                        (seq, it.vector.embedder, it.vector.quantized, it.vector.code),
                    )
                stored.append(
                    MemoryItem(
                        seq, it.item_id, it.text, it.tags, it.source, it.created_ms, it.expires_ms
                    )
                )
        return stored

    def delete(self, item_id: str, now_ms: int) -> bool:
        """Delete one item; False when there is none with that id."""
        with self._write() as db:
            row = db.execute("SELECT seq FROM memory_items WHERE item_id = ?", (item_id,))
            found = row.fetchone()
            if found is None:
                return False
            self._delete(db, [int(found[0])], now_ms)
            return True

    def delete_seqs(self, seqs: Sequence[int], now_ms: int) -> int:
        """Delete items by row number (maintenance); how many existed."""
        if not seqs:
            return 0
        with self._write() as db:
            return self._delete(db, seqs, now_ms)

    @staticmethod
    def _delete(db: sqlite3.Connection, seqs: Sequence[int], now_ms: int) -> int:
        deleted = 0
        for part in _chunks(list(seqs)):
            marks = _marks(len(part))
            # An external-content FTS5 row is removed by telling it the text it indexed.
            db.execute(
                "INSERT INTO memory_fts (memory_fts, rowid, text)"
                f" SELECT 'delete', seq, text FROM memory_items WHERE seq IN ({marks})",
                part,
            )
            db.execute(f"DELETE FROM memory_tags WHERE seq IN ({marks})", part)
            db.execute(f"DELETE FROM memory_vectors WHERE seq IN ({marks})", part)
            db.execute(f"DELETE FROM memory_embed_failures WHERE seq IN ({marks})", part)
            cur = db.execute(f"DELETE FROM memory_items WHERE seq IN ({marks})", part)
            deleted += cur.rowcount
        if deleted:
            bump_counter(db, STATE_MEMORY_CHANGED, now_ms)
        return deleted

    def store_vectors(self, rows: Sequence[tuple[int, StoredVector]]) -> int:
        """Write vectors (replacing another embedder's) for items that still exist; each
        gets a new ``vid``, so caches pick it up. How many were stored."""
        stored = 0
        with self._write() as db:
            for seq, vec in rows:
                db.execute("DELETE FROM memory_vectors WHERE seq = ?", (seq,))
                cur = db.execute(
                    "INSERT INTO memory_vectors (seq, embedder, quantized, code)"
                    " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM memory_items WHERE seq = ?)",
                    (seq, vec.embedder, vec.quantized, vec.code, seq),
                )
                stored += cur.rowcount
        return stored

    def record_refusals(self, embedder: str, rows: Sequence[tuple[int, str]], now_ms: int) -> None:
        """Remember items ``embedder`` refused (with its error): the backfill skips them
        until the embedder changes or the item is deleted."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO memory_embed_failures (seq, embedder, error, at_ms)"
                " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM memory_items WHERE seq = ?)"
                " ON CONFLICT(seq, embedder) DO UPDATE SET error = excluded.error,"
                " at_ms = excluded.at_ms",
                [(seq, embedder, error[:2_000], now_ms, seq) for seq, error in rows],
            )

    # -- reads --------------------------------------------------------------------------

    def has_vectors(self, embedder: str) -> bool:
        """Whether ``embedder`` ever answered here (its refusals are then the text's fault)."""
        row = self._db.execute(
            "SELECT 1 FROM memory_vectors WHERE embedder = ? LIMIT 1", (embedder,)
        ).fetchone()
        return row is not None

    def refused(self, embedder: str, now_ms: int) -> int:
        """Live items ``embedder`` refused."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM memory_embed_failures f JOIN memory_items i ON i.seq = f.seq"
            " WHERE f.embedder = ? AND i.expires_ms > ?",
            (embedder, now_ms),
        ).fetchone()
        return int(row[0])

    def get(self, item_id: str) -> MemoryItem | None:
        row = self._db.execute(
            f"SELECT {_ITEM} FROM memory_items WHERE item_id = ?", (item_id,)
        ).fetchone()
        return None if row is None else _item(row)

    def newest(self, limit: int, now_ms: int) -> list[MemoryItem]:
        """Live items, newest first."""
        rows = self._db.execute(
            f"SELECT {_ITEM} FROM memory_items WHERE expires_ms > ?"
            " ORDER BY created_ms DESC, seq DESC LIMIT ?",
            (now_ms, limit),
        )
        return [_item(r) for r in rows]

    def by_seq(
        self, seqs: Sequence[int], now_ms: int, tag: str | None = None
    ) -> dict[int, MemoryItem]:
        """The live items among ``seqs`` (with ``tag``, when given)."""
        found: dict[int, MemoryItem] = {}
        for part in _chunks(list(seqs)):
            sql = f"SELECT {_ITEM} FROM memory_items WHERE seq IN ({_marks(len(part))})"
            args: list[object] = list(part)
            sql += " AND expires_ms > ?"
            args.append(now_ms)
            if tag is not None:
                sql += " AND seq IN (SELECT seq FROM memory_tags WHERE tag = ?)"
                args.append(tag)
            for row in self._db.execute(sql, args):
                item = _item(row)
                found[item.seq] = item
        return found

    def stats(self, embedder: str, now_ms: int) -> MemoryStats:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created_ms) FROM memory_items"
            " WHERE expires_ms > ?",
            (now_ms,),
        ).fetchone()
        embedded = self._db.execute(
            "SELECT COUNT(*) FROM memory_vectors v JOIN memory_items i ON i.seq = v.seq"
            " WHERE v.embedder = ? AND i.expires_ms > ?",
            (embedder, now_ms),
        ).fetchone()[0]
        oldest = None if row[2] is None else int(row[2])
        return MemoryStats(int(row[0]), int(row[1]), int(embedded), embedder, oldest)

    def totals(self) -> tuple[int, int]:
        """Every stored item (expired ones too) and their text bytes: what the capacity
        limits count."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM memory_items"
        ).fetchone()
        return int(row[0]), int(row[1])

    def text_matches(
        self, match: str, limit: int, tag: str | None = None
    ) -> list[tuple[int, float]]:
        """Row numbers matching an FTS5 query, best BM25 first, with their BM25 (lower is
        better). Expiry is checked by ``by_seq``: expired rows are few (maintenance)."""
        if tag is None:
            rows = self._db.execute(
                "SELECT rowid, bm25(memory_fts) AS r FROM memory_fts WHERE memory_fts MATCH ?"
                " ORDER BY r LIMIT ?",
                (match, limit),
            )
        else:
            # MATERIALIZED: with the tag test pushed into FTS5 (``rowid IN (...)``), FTS5
            # re-runs the whole MATCH once per tagged row — quadratic.
            rows = self._db.execute(
                "WITH m AS MATERIALIZED (SELECT rowid AS seq, bm25(memory_fts) AS r"
                " FROM memory_fts WHERE memory_fts MATCH ?)"
                " SELECT m.seq, m.r FROM m JOIN memory_tags t ON t.seq = m.seq AND t.tag = ?"
                " ORDER BY m.r LIMIT ?",
                (match, tag, limit),
            )
        return [(int(r[0]), float(r[1])) for r in rows]

    def term_counts(self, match_terms: Sequence[str]) -> dict[str, int]:
        """How many items each single-term FTS5 query matches (its document frequency)."""
        counts: dict[str, int] = {}
        for term in match_terms:
            row = self._db.execute(
                "SELECT COUNT(*) FROM memory_fts WHERE memory_fts MATCH ?", (term,)
            ).fetchone()
            counts[term] = int(row[0])
        return counts

    def tagged(self, tag: str) -> list[int]:
        return [
            int(r[0]) for r in self._db.execute("SELECT seq FROM memory_tags WHERE tag = ?", (tag,))
        ]

    def generation(self) -> int:
        """+1 by every deletion: a cache of vectors older than the current value is stale."""
        return read_counter(self._db, STATE_MEMORY_CHANGED)

    def codes_since(self, vid: int, embedder: str) -> list[tuple[int, int, bytes]]:
        """(vid, seq, code) of ``embedder``'s vectors newer than ``vid``, in vid order.
        Plain tuples (no ``sqlite3.Row``): a cold search reads 100 000 of them."""
        cur = self._db.cursor()
        cur.row_factory = None
        rows: list[tuple[int, int, bytes]] = cur.execute(
            "SELECT vid, seq, code FROM memory_vectors WHERE embedder = ? AND vid > ? ORDER BY vid",
            (embedder, vid),
        ).fetchall()
        return rows

    def quantized(self, seqs: Sequence[int], embedder: str) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for part in _chunks(list(seqs)):
            rows = self._db.execute(
                # "+embedder": a plain "embedder = ?" makes SQLite walk every vector of the
                # embedder by memory_vectors_embedder instead of looking the seqs up (O(items)).
                f"SELECT seq, quantized FROM memory_vectors WHERE seq IN ({_marks(len(part))})"
                " AND +embedder = ?",
                [*part, embedder],
            )
            found.update((int(r[0]), bytes(r[1])) for r in rows)
        return found

    def unembedded(
        self, embedder: str, now_ms: int, limit: int, after_seq: int = 0
    ) -> list[tuple[int, str]]:
        """Live items after ``after_seq`` without a vector from ``embedder`` (none, or
        another embedder's) that it did not refuse, oldest first (a backfill resumes after
        its last batch instead of re-scanning what it embedded)."""
        rows = self._db.execute(
            "SELECT i.seq, i.text FROM memory_items i LEFT JOIN memory_vectors v"
            " ON v.seq = i.seq AND v.embedder = ? WHERE i.seq > ? AND v.seq IS NULL"
            " AND i.expires_ms > ? AND NOT EXISTS (SELECT 1 FROM memory_embed_failures f"
            " WHERE f.seq = i.seq AND f.embedder = ?) ORDER BY i.seq LIMIT ?",
            (embedder, after_seq, now_ms, embedder, limit),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    def oldest_unembedded_ms(self, embedder: str, now_ms: int) -> int | None:
        """When the oldest live item without ``embedder``'s vector was stored (doctor)."""
        row = self._db.execute(
            "SELECT MIN(i.created_ms) FROM memory_items i LEFT JOIN memory_vectors v"
            " ON v.seq = i.seq AND v.embedder = ? WHERE v.seq IS NULL AND i.expires_ms > ?",
            (embedder, now_ms),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def expired(self, now_ms: int, limit: int) -> list[int]:
        rows = self._db.execute(
            "SELECT seq FROM memory_items WHERE expires_ms <= ? ORDER BY expires_ms LIMIT ?",
            (now_ms, limit),
        )
        return [int(r[0]) for r in rows]

    def oldest(
        self, limit: int, after: tuple[int, int] | None = None
    ) -> list[tuple[int, int, int]]:
        """(created_ms, seq, bytes) of the oldest items, after the (created_ms, seq) given."""
        if after is None:
            rows = self._db.execute(
                "SELECT created_ms, seq, bytes FROM memory_items ORDER BY created_ms, seq LIMIT ?",
                (limit,),
            )
        else:
            rows = self._db.execute(
                "SELECT created_ms, seq, bytes FROM memory_items WHERE (created_ms, seq) > (?, ?)"
                " ORDER BY created_ms, seq LIMIT ?",
                (after[0], after[1], limit),
            )
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def free_pages(self, pages: int) -> int:
        """One bounded ``incremental_vacuum`` step (a journal created with auto_vacuum =
        INCREMENTAL); how many free pages were left before it."""
        mode = int(self._db.execute("PRAGMA auto_vacuum").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        if mode == 2 and free:
            self._db.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
        return free
