"""Domains that are conditions, not heartbeats: ``definitions``, ``disk`` and ``journal``
(SPEC §6). None has an automatic fix — what is wrong is the operator's to decide (an edit to
correct, files to delete) — so they are recorded, resolved when the condition clears, and
announced through ``incident.opened`` / ``incident.resolved``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson

from palyrad.journal import STATE_DEFINITIONS_ERROR
from palyrad.runtime.disk import LOW_BYTES, LOW_FRACTION, DiskSpace, disk_space
from palyrad.runtime.status import read_status
from palyrad.seams import Finding
from palyrad.services.context import ServiceContext

DEFINITIONS_SUBJECT = "routines/definitions.json"
JOURNAL_SUBJECT = "journal.sqlite3"
# A failed journal write keeps its incident open this long after the last failure: a
# write that failed once (a lock held past the busy timeout) is worth a look, and a full
# disk fails again long before this passes.
JOURNAL_ERROR_WINDOW_MS = 60_000


class DefinitionsDetector:
    """The scheduler refused definitions.json (it keeps the last good ones and records the
    errors under ``STATE_DEFINITIONS_ERROR``); cleared when it applies a valid file."""

    domain = "definitions"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        raw = self.ctx.journal.state.get(STATE_DEFINITIONS_ERROR)
        if raw is None:
            return []
        try:
            errors = [str(e) for e in orjson.loads(raw).get("errors") or []]
        except (orjson.JSONDecodeError, AttributeError):
            errors = []
        first = errors[0] if errors else "the file is invalid"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return [
            Finding(
                "definitions",
                DEFINITIONS_SUBJECT,
                "warning",
                f"definitions.json was not applied; the daemon runs the last good ones: {first}"
                f"{more}. Fix it (palyra routines validate)",
            )
        ]


class DiskDetector:
    """Less than 5 % or 500 MB free in the home's file system."""

    domain = "disk"

    def __init__(
        self, ctx: ServiceContext, space: Callable[[Path], DiskSpace] = disk_space
    ) -> None:
        self.ctx = ctx
        self.space = space  # a parameter, so the rule is tested without filling a disk

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        space = self.space(self.ctx.home.root)
        if not space.low():
            return []
        critical = space.low(LOW_FRACTION / 5, LOW_BYTES // 5)
        return [
            Finding(
                "disk",
                str(self.ctx.home.root),
                "critical" if critical else "warning",
                f"low disk space in the home: {space.describe()}; runs, logs and the journal"
                " need room (free space, or lower [history] max_runs_per_routine)",
            )
        ]


class JournalDetector:
    """A journal write failed in some service (this one included) within the last minute:
    each service reports its failures to the supervisor, which keeps the last one per service
    in run/status.json. While the journal cannot be written this incident cannot be either;
    it is opened by the first sweep that can write, and stays open a minute after the last
    failure."""

    domain = "journal"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        failures: list[tuple[int, str, str]] = []
        for proc in read_status(self.ctx.home).processes:
            err = proc.journal_error
            if err and isinstance(err.get("at_ms"), int):
                failures.append((err["at_ms"], proc.name, str(err.get("error"))))
        recent = sorted(f for f in failures if now_ms - f[0] <= JOURNAL_ERROR_WINDOW_MS)
        if not recent:
            return []
        error = recent[-1][2]
        services = ", ".join(sorted({f[1] for f in recent}))
        return [
            Finding(
                "journal",
                JOURNAL_SUBJECT,
                "critical",
                f"journal writes failed in {services}; the last: {error}"
                " (check disk space and permissions; run palyra doctor)",
                remediable=False,
            )
        ]
