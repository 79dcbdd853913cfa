"""The ``task`` domain: a running background task whose worker stopped heartbeating (SPEC §6
"Self-healing", ``[self_healing] stale_task_ms``).

Subject: the task id. The remediation requeues it: its lease ends now and its fencing token
is revoked (``Tasks.expire_lease``), so the executor's next claim takes it over as a new
attempt (or fails it, on its last one) and the stalled worker, should it wake, can change
nothing. The executor is poked to claim at once; once a worker has it (a fresh heartbeat) or
it has ended, the detector no longer finds it and the incident resolves.
"""

from __future__ import annotations

from palyrad.seams import Finding
from palyrad.services.context import ServiceContext


class StaleTaskDetector:
    domain = "task"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        stale_ms = self.ctx.config.stale_task_ms
        return [
            Finding(
                "task",
                task.task_id,
                "warning",
                f"{task.kind} task {task.task_id} (attempt {task.attempt}/{task.max_attempts})"
                f" has had no heartbeat for {(now_ms - (task.heartbeat_ms or 0)) / 1000:.1f} s"
                f" (stale_task_ms {stale_ms}): its worker stalled or died",
            )
            for task in self.ctx.journal.tasks.stale_running(now_ms - stale_ms)
        ]


class RequeueTask:
    """End the stale task's lease so the executor takes it over (idempotent: a task that is
    no longer running, or heartbeats again, is left alone; one already requeued is only
    waiting for the executor, which is poked again)."""

    domain = "task"
    action = "requeue_task"
    journal_free = False

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def apply(self, finding: Finding, now_ms: int) -> str:
        journal = self.ctx.journal
        task = journal.tasks.get(finding.subject)
        if task is None or task.status != "running":
            return "the task already finished; nothing to do"
        if (task.heartbeat_ms or 0) >= now_ms - self.ctx.config.stale_task_ms:
            return "the task heartbeats again; nothing to do"
        if task.lease_token is None:
            self.ctx.poke("executor")
            return (
                f"already requeued: {task.kind} task {task.task_id} waits for the executor"
                " to take it over (poked it again)"
            )
        # Fenced by what was read: a worker that took the task over or woke and heartbeat
        # since keeps it (revoking its fresh lease would run the task once more for nothing).
        if not journal.tasks.expire_lease(
            task.task_id,
            now_ms,
            token=task.lease_token,
            stale_before_ms=now_ms - self.ctx.config.stale_task_ms,
        ):
            return "the task already finished, or its worker has it again; nothing to do"
        self.ctx.poke("executor")
        last = task.attempt >= task.max_attempts
        then = (
            "its last attempt, so the next claim fails it (its worker was lost)"
            if last
            else f"the executor takes it over as attempt {task.attempt + 1}/{task.max_attempts}"
        )
        return f"requeued {task.kind} task {task.task_id}: its lease ended now; {then}"
