"""``palyra tasks …``: the background queue (SPEC §4.6).

Works with the daemon stopped (the queue is in the journal; a change waits there for the
executor). Thin over ``palyrad.ops.tasks``, which checks everything typed here; the library
is imported inside the commands so ``palyra --help`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from palyra_cli.common import (
    NOT_RUNNING_NOTE,
    emit_json,
    home_option,
    json_option,
    note,
    with_journal,
)
from palyra_cli.tables import clip, short_time, table

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.ops.tasks import TaskChange
    from palyrad.runtime.home import Home


@click.group("tasks")
@home_option
def tasks_group() -> None:
    """The background queue: maintenance, deliveries, reflections."""


def _attempts(t: dict[str, Any]) -> str:
    return f"{t['attempt']}/{t['max_attempts']}"


def _after_change(change: TaskChange) -> None:
    if change.changed and not change.daemon_running:
        note(NOT_RUNNING_NOTE)


@tasks_group.command("list")
@click.option("--status", metavar="S", help="pending, running, succeeded, failed or cancelled.")
@click.option("--kind", metavar="K", help="Only this kind (e.g. journal-vacuum).")
@click.option("--limit", type=int, default=50, show_default=True, help="At most N (1-1000).")
@json_option
@home_option
@with_journal
def list_cmd(
    status: str | None,
    kind: str | None,
    limit: int,
    as_json: bool,
    home: Home,
    journal: Journal,
) -> None:
    """Background tasks, newest first."""
    from palyrad.ops.tasks import list_tasks

    items = list_tasks(journal, status, kind, limit)
    if as_json:
        emit_json({"tasks": items})
        return
    if not items:
        click.echo("no tasks")
        return
    table(
        ["TASK ID", "KIND", "STATUS", "PRIO", "ATTEMPT", "CREATED", "ERROR"],
        [
            [
                t["task_id"],
                t["kind"],
                t["status"],
                str(t["priority"]),
                _attempts(t),
                short_time(t["created_at"]),
                clip(t["error"] or "", 60),
            ]
            for t in items
        ],
    )


@tasks_group.command("show")
@click.argument("task_id")
@json_option
@home_option
@with_journal
def show_cmd(task_id: str, as_json: bool, home: Home, journal: Journal) -> None:
    """One task."""
    from palyrad.ops.tasks import show_task

    t = show_task(journal, task_id)
    if as_json:
        emit_json(t)
        return
    import orjson

    click.echo(f"task {t['task_id']}: {t['kind']}")
    click.echo(f"  status      {t['status']}")
    click.echo(f"  priority    {t['priority']}")
    click.echo(f"  attempt     {_attempts(t)}")
    click.echo(f"  created     {t['created_at']}")
    click.echo(f"  not before  {t['not_before']}")
    if t["started_at"]:
        click.echo(f"  started     {t['started_at']}")
    if t["finished_at"]:
        click.echo(f"  finished    {t['finished_at']}")
    if t["error"]:
        click.echo(f"  error       {t['error']}")
    click.echo(f"  payload     {orjson.dumps(t['payload']).decode()}")


@tasks_group.command("retry")
@click.argument("task_id")
@home_option
@with_journal
def retry_cmd(task_id: str, home: Home, journal: Journal) -> None:
    """Put a failed task back to pending (its attempts start again)."""
    from palyrad.ops.tasks import retry_task
    from routines.timefmt import now_ms

    change = retry_task(home, journal, task_id, now_ms())
    click.echo(f"task {change.task['task_id']} ({change.task['kind']}) is pending again")
    _after_change(change)


@tasks_group.command("cancel")
@click.argument("task_id")
@home_option
@with_journal
def cancel_cmd(task_id: str, home: Home, journal: Journal) -> None:
    """Cancel a pending task."""
    from palyrad.ops.tasks import cancel_task
    from routines.timefmt import now_ms

    change = cancel_task(home, journal, task_id, now_ms())
    click.echo(f"cancelled task {change.task['task_id']} ({change.task['kind']})")
    _after_change(change)


@tasks_group.command("enqueue")
@click.argument("kind")
@click.option("--payload", metavar="JSON", default=None, help="The task's JSON payload.")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@json_option
@home_option
@with_journal
def enqueue_cmd(
    kind: str,
    payload: str | None,
    priority: int,
    as_json: bool,
    home: Home,
    journal: Journal,
) -> None:
    """Enqueue a built-in task kind now (e.g. journal-vacuum, memory-maintenance)."""
    from palyrad.ops.tasks import enqueue_task
    from routines.timefmt import now_ms

    change = enqueue_task(home, journal, kind, payload, priority, now_ms())
    t = change.task
    if not change.changed:
        note(
            f"note: a {t['kind']} task is already {t['status']} ({t['task_id']}); nothing was added"
        )
    _after_change(change)
    if as_json:
        emit_json(t)
    elif change.changed:
        click.echo(f"enqueued {t['kind']} task {t['task_id']} (priority {t['priority']})")
    else:
        click.echo(f"{t['kind']} task {t['task_id']} is already {t['status']}")
