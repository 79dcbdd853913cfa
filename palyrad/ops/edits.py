"""Changing definitions.json on an operator's behalf, with read-your-writes.

Every CLI edit goes through ``locked_edit`` (one writer at a time, atomic, ``.bak`` kept,
never overwriting a broken hand edit). When the daemon is running, the edit returns only once
the scheduler has applied exactly that file (its hash is journaled on apply), so the next
command sees the change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson

from palyrad.journal import STATE_DEFINITIONS_APPLIED, STATE_DEFINITIONS_ERROR, Journal
from palyrad.ops.definitions_hash import file_hash
from palyrad.runtime.config import load_config
from palyrad.runtime.home import Home
from palyrad.runtime.liveness import daemon_alive
from palyrad.runtime.notify import poke_service
from routines.definitions_file import Editor, locked_edit
from routines.errors import InvalidInput
from routines.timefmt import now_ms

APPLY_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class EditOutcome:
    changed: bool
    daemon_running: bool
    applied: bool  # the daemon confirmed it applied this file


def default_timezone(home: Home) -> str:
    return load_config(home.config).scheduler_timezone


@contextmanager
def edit_definitions(home: Home) -> Iterator[Editor]:
    """A locked edit of the home's definitions (raises DefinitionsError on invalid input).

    A missing file is refused while a last applied copy exists: the daemon keeps running
    that copy, and an edit starting from "no routines" would write a file that drops them
    all (and the daemon would apply it)."""
    home.ensure()
    if not home.definitions.exists() and home.last_good_definitions.exists():
        raise InvalidInput(
            f"{home.definitions} is missing; palyrad keeps running the definitions it last"
            " applied, and an edit now would drop them",
            f"restore them first: cp {home.last_good_definitions} {home.definitions}",
        )
    with locked_edit(
        home.definitions, now_ms=now_ms(), env=os.environ, default_timezone=default_timezone(home)
    ) as editor:
        yield editor


def wait_applied(home: Home, journal: Journal, timeout_s: float = APPLY_TIMEOUT_S) -> bool:
    """Poke the scheduler and wait until it has applied the current file's bytes."""
    if not daemon_alive(home):
        return False
    want = file_hash(home)
    deadline = time.monotonic() + timeout_s
    poke_service(home.run_dir, "scheduler")
    while time.monotonic() < deadline:
        for key in (STATE_DEFINITIONS_APPLIED, STATE_DEFINITIONS_ERROR):
            raw = journal.state.get(key)
            if raw and orjson.loads(raw).get("file_hash") == want:
                return key == STATE_DEFINITIONS_APPLIED
        time.sleep(0.02)
    return False


def apply_edit(home: Home, journal: Journal, change: Callable[[Editor], None]) -> EditOutcome:
    """Run ``change`` under the lock, write, and (daemon running) wait until applied.

    A command either succeeds or changes nothing: the write is its last step that can fail.
    So the caller opens the journal (needed for read-your-writes, and by the CLI to print
    the routine it wrote) *before* calling this: a journal that cannot be opened stops the
    command before definitions.json is touched, and ``change`` raises to write nothing."""
    with edit_definitions(home) as editor:
        change(editor)
        changed = editor.changed
    running = daemon_alive(home)
    applied = wait_applied(home, journal) if running else False
    return EditOutcome(changed, running, applied)
