"""The seams the second half of Palyra plugs into: small protocols, a few methods each.

Each names one thing that varies and nothing else, so a later feature is one new class behind
one of these, found through a registry, instead of a new branch in a loop:

- ``Clock``: the one source of "now" below a service loop (injected through the service
  context), so schedules, policies, retries, leases and incidents are tested in milliseconds.
- ``ActionRunner``: how a run of one action kind (command, prompt, skill) becomes a process
  invocation. The executor spawns, watches and finalizes; runners only prepare.
- ``TaskHandler``: one background task kind of the queue (delivery, maintenance, reflection).
- ``Check``: one ``palyra doctor`` check id. ``Remediation``: the safe fix of one incident
  domain of the self-healing process.

The journal is a seam too (``palyrad.journal``: typed records in and out, one transaction
owner); it is a package rather than a protocol here because it has one implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from palyrad.domain.runs import Run
    from routines.model import Action


class Clock(Protocol):
    """Wall-clock time in Unix milliseconds."""

    def now_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Invocation:
    """What an action runner prepared: the process to spawn for one run."""

    argv: tuple[str, ...]
    stdin: bytes | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # added to the run's environment
    timeout_ms: int | None = None  # None: the action's own
    # Descriptors the process inherits (a skill's sealed artifact, run as /proc/self/fd/N),
    # and what to call once it was spawned or will not be (closing them in the daemon).
    pass_fds: tuple[int, ...] = ()
    release: Callable[[], None] | None = None


class ActionRunner(Protocol):
    """Turns a run of one action kind into an ``Invocation``; raises ``ActionUnavailable``
    (with an error kind) when the run cannot start (no agent runner, skill quarantined)."""

    kind: str

    def prepare(self, run: Run, action: Action) -> Invocation: ...


class ActionUnavailable(Exception):
    """A run cannot start; ``error_kind`` is what its record says (e.g. skill_unavailable)."""

    def __init__(self, error_kind: str, message: str) -> None:
        super().__init__(message)
        self.error_kind = error_kind


@dataclass(frozen=True, slots=True)
class TaskRun:
    """What a task handler gets for one attempt: the task, its parsed payload, and the means
    to act (its worker thread's own journal connection, the clock, the home, the config, a
    poke). ``heartbeat()`` extends the attempt's lease; a handler that works for long calls
    it now and then (False: the lease was taken over — stop, the result will not count)."""

    task_id: str
    kind: str
    payload: Any
    attempt: int
    max_attempts: int
    heartbeat: Callable[[], bool]
    journal: Any  # palyrad.journal.Journal (the seams import nothing of the daemon)
    clock: Clock
    home: Any  # palyrad.runtime.home.Home
    config: Any  # palyrad.runtime.config.DaemonConfig
    poke: Callable[..., None]


class TaskReport(str):
    """A handler's note that is kept with its succeeded task, in the task's ``error``: a
    problem worth an operator's eye that must not fail or retry the task (SPEC §6: a
    malformed ``::palyra-learn`` line is reported in the reflection task's error)."""

    __slots__ = ()


class TaskHandler(Protocol):
    """One background task kind: do the work of ``task`` or raise (the attempt fails and
    the queue retries it with backoff; the process never does). Returns a short note for
    the log, or None; a ``TaskReport`` note is kept with the succeeded task."""

    kind: str

    def run(self, task: TaskRun) -> str | None: ...


class CheckStatus(StrEnum):
    """A doctor finding's verdict: ``fail`` makes ``palyra doctor`` exit 1, ``warn`` does not."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One doctor finding: what was found and, unless it is ok, the concrete fix (a command
    to run or a file:line:col to edit). ``repairable``: ``Check.repair`` can fix it safely;
    ``repaired``: what a repair did (filled in by the runner); ``details``: more lines of
    the same finding (the first validation errors), shown below the message."""

    check_id: str
    status: CheckStatus
    message: str
    hint: str | None = None
    repairable: bool = False
    repaired: tuple[str, ...] = ()
    details: tuple[str, ...] = ()


C_contra = TypeVar("C_contra", contravariant=True)


class Check(Protocol[C_contra]):
    """One ``palyra doctor`` check id. ``run`` only looks (it never changes anything, and
    whatever it raises becomes a ``fail`` of its id); ``repair`` applies the safe, reversible
    fix of what ``run`` found and says what it did (``[]``: nothing to do). The context
    type is the doctor's (``palyrad.ops.doctor.context.DoctorContext``): computed once,
    shared by every check."""

    check_id: str

    def run(self, ctx: C_contra) -> CheckResult: ...

    def repair(self, ctx: C_contra) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Finding:
    """One failing condition a self-healing detector sees now: the incident it opens (or
    keeps open) is (``domain``, ``subject``). ``remediable`` False: record, never act (a
    condition someone else is already fixing, e.g. a service the supervisor is restarting)."""

    domain: str
    subject: str
    severity: str  # "warning" | "critical"
    summary: str
    remediable: bool = True


class Detector(Protocol):
    """The failing conditions of one incident domain, now. Every open incident of the domain
    whose subject is not among them has cleared and is resolved. ``open_subjects`` are the
    domain's open incidents (a detector may keep one open while its fix is under way)."""

    domain: str

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]: ...


class RemediationFailed(Exception):
    """A remediation could not do its work; the message goes to the attempt's detail."""


class Remediation(Protocol):
    """The safe fix of one incident domain, run only in ``auto`` mode; idempotent, so a retry
    after a crash (or a second sweep before the first took effect) is safe. Returns what it
    did, for the incident's remediation log; raises ``RemediationFailed`` when it could not
    (the attempt is recorded ``failed``; repeated failures escalate the incident)."""

    domain: str
    action: str  # the attempt's ``action`` (e.g. "fail_run", "restart_process")
    # Needs no journal write to act (a service restart): it may run while the journal is
    # locked, e.g. by the frozen service it restarts; its attempt is recorded afterwards.
    journal_free: bool

    def apply(self, finding: Finding, now_ms: int) -> str: ...
