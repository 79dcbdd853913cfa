"""``memory_search`` on node_rpc's request socket: memory search from a warm index.

A one-shot ``palyra memory search`` would load every vector's sign code before its first
comparison (~0.1 s at 100 000 items); node_rpc lives as long as the daemon and keeps them
(``palyrad.ops.memory_index``), so the CLI asks it when the daemon runs and searches by
itself otherwise. Only the built-in embedder is served here: a command embedder runs a
process per query, which must not hold node_rpc's main loop (the CLI then runs it itself).
"""

from __future__ import annotations

from typing import Any

from palyrad.domain.memory_embedding import BuiltinEmbedder
from palyrad.journal import Journal
from palyrad.ops.memory import search
from palyrad.runtime.config import DaemonConfig
from palyrad.seams import Clock
from routines.errors import InvalidInput


class MemorySearch:
    """Answers ``{"op": "memory_search", "query", "limit", "tag"}`` with the search JSON."""

    def __init__(self, journal: Journal, clock: Clock, config: DaemonConfig) -> None:
        self._journal = journal
        self._clock = clock
        self._served = config.memory_embedder == "builtin"
        self._embedder = BuiltinEmbedder()

    def __call__(self, msg: dict[str, Any]) -> dict[str, Any]:
        if not self._served:
            return {"ok": False, "error": "unavailable", "message": "a command embedder"}
        query, limit, tag = msg.get("query"), msg.get("limit", 10), msg.get("tag")
        if not isinstance(query, str) or not isinstance(limit, int) or isinstance(limit, bool):
            return {"ok": False, "error": "invalid", "message": "query and limit are required"}
        if tag is not None and not isinstance(tag, str):
            return {"ok": False, "error": "invalid", "message": "tag must be a string"}
        try:
            found = search(
                self._journal, self._embedder, query, self._clock.now_ms(), limit=limit, tag=tag
            )
        except InvalidInput as exc:
            return {"ok": False, "error": "invalid", "message": str(exc)}
        return {"ok": True, **found.to_json()}
