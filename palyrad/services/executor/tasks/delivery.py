"""The ``delivery`` task: a finished run's result to its file or channel (SPEC §2.3).

Enqueued in the transaction that finishes the run, so a crash between the two can lose
neither. A file that cannot be written fails the attempt, and the queue retries it with
backoff; the executor's loop never waits for a slow disk or a full outbox.
"""

from __future__ import annotations

from palyrad.domain.run_spec import RunSpec
from palyrad.domain.tasks import payload_run_id
from palyrad.seams import TaskRun
from palyrad.services.executor.delivery import deliver
from routines.model import Delivery


class DeliveryHandler:
    kind = "delivery"

    def run(self, task: TaskRun) -> str | None:
        run_id = payload_run_id(task.payload)
        run = task.journal.runs.get(run_id)
        if run is None:
            return f"run {run_id} is gone (pruned); nothing to deliver"
        spec = RunSpec.from_json(run.spec)
        delivery = Delivery() if spec is None else spec.delivery
        if deliver(task.journal, run, delivery, task.clock.now_ms(), raise_errors=True):
            task.poke("node_rpc")  # its watch streams send the entry on
        return f"{delivery.mode} delivery of {run_id}"
