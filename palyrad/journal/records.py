"""Typed records that cross the journal seam (in and out), instead of bare tuples.

Frozen and slotted: cheap to build, safe to share between a loop and its helpers, and the
field names say what a tuple's positions only implied. ``Run`` is not here: it is the value
object every process shares (``palyrad.domain.runs``); the journal stores and returns it.
"""

from __future__ import annotations

from dataclasses import dataclass

from palyrad.domain.memory_records import LearningCandidate as LearningCandidate
from palyrad.domain.memory_records import MemoryItem as MemoryItem


@dataclass(frozen=True, slots=True)
class RoutineState:
    """Runtime state the journal keeps per routine id (definitions say *what*, this *when*)."""

    routine_id: str
    definition_hash: str
    schedule_key: str | None
    enabled: bool
    first_seen_ms: int
    next_nominal_ms: int | None
    next_fire_ms: int | None
    last_nominal_ms: int | None


@dataclass(frozen=True, slots=True)
class RoutineAdvance:
    """A routine's schedule moved past a due tick (``Routines.advance``); ``None`` next
    times mean the schedule has no further fire."""

    routine_id: str
    last_nominal_ms: int | None
    next_nominal_ms: int | None
    next_fire_ms: int | None


@dataclass(frozen=True, slots=True)
class RunDecision:
    """What policy decided for an undecided trigger record (``Runs.decide``): its status
    and error, and the spec and definition it was decided against."""

    run_id: str
    status: str
    error_kind: str | None = None
    error_message: str | None = None
    spec: str | None = None
    definition_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """An approval a routine needs for one definition hash (``Approvals.request``)."""

    routine_id: str
    definition_hash: str
    mode: str


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A requested approval not yet granted (``Approvals.pending``)."""

    routine_id: str
    mode: str
    definition_hash: str
    requested_at_ms: int


@dataclass(frozen=True, slots=True)
class Event:
    """A journaled event (system, operator or hook) waiting for the scheduler."""

    event_id: int
    name: str
    payload: str | None  # JSON text
    created_ms: int


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A channel delivery not yet acknowledged by a paired node."""

    outbox_id: int
    channel: str
    payload: str  # JSON text


@dataclass(frozen=True, slots=True)
class ProcessHeartbeat:
    """The last sign of life a daemon service process journaled."""

    name: str
    pid: int
    instance: str
    state: str
    restarts: int
    heartbeat_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox entry as a device receives it (``Outbox.for_device``)."""

    outbox_id: int
    channel: str
    routine_id: str
    run_id: str
    payload: str  # JSON text: the run record of SPEC §3
    created_ms: int


@dataclass(frozen=True, slots=True)
class Device:
    """A paired node (``devices``). ``cert_sha256`` is the SHA-256 (hex, of the DER) of its
    current client certificate; the superseded one (``prev_cert_sha256``) still works until
    ``prev_valid_until_ms``. It receives the outbox entries above ``delivery_floor`` (the
    outbox's highest id when it was paired)."""

    device_id: str
    name: str
    state: str  # "active" | "revoked"
    public_key_sha256: str
    cert_sha256: str
    cert_expires_ms: int
    paired_ms: int
    delivery_floor: int
    prev_cert_sha256: str | None = None
    prev_valid_until_ms: int | None = None
    last_seen_ms: int | None = None
    revoked_ms: int | None = None
    revoke_reason: str | None = None
    cert_used_ms: int | None = None  # first call with the current certificate (None: unused)


@dataclass(frozen=True, slots=True)
class DeviceWatch:
    """An open ``watch`` stream of a device; ``channels`` is ``("*",)`` for every channel.

    ``heartbeat_ms``: the stream's last journaled progress (its opening, at first).
    ``unacked_since_ms``: when the stream sent the oldest delivery the device had not
    acknowledged at that heartbeat (None: it owed nothing). ``close_requested_ms``:
    self-healing asked node_rpc to close the stream (None: nobody did)."""

    stream_id: str
    device_id: str
    channels: tuple[str, ...]
    opened_ms: int
    heartbeat_ms: int
    unacked_since_ms: int | None = None
    close_requested_ms: int | None = None


@dataclass(frozen=True, slots=True)
class PairingWindow:
    """A pairing window (``pair-code``): open while ``closed_ms`` is None and ``expires_ms``
    is ahead. ``token_sha256`` is the QR token's SHA-256 (hex; None for a PIN window, whose
    PIN is never stored). ``close_reason``: superseded, used, failures, expired or
    daemon_restart; ``failure_peers``: the distinct source addresses of failed attempts
    (at most 20)."""

    window_id: str
    method: str  # "pin" | "qr"
    token_sha256: str | None
    auto_approve: bool
    host: str | None
    opened_ms: int
    expires_ms: int
    closed_ms: int | None = None
    close_reason: str | None = None
    failures: int = 0
    failure_peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PairingRequest:
    """A node's pairing request: one per window. ``device_id`` is chosen by the daemon;
    ``public_key_der`` is the CSR's SubjectPublicKeyInfo (DER), ``public_key_sha256`` its
    SHA-256 (hex); ``await_secret_sha256`` the hash of the secret the node presents to
    collect its certificate. ``state``: pending, approved, rejected or issued."""

    request_id: str
    window_id: str
    device_id: str
    device_name: str
    method: str
    peer: str
    public_key_sha256: str
    public_key_der: bytes
    await_secret_sha256: str
    requested_ms: int
    expires_ms: int
    state: str = "pending"
    decided_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RemediationAttempt:
    """One remediation attempt of an incident (``Incidents.record_attempt``): what was done
    (``action``), when, its ``outcome`` (succeeded, failed or skipped) and a ``detail``."""

    action: str
    at_ms: int
    outcome: str  # "succeeded" | "failed" | "skipped"
    detail: str


@dataclass(frozen=True, slots=True)
class Incident:
    """A self-healing incident (SPEC §6): at most one open per (``domain``, ``subject``).
    ``severity``: warning or critical (it only escalates while open); ``state``: open or
    resolved (then ``resolved_ms`` is set). ``remediations``: its attempts, in order."""

    incident_id: str
    domain: str
    subject: str
    severity: str  # "warning" | "critical"
    state: str  # "open" | "resolved"
    summary: str
    opened_ms: int
    resolved_ms: int | None = None
    remediations: tuple[RemediationAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class Task:
    """A background task (SPEC §6 "Background queue"). ``attempt`` counts claims (the one
    running now included); ``lease_token`` fences the current claim: only its holder may
    heartbeat, finish or fail the task. ``unique_key``: at most one pending or running task
    per key (a maintenance kind)."""

    task_id: str
    kind: str
    payload: str  # JSON text
    priority: int
    status: str  # pending | running | succeeded | failed | cancelled
    attempt: int
    max_attempts: int
    not_before_ms: int
    created_ms: int
    started_ms: int | None = None
    finished_ms: int | None = None
    heartbeat_ms: int | None = None
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_until_ms: int | None = None
    error: str | None = None
    unique_key: str | None = None


@dataclass(frozen=True, slots=True)
class SkillAudit:
    """The last audit of one installed skill version. ``audited_key`` is the digest of what
    passed (``palyrad.domain.skill_audit.audit_key``); None when it did not pass."""

    skill_id: str
    version: str
    state: str  # "active" | "quarantined"
    reason: str | None
    audited_key: str | None
    last_audit_ms: int


@dataclass(frozen=True, slots=True)
class SkillQuarantine:
    """An operator's quarantine of a skill id: every version, until released."""

    skill_id: str
    reason: str | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """Live items (expired ones waiting for maintenance are not counted), their text bytes,
    how many have a vector from ``embedder``, and the oldest item's creation time."""

    entries: int
    bytes: int
    embedded: int
    embedder: str
    oldest_ms: int | None


@dataclass(frozen=True, slots=True)
class NewCandidate:
    """A ``::palyra-learn`` line of a run's output, on its way to the journal."""

    line_no: int
    kind: str
    text: str
    confidence: float
