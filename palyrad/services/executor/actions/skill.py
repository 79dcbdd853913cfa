"""``skill`` actions (SPEC §2.2, §6): the current version's artifact, run only as audited.

A skill run starts only when, at prepare time:

1. the skill id has a current version in the index (the last one that validated: a broken
   hand edit keeps the previous skills runnable, as definitions.json does);
2. no operator quarantined the skill id;
3. the journal's last audit of that version passed *for exactly this* (id, version,
   publisher, artifact hash, signature, publisher key) — ``audit_key``. An index or trust
   store edit not audited yet is audited here first, and the result recorded;
4. the artifact, copied once into a sealed memfd, hashes to the index's digest. The run
   executes that memfd by descriptor (``/proc/self/fd/N``), never the path: the bytes that
   were hashed are the bytes that run, whatever happens to the file afterwards. A mismatch
   quarantines the version (recorded like an audit) and fails the run ``skill_unavailable``.

The runner keeps the parsed files and re-reads one only when its (inode, size, mtime)
changed: a run of an unchanged skill costs three ``stat`` calls, two primary-key reads and
the seal (~2 ms for 1 MB).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import orjson

from palyrad.domain.runs import Run
from palyrad.domain.skill_audit import ACTIVE, QUARANTINED, audit, audit_key
from palyrad.journal import Journal, SkillAudit
from palyrad.runtime.home import Home
from palyrad.runtime.sealed_artifact import ArtifactUnavailable, file_sha256, seal
from palyrad.seams import ActionUnavailable, Invocation
from routines.kinds import ErrorKind
from routines.model import Action, SkillAction
from routines.skills_files import (
    InstalledIndex,
    InstalledSkill,
    SkillsFileResult,
    TrustStore,
    load_index,
    load_trust,
)

log = logging.getLogger("palyrad.executor")

TRUST_STORE = "trust-store.json"
ARTIFACT = "artifact"

T = TypeVar("T")


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    """What changes with every write: the ctime too, which ``cp -p`` or ``touch -r`` cannot
    set back (an edit that keeps the size and the mtime is still seen)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LastGood(Generic[T]):
    """A file's last valid content, re-read when the file changed. An invalid version is
    logged and ignored: the previous one stays in force — and before any was read here (a
    fresh executor), the copy the scheduler kept of the last valid file
    (``.<name>.last-good``, ``scheduler.skill_files``)."""

    def __init__(self, path: Path, load: Callable[[Path], SkillsFileResult[T]], empty: T) -> None:
        self.path = path
        self._load = load
        self.value = empty
        self._loaded = False
        self._seen: tuple[int, int, int, int] | bool | None = False  # False: never read

    def get(self) -> T:
        sig = _signature(self.path)
        if sig == self._seen:
            return self.value
        self._seen = sig
        result = self._load(self.path)
        if result.value is not None:
            self.value, self._loaded = result.value, True
            return self.value
        log.error(
            "skills file invalid; keeping the last good one",
            extra={"file": str(self.path), "errors": [e.message for e in result.errors[:5]]},
        )
        if not self._loaded:
            kept = self._load(self.path.with_name(f".{self.path.name}.last-good"))
            if kept.value is not None:
                self.value, self._loaded = kept.value, True
        return self.value


def unavailable(message: str) -> ActionUnavailable:
    return ActionUnavailable(ErrorKind.SKILL_UNAVAILABLE, message)


class SkillRunner:
    """Prepares skill runs (see the module docstring)."""

    kind = "skill"

    def __init__(self, home: Home, journal: Callable[[], Journal], now_ms: Callable[[], int]):
        self._home = home
        self._journal = journal
        self._now_ms = now_ms
        self._index = LastGood(home.installed_index, load_index, InstalledIndex())
        self._trust = LastGood(home.skills_dir / TRUST_STORE, load_trust, TrustStore())

    def prepare(self, run: Run, action: Action) -> Invocation:
        if not isinstance(action, SkillAction):
            raise unavailable("not a skill action")
        sid = action.skill_id
        entry = self._index.get().current(sid)
        if entry is None:
            raise unavailable(f"skill {sid!r} is not installed")
        journal = self._journal()
        manual = journal.skills.quarantines().get(sid)
        if manual is not None:
            why = f": {manual.reason}" if manual.reason else ""
            raise unavailable(f"skill {sid!r} is quarantined by an operator{why}")
        self._ensure_audited(journal, entry)
        path = self._home.skills_dir / entry.skill_id / entry.version / ARTIFACT
        try:
            sealed = seal(path, entry.artifact_sha256)
        except ArtifactUnavailable as exc:
            if exc.mismatch:
                self._record(journal, entry, QUARANTINED, exc.reason, None)
                log.warning(
                    "skill artifact changed since its audit: quarantined",
                    extra={"skill_id": sid, "version": entry.version, "reason": exc.reason},
                )
            raise unavailable(f"skill {sid!r} {entry.version}: {exc.reason}") from None
        args = orjson.dumps(list(action.args)).decode()
        return Invocation(
            argv=(sealed.exec_path,),
            env={"PALYRA_SKILL_ARGS": args},
            pass_fds=(sealed.fd,),
            release=sealed.close,
        )

    def _ensure_audited(self, journal: Journal, entry: InstalledSkill) -> None:
        """Raise unless this exact entry passed an audit; audit it first when it never was
        (a hand edit the daemon has not audited yet)."""
        publisher = self._trust.get().get(entry.publisher)
        expected = None if publisher is None else audit_key(entry, publisher.key_bytes)
        last = journal.skills.audit(entry.skill_id, entry.version)
        if (
            last is not None
            and last.state == ACTIVE
            and expected is not None
            and last.audited_key == expected
        ):
            return
        # Never audited, audited as something else, or quarantined by an audit: audit now
        # (a passing audit lifts an audit's quarantine, as the periodic one would).
        path = self._home.skills_dir / entry.skill_id / entry.version / ARTIFACT
        digest: str | None = None
        why: str | None = None
        try:
            digest = file_sha256(path)
        except ArtifactUnavailable as exc:
            why = exc.reason
        result = audit(entry, digest, why, self._trust.get())
        self._record(journal, entry, result.state, result.reason, result.key)
        if not result.passed:
            raise unavailable(f"skill {entry.skill_id!r} {entry.version}: {result.reason}")

    def _record(
        self, journal: Journal, entry: InstalledSkill, state: str, reason: str | None,
        key: str | None,
    ) -> None:  # fmt: skip
        try:
            journal.skills.record(
                [SkillAudit(entry.skill_id, entry.version, state, reason, key, self._now_ms())]
            )
        except Exception:  # the run is refused either way; the next audit records it
            log.exception("could not record a skill audit")
