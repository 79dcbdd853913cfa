"""definitions.json as doctor reads it: the bytes and their hash, and — without validating
10 000 routines again — the few facts other checks need (which routines are prompts, which
folders file watches hold).

The hash is ``"sha256:" + hexdigest`` of the bytes, exactly as the scheduler journals it
when it applies or refuses a file, so doctor can tell "the daemon validated exactly these
bytes" from one comparison. (Not ``ops.definitions_hash.current_file_hash``: that one
remembers its result in the journal, and doctor writes nothing.)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from routines.definitions_file import read_document
from routines.validate import Issue


@dataclass(frozen=True, slots=True)
class DefinitionsFile:
    """The file's bytes (None when missing or unreadable), why not, and their hash."""

    path: Path
    data: bytes | None
    missing: bool
    issue: Issue | None
    digest: str | None  # "sha256:<hex>" of ``data``

    @classmethod
    def read(cls, path: Path) -> DefinitionsFile:
        """Read ``path`` as the daemon does (never blocking on a FIFO, size-capped)."""
        read = read_document(path)
        digest = None if read.data is None else "sha256:" + hashlib.sha256(read.data).hexdigest()
        return cls(path, read.data, read.missing, read.issue, digest)


@dataclass(frozen=True, slots=True)
class WatchedPath:
    """One path of an enabled file_watch routine (``~`` expanded)."""

    path: str
    recursive: bool


@dataclass(frozen=True, slots=True)
class RoutineFacts:
    """What enabled routines need from the machine. ``source``: the file they were read
    from (None: no routines anywhere)."""

    source: Path | None = None
    prompt_ids: tuple[str, ...] = ()
    watched: tuple[WatchedPath, ...] = ()


def routine_facts(current: DefinitionsFile, last_good: Path) -> RoutineFacts:
    """The facts of the file when it parses as a definitions document, else of the last
    good copy (what a running daemon keeps running while the file is broken)."""
    routines = _routines(current.data)
    if routines is not None:
        return _facts(current.path, routines)
    routines = _routines(read_document(last_good).data)
    if routines is not None:
        return _facts(last_good, routines)
    return RoutineFacts()


def _routines(data: bytes | None) -> list[Any] | None:
    if data is None:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    routines = doc.get("routines") if isinstance(doc, dict) else None
    return routines if isinstance(routines, list) else None


def _facts(source: Path, routines: list[Any]) -> RoutineFacts:
    """Read leniently: the validator has (or will have) judged the document; a malformed
    entry here is skipped, never an exception."""
    prompts: list[str] = []
    watched: list[WatchedPath] = []
    for r in routines:
        if not isinstance(r, dict) or r.get("enabled", True) is False:
            continue
        action, trigger = r.get("action"), r.get("trigger")
        if isinstance(action, dict) and action.get("kind") == "prompt":
            prompts.append(str(r.get("id")))
        if isinstance(trigger, dict) and trigger.get("kind") == "file_watch":
            recursive = trigger.get("recursive") is True
            for p in trigger.get("paths") or ():
                if isinstance(p, str):
                    watched.append(WatchedPath(os.path.expanduser(p), recursive))
    return RoutineFacts(source, tuple(prompts), tuple(watched))
