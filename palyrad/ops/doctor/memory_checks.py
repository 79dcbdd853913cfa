"""The ``memory`` check: the embedder can run, the store is embedded and inside its limits,
and learning candidates waiting for a decision are mentioned.

A command embedder is judged as the executor would start it (the program resolvable and
executable), never run: doctor stays read-only and inside its time budget. Items waiting for
vectors longer than two backfill intervals mean the backfill is failing or not running; the
last ``embeddings_backfill`` task's error says which. A store over ``max_entries`` or
``max_bytes`` by more than one maintenance batch means maintenance is not keeping up.
"""

from __future__ import annotations

import os
import shutil

from palyrad.domain.memory_embedding import BUILTIN_NAME
from palyrad.domain.tasks import EMBEDDINGS_BACKFILL
from palyrad.ops.doctor.check import DoctorCheck
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, fail, ok, warn
from palyrad.ops.memory import MAINTENANCE_BATCH, embedder_of

BACKLOG_INTERVALS = 2


def command_problem(argv: tuple[str, ...]) -> str | None:
    """Why ``argv[0]`` cannot be started, or None."""
    program = argv[0]
    found = shutil.which(program) if os.sep not in program else program
    if found is None:
        return f"{program!r} is not found on PATH"
    if not os.path.isfile(found):
        return f"{found} is not a file"
    if not os.access(found, os.X_OK):
        return f"{found} is not executable"
    return None


class MemoryCheck(DoctorCheck):
    """The memory store and its embedder."""

    check_id = "memory"

    def run(self, ctx: DoctorContext) -> CheckResult:
        config = ctx.config
        setting = config.memory_embedder
        if isinstance(setting, tuple):
            why = command_problem(setting)
            if why is not None:
                return fail(
                    self.check_id,
                    f"the [memory] embedder command cannot run: {why}",
                    'fix [memory] embedder in palyra.toml, or set embedder = "builtin"',
                )
        journal = ctx.journal
        if journal is None:
            return ok(self.check_id, "no journal yet (nothing stored)")
        now = ctx.now_ms
        name = embedder_of(config).name
        stats = journal.memory.stats(name, now)
        waiting = journal.learning.pending_count()
        summary = f"{stats.entries} items, {stats.embedded} embedded by {name}"
        if waiting:
            summary += f"; {waiting} learning candidates waiting (palyra memory candidates)"
        count, size = journal.memory.totals()
        if (
            count > config.memory_max_entries + MAINTENANCE_BATCH
            or size > config.memory_max_bytes * 1.1
        ):
            return warn(
                self.check_id,
                f"{summary}; over the [memory] limits ({count} items, {size} bytes stored)",
                "maintenance is not keeping up: see palyra tasks list --kind memory-maintenance",
            )
        oldest = journal.memory.oldest_unembedded_ms(name, now)
        if oldest is not None and now - oldest > BACKLOG_INTERVALS * config.backfill_interval_ms:
            last = journal.tasks.newest(kind=EMBEDDINGS_BACKFILL, limit=1)
            why = (
                f" (last backfill: {last[0].status}"
                + (f", {last[0].error})" if last and last[0].error else ")")
                if last
                else " (no backfill has run)"
            )
            hint = (
                "palyra tasks enqueue embeddings_backfill, then palyra tasks list"
                " --kind embeddings-backfill"
            )
            if name != BUILTIN_NAME:
                hint += "; check that the [memory] embedder command works"
            return warn(
                self.check_id,
                f"{summary}; {stats.entries - stats.embedded} items waiting for vectors"
                f" for over {BACKLOG_INTERVALS} backfill intervals{why}",
                hint,
            )
        return ok(self.check_id, summary)
