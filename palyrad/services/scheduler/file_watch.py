"""file_watch triggers: watchdog observers, matching, and debounced bursts.

One watch per (directory, recursive) pair, shared by every routine that needs it. A path
that does not exist yet is watched through its nearest existing ancestor, and the watches are
reconciled when something appears on the way to it, so directories created later are picked
up. Events collect per routine into a *burst*; a burst settles when no matching event arrived
for ``debounce_ms`` and then becomes exactly one trigger whose payload lists the changes.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch

from routines.model import FileWatchTrigger

MAX_EVENTS_PER_BURST = 1_000

_KIND_OF: dict[type, str] = {
    FileCreatedEvent: "created",
    DirCreatedEvent: "created",
    FileModifiedEvent: "modified",
    FileDeletedEvent: "deleted",
    DirDeletedEvent: "deleted",
    FileMovedEvent: "moved",
    DirMovedEvent: "moved",
}


@dataclass(frozen=True, slots=True)
class Target:
    """One routine path: what it is watched through and how events are matched."""

    routine_id: str
    path: str  # absolute, ~ expanded
    trigger: FileWatchTrigger
    exists_as_dir: bool
    exists: bool

    def in_scope(self, p: str) -> bool:
        """Whether path ``p`` is under what this target watches (itself, or its children)."""
        if not self.exists or not self.exists_as_dir:
            # A file, or a path still to be created: the path itself (or below it once it
            # turns out to be a directory created later).
            return p == self.path or (self.trigger.recursive and p.startswith(self.path + os.sep))
        if self.trigger.recursive:
            return p.startswith(self.path + os.sep)
        return os.path.dirname(p) == self.path

    def matches_name(self, p: str) -> bool:
        """Whether ``p`` matches the trigger's patterns and none of its ignores."""
        name = os.path.basename(p)
        rel = os.path.relpath(p, self.path) if p.startswith(self.path + os.sep) else name
        t = self.trigger
        if not any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(rel, pat) for pat in t.patterns):
            return False
        return not any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(rel, pat) for pat in t.ignore)


@dataclass
class Burst:
    """One routine's changes since its burst began; settles ``debounce_s`` after the last."""

    debounce_s: float
    last_event: float
    events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _watch_point(path: str, recursive: bool) -> tuple[str, bool]:
    """Where to watch ``path`` from: itself if a dir, its parent if a file, else the
    nearest existing ancestor (non-recursive: we only wait for the next step to appear)."""
    if os.path.isdir(path):
        return path, recursive
    parent = os.path.dirname(path)
    if os.path.exists(path):
        return parent, False
    while parent and not os.path.isdir(parent):
        nxt = os.path.dirname(parent)
        if nxt == parent:
            break
        parent = nxt
    return parent, False


class _Handler(FileSystemEventHandler):
    def __init__(self, manager: FileWatchManager, key: tuple[str, bool]) -> None:
        self.manager = manager
        self.key = key

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.manager.on_event(self.key, event)


class FileWatchManager:
    """Owns the watches of every file_watch routine and the bursts they produce."""

    def __init__(self, observer: BaseObserver, wake: Any) -> None:
        self.observer = observer
        self.wake = wake
        self.lock = threading.Lock()
        self.watches: dict[tuple[str, bool], ObservedWatch] = {}
        self.targets: dict[tuple[str, bool], list[Target]] = {}
        self.bursts: dict[str, Burst] = {}
        self.triggers: dict[str, FileWatchTrigger] = {}
        self.dirty = False  # something appeared that may need a new watch

    def reconcile(self, triggers: dict[str, FileWatchTrigger] | None = None) -> None:
        """Make the watches match the routines (and paths that exist now)."""
        if triggers is not None:
            self.triggers = triggers
        wanted: dict[tuple[str, bool], list[Target]] = {}
        for rid, trig in self.triggers.items():
            for raw in trig.paths:
                path = os.path.abspath(os.path.expanduser(raw))
                key = _watch_point(path, trig.recursive)
                target = Target(rid, path, trig, os.path.isdir(path), os.path.exists(path))
                wanted.setdefault(key, []).append(target)
        with self.lock:
            self.dirty = False
            for key in list(self.watches):
                if key not in wanted:
                    self.observer.unschedule(self.watches.pop(key))
            for key in wanted:
                if key not in self.watches and os.path.isdir(key[0]):
                    self.watches[key] = self.observer.schedule(
                        _Handler(self, key), key[0], recursive=key[1]
                    )
            self.targets = wanted
            for rid in list(self.bursts):
                if rid not in self.triggers:
                    del self.bursts[rid]
            # A directory on the way to a missing path may have appeared between choosing
            # the watch point and scheduling it (mkdir -p is that fast): its creation event
            # went to no watch, so look again rather than wait for an event that never comes.
            moved = any(
                _watch_point(t.path, k[1]) != k
                for k, targets in wanted.items()
                for t in targets
                if not t.exists
            )
            if moved:
                self.dirty = True
        if moved:
            self.wake()

    def on_event(self, key: tuple[str, bool], event: FileSystemEvent) -> None:
        """A watchdog event (observer thread): add it to the matching routines' bursts."""
        kind = _KIND_OF.get(type(event))
        if kind is None:
            return  # opened/closed and directory-modified events are noise
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        now = time.monotonic()  # debounce is a duration: monotonic, not the wall clock
        woke = False
        with self.lock:
            for target in self.targets.get(key, ()):
                if not target.exists and kind in ("created", "moved"):
                    # Something appeared on the way to a path we wait for.
                    for p in (src, dest):
                        if p and (target.path == p or target.path.startswith(p + os.sep)):
                            self.dirty = True
                            woke = True
                hit = next(
                    (p for p in (src, dest) if p and target.in_scope(p) and target.matches_name(p)),
                    None,
                )
                if hit is None or kind not in {e.value for e in target.trigger.events}:
                    continue
                if (
                    target.exists
                    and target.exists_as_dir
                    and kind == "created"
                    and os.path.isdir(hit)
                ):
                    self.dirty = self.dirty or target.trigger.recursive
                burst = self.bursts.get(target.routine_id)
                if burst is None:
                    burst = Burst(target.trigger.debounce_ms / 1000, now)
                    self.bursts[target.routine_id] = burst
                    woke = True
                burst.last_event = now
                if len(burst.events) < MAX_EVENTS_PER_BURST:
                    entry: dict[str, Any] = {"type": kind, "path": src}
                    if dest:
                        entry["dest_path"] = dest
                    burst.events.setdefault((kind, src), entry)
        if woke:
            self.wake()

    def pop_settled(self, now: float | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
        """Bursts quiet for their debounce: one (routine_id, events) per burst. ``now`` is
        ``time.monotonic()`` (a debounce measures a duration, never a wall instant)."""
        now = time.monotonic() if now is None else now
        out: list[tuple[str, list[dict[str, Any]]]] = []
        with self.lock:
            for rid, burst in list(self.bursts.items()):
                if now - burst.last_event >= burst.debounce_s:
                    out.append((rid, list(burst.events.values())))
                    del self.bursts[rid]
        return out

    def next_deadline_s(self, now: float | None = None) -> float | None:
        """Seconds until the next burst may settle (None: no burst open)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            if not self.bursts:
                return None
            return max(0.0, min(b.last_event + b.debounce_s for b in self.bursts.values()) - now)
