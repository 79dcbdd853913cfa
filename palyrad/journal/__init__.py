"""The journal: the one package that owns the SQLite schema and every query.

No SQL anywhere else (``tests/test_layering.py`` enforces it). The package is the journal
seam of ARCHITECTURE.md: typed records in and out, one transaction owner.

- ``connection``: ``JournalConnection``, the connection and transaction owner (pragmas,
  ``BEGIN IMMEDIATE`` with short lock-wait steps, the re-entrant ``write()``,
  ``transaction()``, migrate, checkpoint), ``Domain`` (the base of every domain class) and
  ``JournalError``.
- ``migrations``: the numbered, forward-only migration list and ``SCHEMA_VERSION``.
- ``records``: the frozen records that cross the seam (``Run`` itself is
  ``palyrad.domain.runs.Run``).
- One module per domain, each a small class bound to the connection and reached as an
  attribute of ``Journal``: ``state`` (daemon_state keys), ``routines`` (routine_state),
  ``runs`` (run records), ``leases`` (the executor's claim/start/heartbeat protocol),
  ``approvals``, ``events``, ``outbox`` (channel deliveries and each device's
  acknowledgements), ``heartbeats`` (service processes), ``devices`` (paired nodes and their
  open watch streams), ``pairing`` (pairing windows and requests), ``incidents``
  (self-healing incidents and their remediation attempts), ``tasks`` (the background queue),
  ``webhooks`` (the webhook replay cache), ``skills`` (skill audits and operators'
  quarantines), ``memory`` (memory items, their full-text index and vectors), ``learning``
  (reflections and learning candidates).

Reading and writing::

    journal = open_journal(home.journal)
    run = journal.runs.get(run_id)
    leased = journal.leases.acquire(run_ids, owner, now)
    journal.runs.finish(run_id, status=RunStatus.FAILED, finished_ms=now, follow_up=retry)

Every domain write runs in ``write()``, which joins a transaction already open on the
connection. A write that spans domains says so at the call site, and commits or rolls back
as one ``BEGIN IMMEDIATE``::

    with journal.transaction():
        journal.runs.insert_new(runs)
        journal.routines.advance(advances)

Adding a domain (tasks, incidents, devices, skills, memory …):

1. append its tables as a new migration at the end of ``migrations.MIGRATIONS``;
2. add its records to ``records.py`` (frozen, slotted dataclasses);
3. write ``<domain>.py`` with ``class Tasks(Domain)`` — reads on ``self._db``, writes in
   ``with self._write() as db:``;
4. give ``Journal`` the attribute (``self.tasks = Tasks(self)``) and re-export the records
   below. Nothing else changes, and a test of the new module needs only a ``Journal``.
"""

from __future__ import annotations

from pathlib import Path

from palyrad.journal.approvals import Approvals
from palyrad.journal.connection import BUSY_TIMEOUT_MS, JournalConnection
from palyrad.journal.devices import Devices
from palyrad.journal.errors import JournalError
from palyrad.journal.events import Events
from palyrad.journal.heartbeats import Heartbeats
from palyrad.journal.incidents import Incidents, incident_to_json
from palyrad.journal.learning import Learning
from palyrad.journal.leases import Leases
from palyrad.journal.memory import Memory, NewMemoryItem, StoredVector
from palyrad.journal.migrations import SCHEMA_VERSION
from palyrad.journal.outbox import Outbox
from palyrad.journal.pairing import Pairing
from palyrad.journal.records import (
    ApprovalRequest,
    Delivery,
    Device,
    DeviceWatch,
    Event,
    Incident,
    LearningCandidate,
    MemoryItem,
    MemoryStats,
    NewCandidate,
    OutboxItem,
    PairingRequest,
    PairingWindow,
    PendingApproval,
    ProcessHeartbeat,
    RemediationAttempt,
    RoutineAdvance,
    RoutineState,
    RunDecision,
    SkillAudit,
    SkillQuarantine,
    Task,
)
from palyrad.journal.routines import Routines
from palyrad.journal.runs import PRUNE_BATCH, Runs
from palyrad.journal.skills import Skills
from palyrad.journal.state import (
    STATE_APPROVALS_CHANGED,
    STATE_DEFINITIONS_APPLIED,
    STATE_DEFINITIONS_ERROR,
    STATE_DEFINITIONS_HASH_MEMO,
    STATE_DEVICES_CHANGED,
    STATE_INCIDENTS_CHANGED,
    STATE_LISTENED_EVENTS,
    STATE_LISTENER_PORTS,
    STATE_MAINTENANCE,
    STATE_MEMORY_CHANGED,
    STATE_PAIRING_CHANGED,
    STATE_SKILLS_CHANGED,
    STATE_SKILLS_ERROR,
    STATE_TASKS_CHANGED,
    STATE_WEBHOOKS,
    DaemonState,
)
from palyrad.journal.tasks import Tasks, task_backoff_ms
from palyrad.journal.webhooks import Webhooks

__all__ = [
    "BUSY_TIMEOUT_MS",
    "PRUNE_BATCH",
    "SCHEMA_VERSION",
    "STATE_APPROVALS_CHANGED",
    "STATE_DEFINITIONS_APPLIED",
    "STATE_DEFINITIONS_ERROR",
    "STATE_DEFINITIONS_HASH_MEMO",
    "STATE_DEVICES_CHANGED",
    "STATE_INCIDENTS_CHANGED",
    "STATE_LISTENED_EVENTS",
    "STATE_LISTENER_PORTS",
    "STATE_MAINTENANCE",
    "STATE_MEMORY_CHANGED",
    "STATE_PAIRING_CHANGED",
    "STATE_SKILLS_CHANGED",
    "STATE_SKILLS_ERROR",
    "STATE_TASKS_CHANGED",
    "STATE_WEBHOOKS",
    "ApprovalRequest",
    "Delivery",
    "Device",
    "DeviceWatch",
    "Event",
    "Incident",
    "Incidents",
    "Journal",
    "JournalConnection",
    "JournalError",
    "Learning",
    "LearningCandidate",
    "Memory",
    "MemoryItem",
    "MemoryStats",
    "NewCandidate",
    "NewMemoryItem",
    "OutboxItem",
    "PairingRequest",
    "PairingWindow",
    "PendingApproval",
    "ProcessHeartbeat",
    "RemediationAttempt",
    "RoutineAdvance",
    "RoutineState",
    "RunDecision",
    "SkillAudit",
    "SkillQuarantine",
    "StoredVector",
    "Task",
    "incident_to_json",
    "open_journal",
    "task_backoff_ms",
]


class Journal(JournalConnection):
    """A connection to the journal, with every domain's queries as an attribute."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        autocheckpoint_pages: int | None = None,
        readonly: bool = False,
        busy_timeout_ms: int | None = None,
        report_write_failures: bool = True,
    ) -> None:
        super().__init__(
            path,
            synchronous=synchronous,
            autocheckpoint_pages=autocheckpoint_pages,
            readonly=readonly,
            busy_timeout_ms=busy_timeout_ms,
            report_write_failures=report_write_failures,
        )
        self.state = DaemonState(self)
        self.routines = Routines(self)
        self.runs = Runs(self)
        self.leases = Leases(self)
        self.approvals = Approvals(self)
        self.events = Events(self)
        self.outbox = Outbox(self)
        self.heartbeats = Heartbeats(self)
        self.devices = Devices(self)
        self.pairing = Pairing(self)
        self.incidents = Incidents(self)
        self.tasks = Tasks(self)
        self.webhooks = Webhooks(self)
        self.skills = Skills(self)
        self.memory = Memory(self)
        self.learning = Learning(self)


def open_journal(path: Path) -> Journal:
    """The one journal connection factory."""
    return Journal(path)
