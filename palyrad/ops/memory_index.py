"""The vectors a process searches, kept in memory between searches (SPEC §4.8 search).

Each item's vector has a sign-bit code (one bit per dimension, ``memory_embedding``): the
Hamming distance of two codes estimates the angle between the vectors (sign random
projections, Charikar 2002), and ``(a ^ b).bit_count()`` on Python ints costs ~100 ns. So a
search scans every code in one list comprehension (~25 ms at 100 000 items, no dependency)
and re-scores only the nearest few hundred with their int8 vectors, read by row number.

The codes are cached per (journal file, embedder): a refresh reads only vectors newer than
the last ``vid`` seen, and reloads everything when the journal's memory generation moved
(an item was deleted) or the embedder changed. A one-shot CLI pays the full load once
(reported by ``bench/memory.py`` as the cold search).
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, field
from pathlib import Path

from palyrad.domain.memory_embedding import code_int
from palyrad.journal import Journal


@dataclass
class VectorIndex:
    """Sign codes of one embedder's vectors in one journal."""

    key: tuple[Path, str] | None = None
    generation: int = -1
    vid: int = 0
    seqs: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, journal: Journal, embedder: str) -> None:
        """Bring the cache up to the journal's vectors (read generation first: a deletion
        after it is seen by the next refresh; a deleted row found meanwhile is dropped by
        the item lookup that follows every search)."""
        key = (journal.path, embedder)
        generation = journal.memory.generation()
        if key != self.key or generation != self.generation:
            self.key, self.generation, self.vid = key, generation, 0
            self.seqs, self.codes, self.position = [], [], {}
        rows = journal.memory.codes_since(self.vid, embedder)
        if not rows:
            return
        if not self.seqs:  # a full load, in bulk (one vector per seq: no duplicates)
            self.seqs = [r[1] for r in rows]
            self.codes = [code_int(r[2]) for r in rows]
            self.position = dict(zip(self.seqs, range(len(self.seqs)), strict=True))
        else:
            for _, seq, code in rows:
                value = code_int(code)
                at = self.position.get(seq)
                if at is None:
                    self.position[seq] = len(self.seqs)
                    self.seqs.append(seq)
                    self.codes.append(value)
                else:
                    self.codes[at] = value
        self.vid = rows[-1][0]

    def nearest(self, query_code: int, k: int, allowed: set[int] | None = None) -> list[int]:
        """The ``k`` row numbers whose codes are nearest ``query_code`` (Hamming)."""
        codes, seqs = self.codes, self.seqs
        if allowed is not None:
            picked = [i for i, s in enumerate(seqs) if s in allowed]
            dist = [(codes[i] ^ query_code).bit_count() for i in picked]
            best = heapq.nsmallest(k, range(len(picked)), key=dist.__getitem__)
            return [seqs[picked[i]] for i in best]
        dist = [(c ^ query_code).bit_count() for c in codes]
        best = heapq.nsmallest(k, range(len(dist)), key=dist.__getitem__)
        return [seqs[i] for i in best]

    def __len__(self) -> int:
        return len(self.seqs)


_INDEXES: dict[Path, VectorIndex] = {}
_INDEXES_LOCK = threading.Lock()


def index_for(journal: Journal) -> VectorIndex:
    """This process's cache for ``journal``'s file (one per file, shared by threads)."""
    with _INDEXES_LOCK:
        found = _INDEXES.get(journal.path)
        if found is None:
            found = _INDEXES[journal.path] = VectorIndex()
        return found
