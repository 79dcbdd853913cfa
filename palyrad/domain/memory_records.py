"""The memory store's records (SPEC §4.8): values the journal stores and returns and the
domain turns into JSON (the journal re-exports them with its other records)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One memory item (SPEC §4.8): immutable text with tags, where it came from (``operator``
    or a run id) and when it expires. ``seq`` is its row number (full-text and vector key)."""

    seq: int
    item_id: str
    text: str
    tags: tuple[str, ...]
    source: str
    created_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class LearningCandidate:
    """A learning candidate (SPEC §4.8): ``pending`` until an operator decides, ``written``
    when its confidence wrote it to memory at once; ``item_id`` is the item it became."""

    candidate_id: str
    run_id: str
    line_no: int
    routine_id: str
    kind: str
    text: str
    confidence: float
    created_ms: int
    status: str
    decided_ms: int | None
    item_id: str | None
