"""``palyra tasks …`` end to end (SPEC §4, §4.6), through the real console script on a home
with no daemon: the task object's exact keys (SPEC §4.6 plus the ``*_unix_ms`` twins),
``{"tasks": [...]}`` newest first, kebab-case kinds and statuses, ids in any case, exit codes
0/1/2 with one ``error: what (hint)`` line, the not-running note, one maintenance task of a
kind at a time, and the poke a listening executor receives. Tasks in states the CLI cannot
make (running, failed, succeeded) are put in the journal directly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyrad.journal import Journal
from routines.timefmt import format_rfc3339

pytestmark = pytest.mark.timeout(120)

PALYRA = Path(sys.executable).parent / "palyra"
NOTE = "note: palyrad is not running; the change applies when it starts"
T0 = 1_700_000_000_000
TASK_FIELDS = {
    "task_id",
    "kind",
    "status",
    "priority",
    "attempt",
    "max_attempts",
    "not_before",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "payload",
    "not_before_unix_ms",
    "created_at_unix_ms",
    "started_at_unix_ms",
    "finished_at_unix_ms",
}
TIMES = ("not_before", "created_at", "started_at", "finished_at")


@dataclass
class Out:
    code: int
    stdout: str
    stderr: str

    def ok(self) -> Out:
        assert self.code == 0, f"exit {self.code}\n{self.stdout}\n{self.stderr}"
        return self

    def json(self) -> Any:
        return orjson.loads(self.stdout)  # exactly one document: orjson rejects trailing data

    @property
    def notes(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("note: ")]


def palyra(home: Path, *args: str) -> Out:
    proc = subprocess.run(
        [str(PALYRA), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PALYRA_HOME": ""},
    )
    return Out(proc.returncode, proc.stdout, proc.stderr)


def assert_error(out: Out, code: int, *fragments: str) -> str:
    assert out.code == code, f"exit {out.code} != {code}\n{out.stdout}\n{out.stderr}"
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert re.fullmatch(r"error: \S.* \(\S[^\n]*\)", lines[0]), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def assert_task_object(t: dict[str, Any]) -> None:
    assert set(t) == TASK_FIELDS
    for name in TIMES:
        ms = t[f"{name}_unix_ms"]
        assert t[name] == (None if ms is None else format_rfc3339(ms, always_ms=True))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    return h


def journal_of(home: Path) -> Journal:
    return Journal(home / "journal.sqlite3")


def seed(home: Path) -> dict[str, str]:
    """One task per status (ids in creation order a..e), kinds varied."""
    j = journal_of(home)
    try:
        tasks = j.tasks
        tasks.enqueue("01AAAAAAAAAAAAAAAAAAAAAAAA", "journal_vacuum", "null", T0)  # → succeeded
        tasks.enqueue("01BBBBBBBBBBBBBBBBBBBBBBBB", "delivery", '{"run_id": "R"}', T0 + 1)
        tasks.claim("w", ["ta", "tb"], T0 + 2, 60_000)  # a and b running
        tasks.succeed("01AAAAAAAAAAAAAAAAAAAAAAAA", "ta", T0 + 3)
        tasks.enqueue("01CCCCCCCCCCCCCCCCCCCCCCCC", "skill_reaudit", "null", T0 + 4, max_attempts=1)
        tasks.claim("w", ["tc"], T0 + 5, 60_000)
        tasks.fail("01CCCCCCCCCCCCCCCCCCCCCCCC", "tc", T0 + 6, "artifact missing")
        tasks.enqueue("01DDDDDDDDDDDDDDDDDDDDDDDD", "journal_vacuum", "null", T0 + 7, priority=3)
        tasks.enqueue("01EEEEEEEEEEEEEEEEEEEEEEEE", "memory_maintenance", "null", T0 + 8)
        tasks.cancel("01EEEEEEEEEEEEEEEEEEEEEEEE", T0 + 9)
    finally:
        j.close()
    return {
        "succeeded": "01AAAAAAAAAAAAAAAAAAAAAAAA",
        "running": "01BBBBBBBBBBBBBBBBBBBBBBBB",
        "failed": "01CCCCCCCCCCCCCCCCCCCCCCCC",
        "pending": "01DDDDDDDDDDDDDDDDDDDDDDDD",
        "cancelled": "01EEEEEEEEEEEEEEEEEEEEEEEE",
    }


# --- enqueue, show, list ---------------------------------------------------------------------


def test_enqueue_prints_the_task_object_that_show_and_list_return(home: Path) -> None:
    out = palyra(
        home, "tasks", "enqueue", "journal-vacuum", "--payload", '{"deep": true}', "--priority",
        "7", "--json",
    ).ok()  # fmt: skip
    assert out.notes == [NOTE]
    t = out.json()
    assert_task_object(t)
    assert (t["kind"], t["status"], t["priority"], t["attempt"], t["max_attempts"]) == (
        "journal_vacuum",
        "pending",
        7,
        0,
        3,
    )
    assert t["payload"] == {"deep": True} and t["error"] is None
    assert t["not_before_unix_ms"] == t["created_at_unix_ms"]
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", t["task_id"])
    assert palyra(home, "tasks", "show", t["task_id"], "--json").ok().json() == t
    assert palyra(home, "tasks", "show", f"  {t['task_id'].lower()} ", "--json").ok().json() == t
    assert palyra(home, "tasks", "list", "--json").ok().json() == {"tasks": [t]}
    text = palyra(home, "tasks", "show", t["task_id"]).ok().stdout
    assert t["task_id"] in text and "journal_vacuum" in text and '{"deep":true}' in text
    listed = palyra(home, "tasks", "list").ok().stdout
    assert t["task_id"] in listed and "pending" in listed and "0/3" in listed
    plain = palyra(home, "tasks", "enqueue", "skill_reaudit").ok()
    assert plain.stdout.startswith("enqueued skill_reaudit task ") and plain.notes == [NOTE]


def test_a_maintenance_kind_is_enqueued_once_while_one_is_active(home: Path) -> None:
    first = palyra(home, "tasks", "enqueue", "memory_maintenance", "--json").ok().json()
    again = palyra(home, "tasks", "enqueue", "MEMORY-MAINTENANCE", "--json").ok()
    assert again.json() == first
    # No change, so no "applies when it starts": only the note saying what it found.
    assert again.notes == [
        f"note: a memory_maintenance task is already pending ({first['task_id']});"
        " nothing was added"
    ]
    assert len(palyra(home, "tasks", "list", "--json").ok().json()["tasks"]) == 1
    palyra(home, "tasks", "cancel", first["task_id"]).ok()
    third = palyra(home, "tasks", "enqueue", "memory_maintenance", "--json").ok().json()
    assert third["task_id"] != first["task_id"] and third["status"] == "pending"


def test_enqueue_refuses_bad_input_with_exit_2_and_writes_nothing(home: Path) -> None:
    kinds = "memory_maintenance, embeddings_backfill, skill_reaudit, journal_vacuum"
    assert_error(palyra(home, "tasks", "enqueue", "nope"), 2, "unknown task kind 'nope'", kinds)
    for kind in ("delivery", "post-run-reflection"):
        assert_error(palyra(home, "tasks", "enqueue", kind), 2, "belong to a run", kinds)
    assert_error(
        palyra(home, "tasks", "enqueue", "journal_vacuum", "--payload", "{oops"),
        2,
        "--payload is not valid JSON",
    )
    big = orjson.dumps({"x": "a" * 65_536}).decode()
    assert_error(palyra(home, "tasks", "enqueue", "journal_vacuum", "--payload", big), 2, "64 KiB")
    for prio in ("1001", "-1001"):
        assert_error(
            palyra(home, "tasks", "enqueue", "journal_vacuum", "--priority", prio),
            2,
            "--priority must be between -1000 and 1000",
        )
    assert_error(palyra(home, "tasks", "enqueue", "journal_vacuum", "--priority", "high"), 2)
    assert palyra(home, "tasks", "list", "--json").ok().json() == {"tasks": []}
    assert palyra(home, "tasks", "list").ok().stdout == "no tasks\n"
    low = palyra(home, "tasks", "enqueue", "journal_vacuum", "--priority", "-1000", "--json")
    assert low.ok().json()["priority"] == -1000


def test_list_is_newest_first_and_filters_by_status_kind_and_limit(home: Path) -> None:
    ids = seed(home)
    tasks = palyra(home, "tasks", "list", "--json").ok().json()["tasks"]
    for t in tasks:
        assert_task_object(t)
    assert [t["task_id"] for t in tasks] == [
        ids[s] for s in ("cancelled", "pending", "failed", "running", "succeeded")
    ]
    by_id = {t["task_id"]: t for t in tasks}
    failed = by_id[ids["failed"]]
    assert (failed["status"], failed["error"], failed["attempt"]) == (
        "failed",
        "artifact missing",
        1,
    )
    assert failed["finished_at_unix_ms"] == T0 + 6 and failed["started_at_unix_ms"] == T0 + 5
    assert by_id[ids["running"]]["payload"] == {"run_id": "R"}
    for status, task_id in ids.items():
        got = palyra(home, "tasks", "list", "--status", status, "--json").ok().json()
        assert [t["task_id"] for t in got["tasks"]] == [task_id]
    vac = palyra(home, "tasks", "list", "--kind", "journal-vacuum", "--json").ok().json()
    assert [t["task_id"] for t in vac["tasks"]] == [ids["pending"], ids["succeeded"]]
    both = palyra(home, "tasks", "list", "--kind", "journal_vacuum", "--status", "SUCCEEDED",
                  "--json").ok().json()  # fmt: skip
    assert [t["task_id"] for t in both["tasks"]] == [ids["succeeded"]]
    one = palyra(home, "tasks", "list", "--limit", "1", "--json").ok().json()
    assert [t["task_id"] for t in one["tasks"]] == [ids["cancelled"]]
    assert "artifact missing" in palyra(home, "tasks", "list").ok().stdout


def test_list_refuses_unknown_statuses_kinds_and_limits(home: Path) -> None:
    assert_error(
        palyra(home, "tasks", "list", "--status", "done"),
        2,
        "unknown task status 'done'",
        "pending, running, succeeded, failed, cancelled",
    )
    assert_error(
        palyra(home, "tasks", "list", "--kind", "backup"),
        2,
        "unknown task kind 'backup'",
        "delivery, memory_maintenance",
    )
    for limit in ("0", "1001"):
        assert_error(palyra(home, "tasks", "list", "--limit", limit), 2, "--limit")
    palyra(home, "tasks", "list", "--limit", "1000").ok()


def test_show_an_unknown_id_is_exit_1(home: Path) -> None:
    assert_error(palyra(home, "tasks", "show", "01ZZ"), 1, "no task '01ZZ'", "palyra tasks list")
    assert_error(palyra(home, "tasks", "show"), 2)


# --- retry and cancel ------------------------------------------------------------------------


def test_retry_puts_a_failed_task_back_and_refuses_any_other(home: Path) -> None:
    ids = seed(home)
    out = palyra(home, "tasks", "retry", ids["failed"].lower()).ok()
    assert out.stdout == f"task {ids['failed']} (skill_reaudit) is pending again\n"
    assert out.notes == [NOTE]
    t = palyra(home, "tasks", "show", ids["failed"], "--json").ok().json()
    assert (t["status"], t["attempt"], t["finished_at"]) == ("pending", 0, None)
    for status in ("pending", "running", "succeeded", "cancelled"):
        assert_error(
            palyra(home, "tasks", "retry", ids[status]),
            1,
            f"is {status}",
            "only a failed task can be retried",
        )
    assert_error(palyra(home, "tasks", "retry", "nope"), 1, "no task 'nope'", "palyra tasks list")


def test_retry_refuses_a_maintenance_task_whose_kind_is_queued_again(home: Path) -> None:
    j = journal_of(home)
    try:
        j.tasks.enqueue("01FAILED00000000000000000A", "journal_vacuum", "null", T0,
                        max_attempts=1, unique_key="journal_vacuum")  # fmt: skip
        j.tasks.claim("w", ["t"], T0, 1_000)
        j.tasks.fail("01FAILED00000000000000000A", "t", T0, "disk I/O error")
    finally:
        j.close()
    fresh = palyra(home, "tasks", "enqueue", "journal_vacuum", "--json").ok().json()
    line = assert_error(
        palyra(home, "tasks", "retry", "01FAILED00000000000000000A"), 1, "already pending"
    )
    assert fresh["task_id"] in line


def test_cancel_only_a_pending_task(home: Path) -> None:
    ids = seed(home)
    out = palyra(home, "tasks", "cancel", ids["pending"]).ok()
    assert out.stdout == f"cancelled task {ids['pending']} (journal_vacuum)\n"
    assert out.notes == [NOTE]
    t = palyra(home, "tasks", "show", ids["pending"], "--json").ok().json()
    assert t["status"] == "cancelled" and t["finished_at_unix_ms"] is not None
    assert_error(palyra(home, "tasks", "cancel", ids["running"]), 1, "is running")
    for status in ("succeeded", "failed", "cancelled"):
        assert_error(
            palyra(home, "tasks", "cancel", ids[status]),
            1,
            f"is {status}",
            "only a pending task can be cancelled",
        )
    assert_error(palyra(home, "tasks", "cancel", "nope"), 1, "no task", "palyra tasks list")


# --- the poke ----------------------------------------------------------------------------------


def test_a_listening_executor_is_poked_and_there_is_no_note(home: Path) -> None:
    """A running executor reads ``run/wake-executor``: with a reader on it, the change pokes
    it (one byte) and the not-running note is not printed."""
    run_dir = home / "run"
    run_dir.mkdir(mode=0o700)
    fifo = run_dir / "wake-executor"
    os.mkfifo(fifo, 0o600)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        out = palyra(home, "tasks", "enqueue", "embeddings-backfill", "--json").ok()
        assert out.notes == []
        assert os.read(fd, 16)  # one wake (its byte is notify's business)
        task_id = out.json()["task_id"]
        assert palyra(home, "tasks", "cancel", task_id).ok().notes == []
        assert os.read(fd, 16)
    finally:
        os.close(fd)
