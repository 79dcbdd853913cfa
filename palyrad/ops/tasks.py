"""``palyra tasks …`` (SPEC §4.6): the background queue as an operator sees it.

List, show, retry a failed task, cancel a pending one, enqueue a built-in maintenance kind
now. Every check of what a person typed is here (the CLI only parses and prints): kinds and
statuses are accepted in kebab-case too (``journal-vacuum``), task ids in any case (ULIDs).
A change is committed first, then the executor is poked; whether anyone heard the poke is
returned, so the CLI can say the daemon is not running (the change then waits for it, in
the journal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from palyrad.domain.runs import new_ulid
from palyrad.domain.tasks import ENQUEUEABLE, MAINTENANCE_KINDS, TASK_KINDS, task_to_json
from palyrad.journal.tasks import TASK_STATUSES
from palyrad.ops.triggers import check_payload
from palyrad.runtime.notify import poke_service
from routines.errors import InvalidInput, PalyraError

if TYPE_CHECKING:
    from palyrad.journal import Journal, Task
    from palyrad.runtime.home import Home

DEFAULT_LIMIT = 50
MAX_LIMIT = 1_000
MAX_PRIORITY = 1_000
LIST_HINT = "list them: palyra tasks list"
# Operators enqueue by hand; a task that fails three times stays failed (`tasks retry`).
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class TaskChange:
    """What a retry, cancel or enqueue did. ``changed`` False: an enqueue of a maintenance
    kind found one already pending or running (``task`` is that one; nothing was added).
    ``daemon_running``: the executor heard the poke (False: nothing read it)."""

    task: dict[str, Any]
    changed: bool
    daemon_running: bool


def _name(text: str) -> str:
    """A kind or status as typed: kebab-case or snake_case, any case, spaces around."""
    return text.strip().lower().replace("-", "_")


def _one_of(values: tuple[str, ...]) -> str:
    return "one of: " + ", ".join(values)


def check_status(status: str) -> str:
    """A ``--status`` as stored; ``InvalidInput`` (exit 2) naming the statuses."""
    name = _name(status)
    if name not in TASK_STATUSES:
        raise InvalidInput(f"unknown task status {status!r}", _one_of(TASK_STATUSES))
    return name


def check_kind(kind: str) -> str:
    """A ``--kind`` as stored; ``InvalidInput`` (exit 2) naming the kinds."""
    name = _name(kind)
    if name not in TASK_KINDS:
        raise InvalidInput(f"unknown task kind {kind!r}", _one_of(TASK_KINDS))
    return name


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"--limit must be between 1 and {MAX_LIMIT}, not {limit}",
            f"e.g. --limit {DEFAULT_LIMIT}",
        )
    return limit


def check_priority(priority: int) -> int:
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            f"--priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}, not {priority}",
            "higher runs first; the default is 0",
        )
    return priority


def check_enqueueable(kind: str) -> str:
    """A kind an operator may enqueue: exit 2 for an unknown kind (with the list), and for
    the kinds that belong to a run (with why)."""
    name = _name(kind)
    if name in ENQUEUEABLE:
        return name
    if name in TASK_KINDS:
        raise InvalidInput(
            f"{name} tasks belong to a run: the executor enqueues one, with the run's id,"
            " when a run ends",
            f"enqueue {_one_of(ENQUEUEABLE)}",
        )
    raise InvalidInput(f"unknown task kind {kind!r}", f"enqueue {_one_of(ENQUEUEABLE)}")


def _task_id(task_id: str) -> str:
    return task_id.strip().upper()  # ULIDs: any case


def _get(journal: Journal, task_id: str) -> Task:
    task = journal.tasks.get(_task_id(task_id))
    if task is None:
        raise PalyraError(f"no task {task_id!r}", LIST_HINT)
    return task


def _poke(home: Home) -> bool:
    return poke_service(home.run_dir, "executor")


# --- reads -----------------------------------------------------------------------------------


def list_tasks(
    journal: Journal,
    status: str | None = None,
    kind: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """Tasks newest first, optionally of one status and/or kind, at most ``limit``."""
    found = journal.tasks.newest(
        status=None if status is None else check_status(status),
        kind=None if kind is None else check_kind(kind),
        limit=check_limit(limit),
    )
    return [task_to_json(t) for t in found]


def show_task(journal: Journal, task_id: str) -> dict[str, Any]:
    """One task; an unknown (or pruned) id is exit 1."""
    return task_to_json(_get(journal, task_id))


# --- changes ---------------------------------------------------------------------------------


def retry_task(home: Home, journal: Journal, task_id: str, now_ms: int) -> TaskChange:
    """A ``failed`` task back to ``pending`` now, its attempts counted from zero. Any other
    status is exit 1 naming it; so is a maintenance task whose kind is queued again already
    (one pending or running per kind)."""
    task = _get(journal, task_id)
    show = f"see: palyra tasks show {task.task_id}"
    if task.status != "failed":
        raise PalyraError(
            f"task {task.task_id} is {task.status}; only a failed task can be retried", show
        )
    retried = journal.tasks.retry(task.task_id, now_ms)
    if retried is None:
        now = journal.tasks.get(task.task_id)
        other = None if task.unique_key is None else journal.tasks.active_for_key(task.unique_key)
        if now is not None and now.status == "failed" and other is not None:
            raise PalyraError(
                f"task {task.task_id} was not retried: {other.kind} task {other.task_id} is"
                f" already {other.status} (one at a time)",
                f"it does the same work; see: palyra tasks show {other.task_id}",
            )
        status = "gone" if now is None else now.status
        raise PalyraError(
            f"task {task.task_id} is {status}; only a failed task can be retried", show
        )
    return TaskChange(task_to_json(retried), True, _poke(home))


def cancel_task(home: Home, journal: Journal, task_id: str, now_ms: int) -> TaskChange:
    """Cancel a ``pending`` task; any other status is exit 1 naming it."""
    task = _get(journal, task_id)
    cancelled = journal.tasks.cancel(task.task_id, now_ms)
    if cancelled is None:
        now = journal.tasks.get(task.task_id)
        status = "gone" if now is None else now.status
        why = (
            "it is running; a running task cannot be cancelled"
            if status == "running"
            else "only a pending task can be cancelled"
        )
        raise PalyraError(
            f"task {task.task_id} is {status}: {why}", f"see: palyra tasks show {task.task_id}"
        )
    return TaskChange(task_to_json(cancelled), True, _poke(home))


def enqueue_task(
    home: Home,
    journal: Journal,
    kind: str,
    payload_json_text: str | None,
    priority: int,
    now_ms: int,
) -> TaskChange:
    """Enqueue a built-in kind now (``ENQUEUEABLE``). Invalid input is exit 2, checked
    before anything is written: the kind, the payload (valid JSON, ≤ 64 KiB: the same check
    as every ``--payload``), the priority (±1000). A maintenance kind is one at a time
    (``unique_key`` = its kind): while one is pending or running, that one is returned
    (``changed`` False) and nothing is added."""
    name = check_enqueueable(kind)
    check_payload(payload_json_text)
    check_priority(priority)
    task, added = journal.tasks.enqueue(
        new_ulid(now_ms),
        name,
        "null" if payload_json_text is None else payload_json_text,
        now_ms,
        priority=priority,
        max_attempts=MAX_ATTEMPTS,
        unique_key=name if name in MAINTENANCE_KINDS else None,
    )
    return TaskChange(task_to_json(task), added, _poke(home) if added else False)
