"""The skill files, watched (SPEC §6): ``skills/installed-index.json`` and
``skills/trust-store.json`` are hand-editable and hot-reloaded.

On every change of either (a watchdog event, or the (inode, size, mtime) backstop checked on
every pass of the loop), both are validated:

- one that does not validate is journaled (``STATE_SKILLS_ERROR``: the file, its hash and the
  §2.4 errors) for doctor's ``skills_index`` check, and nothing is applied — skill runs keep
  the last good index (``executor/actions/skill.py``), audits keep their last results;
- when both validate, each is copied to its last-good file (``last_good_path``: what skill
  runs fall back to when the live file does not validate — also after a restart), the
  error is cleared and a ``skill_reaudit`` task is enqueued (the
  executor's workers hash and audit), under its own unique key so a periodic re-audit already
  queued does not swallow it. If one is already *running*, it may have read the files before
  this change: the enqueue is retried on the next passes until a pending one exists.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import orjson
from watchdog.observers.api import BaseObserver

from palyrad.domain.runs import new_ulid
from palyrad.domain.tasks import SKILL_REAUDIT
from palyrad.journal import STATE_SKILLS_ERROR
from palyrad.services.context import ServiceContext
from palyrad.services.scheduler.definitions import DefinitionsEvents, _file_signature
from routines.definitions_file import atomic_write
from routines.skills_files import load_index, load_trust
from routines.validate import format_issue

log = logging.getLogger("palyrad.scheduler")

TRUST_STORE = "trust-store.json"
CHANGE_KEY = "skill_reaudit:change"


def last_good_path(path: Path) -> Path:
    """Where the last valid copy of a skills file is kept (``.<name>.last-good``)."""
    return path.with_name(f".{path.name}.last-good")


class SkillFilesWatch:
    """Validates the skill files when they change and queues their audit."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.paths = (ctx.home.installed_index, ctx.home.skills_dir / TRUST_STORE)
        self.changed = threading.Event()
        self.signatures: tuple[tuple[int, int, int] | None, ...] | None = None
        self.want_audit = False

    def attach(self, observer: BaseObserver) -> None:
        self.ctx.home.skills_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        observer.schedule(
            DefinitionsEvents({p.name for p in self.paths}, self.changed, self.ctx),
            str(self.ctx.home.skills_dir),
            recursive=False,
        )

    def check(self, now: int) -> bool:
        """Validate after a change and queue the audit; True when a task was enqueued."""
        sigs = tuple(_file_signature(p) for p in self.paths)
        if self.changed.is_set() or sigs != self.signatures:
            self.changed.clear()
            first = self.signatures is None
            self.signatures = sigs
            # At start the periodic tick and the runner's on-demand audit cover it, unless
            # a file does not validate (then it is journaled all the same).
            self.want_audit = self._validate(now) and not first
        if not self.want_audit:
            return False
        journal = self.ctx.journal
        task, added = journal.tasks.enqueue(
            new_ulid(now), SKILL_REAUDIT, "{}", now, priority=-5, unique_key=CHANGE_KEY
        )
        if added or task.status == "pending":
            self.want_audit = False
        return added

    def _validate(self, now: int) -> bool:
        """Journal the first invalid file's errors (or clear them); True when both are
        valid."""
        index, trust = self.paths
        for path, errors in ((index, load_index(index).errors), (trust, load_trust(trust).errors)):
            if errors:
                data = _bytes(path)
                lines = [format_issue(str(path), e) for e in errors[:100]]
                log.error("skills file invalid; not applied", extra={"errors": lines[:20]})
                self.ctx.journal.state.set(
                    STATE_SKILLS_ERROR,
                    orjson.dumps(
                        {
                            "at_ms": now,
                            "file": str(path),
                            "file_hash": "sha256:" + hashlib.sha256(data).hexdigest(),
                            "errors": lines,
                        }
                    ).decode(),
                    now,
                )
                return False
        for path in self.paths:
            kept = _bytes(path) if path.exists() else None
            try:
                if kept is not None:
                    atomic_write(last_good_path(path), kept, keep_backup=False)
                else:  # nothing installed / trusted: so is the last good state
                    last_good_path(path).unlink(missing_ok=True)
            except OSError as exc:  # applied all the same; only the fallback is stale
                log.warning("could not keep a last good skills file", extra={"error": str(exc)})
        self.ctx.journal.state.delete(STATE_SKILLS_ERROR)
        return True


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
