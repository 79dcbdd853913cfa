"""How memory search ranks (SPEC §4.8): full text and vectors, fused by reciprocal rank.

Two lists of candidates are made independently: the full-text one (FTS5, porter-stemmed, any
query word matches, ordered by BM25) and the vector one (nearest by cosine similarity to the
query's embedding, at least ``MIN_SIMILARITY``). They are fused with reciprocal rank fusion
(Cormack, Clarke & Büttcher, SIGIR 2009): an item's score is the sum over the lists it is in
of ``1 / (RRF_K + rank)``. RRF needs no calibration between BM25 (unbounded, corpus-dependent)
and cosine (bounded, embedder-dependent) scores, which is why it is used: an item high in
both lists beats one high in only one, and an item in one list only (not embedded yet, or
sharing no word) is still found. Scores are divided by the best possible (first in both
lists), so 1.0 means "first by text and by meaning" and a lone first place scores 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

RRF_K = 60
# A vector neighbour counts when its cosine is at least MIN_SIMILARITY and at least
# RELATIVE_SIMILARITY x the best neighbour's. Unrelated texts reach ~0.2 with the builtin
# embedder (shared hashed trigrams and common words); a one-word query against a sentence
# that contains a variant of it reaches only ~0.25. The relative bar keeps the noise out when
# something is clearly close, the absolute one when nothing is. A command embedder is held
# to the same bars.
MIN_SIMILARITY = 0.2
RELATIVE_SIMILARITY = 0.5
# Candidates each list contributes (at least this, or 5 x the results asked for).
MIN_POOL = 50
# Nearest items by Hamming distance of sign codes re-scored with their full vectors.
RESCORE_FACTOR = 4


def pool_size(limit: int) -> int:
    return max(MIN_POOL, 5 * limit)


_TOKEN = re.compile(r"[^\W_]+")


def fts_terms(query: str) -> list[str]:
    """The query's words as FTS5 should see them: not case-folded here (``ß`` would become
    ``ss`` and ``İ`` two tokens, and no longer equal what FTS5's own tokenizer indexed); the
    tokenizer folds them itself."""
    return _TOKEN.findall(query)


def fts_query(words: Sequence[str]) -> str:
    """An FTS5 query matching items that share any of ``words`` (each a quoted string, so
    no word is read as FTS5 syntax: ``AND``, ``NEAR``, ``*``, ``-``, column filters)."""
    unique = dict.fromkeys(w for w in words if w)
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in unique)


@dataclass(frozen=True, slots=True)
class Ranked:
    """One fused result: its row number, normalized RRF score, and where it came from."""

    seq: int
    score: float
    text_rank: int | None  # 1-based
    similarity: float | None


def fuse(text: Sequence[int], vector: Sequence[tuple[int, float]]) -> list[Ranked]:
    """Reciprocal rank fusion of the text list (row numbers, best first) and the vector
    list ((row number, cosine), best first); best first, ties by newer row first."""
    best = 2.0 / (RRF_K + 1)
    score: dict[int, float] = {}
    text_rank: dict[int, int] = {}
    sims: dict[int, float] = {}
    for rank, seq in enumerate(text, start=1):
        if seq in text_rank:
            continue
        text_rank[seq] = rank
        score[seq] = score.get(seq, 0.0) + 1.0 / (RRF_K + rank)
    for rank, (seq, sim) in enumerate(vector, start=1):
        if seq in sims:
            continue
        sims[seq] = sim
        score[seq] = score.get(seq, 0.0) + 1.0 / (RRF_K + rank)
    order = sorted(score, key=lambda s: (-score[s], -s))
    return [Ranked(s, score[s] / best, text_rank.get(s), sims.get(s)) for s in order]
