"""The memory and learning task handlers (SPEC §6): ``memory_maintenance``,
``embeddings_backfill`` and ``post_run_reflection``. The work is ``palyrad.ops.memory`` and
``palyrad.ops.learning`` (the CLI shares it); a handler only binds it to its task: the clock,
the lease (``heartbeat`` between batches: a lost lease stops the work, whose result would
not count), and the report of malformed learning lines."""

from __future__ import annotations

from palyrad.domain.tasks import payload_run_id
from palyrad.ops.learning import reflect
from palyrad.ops.memory import backfill, embedder_of, maintain
from palyrad.seams import TaskReport, TaskRun


class MemoryMaintenance:
    kind = "memory_maintenance"

    def run(self, task: TaskRun) -> str | None:
        return maintain(task.journal, task.config, task.clock.now_ms, task.heartbeat).note()


class EmbeddingsBackfill:
    kind = "embeddings_backfill"

    def run(self, task: TaskRun) -> str | None:
        embedder = embedder_of(task.config)
        done = backfill(task.journal, embedder, task.clock.now_ms, task.heartbeat)
        note = done.note(embedder.name)
        return TaskReport(note) if done.refused else note


class PostRunReflection:
    kind = "post_run_reflection"

    def run(self, task: TaskRun) -> str | None:
        run_id = payload_run_id(task.payload)
        done = reflect(
            task.journal,
            task.home,
            task.config,
            embedder_of(task.config),
            run_id,
            task.clock.now_ms(),
        )
        if done.problems:
            return TaskReport("; ".join(done.problems))
        return done.outcome
