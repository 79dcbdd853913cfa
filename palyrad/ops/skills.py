"""Skills for operators (SPEC §4.7): list, install, trust, untrust, audit, quarantine, release.

The files are the truth of what is installed and whom to trust (``skills/installed-index.json``
and ``skills/trust-store.json``, hand-editable); the journal holds what audits found and which
skill ids an operator quarantined. Every command here reads the files, changes what it must
(atomically, under one lock per home so two commands never interleave their edits), audits
what changed and records the outcome in the journal before it returns — so the next ``skill``
run, and the next command, see it, whether or not the daemon runs (the daemon also audits on
every change of either file, and every ``skill_reaudit_interval_ms``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palyrad.domain.skill_audit import QUARANTINED, AuditResult, audit
from palyrad.journal import Journal, SkillAudit
from palyrad.runtime.home import Home
from palyrad.runtime.sealed_artifact import DEFAULT_MAX_BYTES as MAX_ARTIFACT_BYTES
from palyrad.runtime.sealed_artifact import ArtifactUnavailable, file_sha256
from routines.definitions_file import atomic_write, read_document
from routines.errors import InvalidInput, PalyraError
from routines.skills_files import (
    InstalledIndex,
    InstalledSkill,
    Publisher,
    TrustStore,
    dumps_index,
    dumps_trust,
    parse_public_key,
    validate_index_text,
    validate_trust_text,
)
from routines.timefmt import format_rfc3339
from routines.validate import format_issue

TRUST_STORE = "trust-store.json"
ARTIFACT = "artifact"
COPY_CHUNK = 1 << 20


class UnknownSkill(PalyraError):
    """No installed skill has that id (exit 1)."""


def trust_store_path(home: Home) -> Path:
    return home.skills_dir / TRUST_STORE


def artifact_path(home: Home, skill_id: str, version: str) -> Path:
    """Where ``install`` puts a version's artifact (ids and versions are path-safe by their
    validation: no separators, never ``.`` or ``..``)."""
    return home.skills_dir / skill_id / version / ARTIFACT


def read_index(home: Home) -> InstalledIndex:
    """The installed index (missing: nothing installed); raises ``InvalidInput`` with the
    §2.4 position of the first problems when it does not validate."""
    path = home.installed_index
    read = read_document(path)
    if read.missing:
        return InstalledIndex()
    if read.data is None:
        raise InvalidInput(f"{path}: {read.issue.message if read.issue else 'cannot read'}")
    result = validate_index_text(read.data, str(path))
    if result.value is None:
        raise InvalidInput(_issues(str(path), result.errors), "fix the file, then try again")
    return result.value


def read_trust(home: Home) -> TrustStore:
    """The trust store (missing: nobody trusted); ``InvalidInput`` when it does not
    validate."""
    path = trust_store_path(home)
    read = read_document(path)
    if read.missing:
        return TrustStore()
    if read.data is None:
        raise InvalidInput(f"{path}: {read.issue.message if read.issue else 'cannot read'}")
    result = validate_trust_text(read.data, str(path))
    if result.value is None:
        raise InvalidInput(_issues(str(path), result.errors), "fix the file, then try again")
    return result.value


def _issues(filename: str, issues: Sequence[Any]) -> str:
    lines = [format_issue(filename, i) for i in issues[:5]]
    more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
    return "; ".join(lines) + more


@contextlib.contextmanager
def skills_lock(home: Home) -> Iterator[None]:
    """One writer of the skill files at a time (``skills/.lock``)."""
    home.skills_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(home.skills_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- audits ----------------------------------------------------------------------------------


def audit_installed(
    home: Home,
    journal: Journal,
    index: InstalledIndex,
    trust: TrustStore,
    now_ms: int,
    only: str | None = None,
    between: Callable[[], object] | None = None,
) -> list[AuditResult]:
    """Audit every installed version (or those of ``only``), hashing each artifact as it is
    on disk now, and record the results; versions no longer in the index are forgotten.
    ``between`` is called before each artifact (a task extends its lease)."""
    results: list[AuditResult] = []
    for entry in index.skills:
        if only is not None and entry.skill_id != only:
            continue
        if between is not None:
            between()
        path = artifact_path(home, entry.skill_id, entry.version)
        digest: str | None = None
        why: str | None = None
        try:
            digest = file_sha256(path)
        except ArtifactUnavailable as exc:
            why = exc.reason
        results.append(audit(entry, digest, why, trust))
    installed = {(s.skill_id, s.version) for s in index.skills}
    forget = [k for k in journal.skills.audits() if k not in installed]
    journal.skills.record(
        [SkillAudit(r.skill_id, r.version, r.state, r.reason, r.key, now_ms) for r in results],
        forget,
    )
    return results


# --- views -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkillView:
    """One installed version as ``palyra skills list`` shows it."""

    skill_id: str
    version: str
    publisher: str
    current: bool
    state: str
    reason: str | None
    manual: bool
    last_audit_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "skill_id": self.skill_id,
            "version": self.version,
            "publisher": self.publisher,
            "current": self.current,
            "state": self.state,
            "reason": self.reason,
            "manual": self.manual,
            "last_audit_at": None
            if self.last_audit_ms is None
            else format_rfc3339(self.last_audit_ms),
        }


def views(index: InstalledIndex, journal: Journal) -> list[SkillView]:
    """Every installed version with its state: an operator's quarantine first, then the
    last audit (a version never audited is quarantined "not audited yet": it would be
    audited before it runs)."""
    audits = journal.skills.audits()
    manual = journal.skills.quarantines()
    out: list[SkillView] = []
    for s in sorted(index.skills, key=lambda s: (s.skill_id, s.version)):
        a = audits.get((s.skill_id, s.version))
        q = manual.get(s.skill_id)
        reason: str | None
        if q is not None:
            state, reason = QUARANTINED, q.reason or "quarantined by an operator"
        elif a is None:
            state, reason = QUARANTINED, "not audited yet"
        else:
            state, reason = a.state, a.reason
        out.append(
            SkillView(
                s.skill_id,
                s.version,
                s.publisher,
                s.current,
                state,
                reason,
                q is not None,
                None if a is None else a.last_audit_ms,
            )
        )
    return out


# --- commands --------------------------------------------------------------------------------


def install(
    home: Home,
    journal: Journal,
    artifact: Path,
    *,
    skill_id: str,
    version: str,
    publisher: str,
    signature: str,
    now_ms: int,
) -> SkillView:
    """Copy ``artifact`` to ``skills/<id>/<version>/artifact`` (0755), make it the current
    version of ``skill_id`` in the index, audit it and record the result: when this returns,
    a ``skill`` run uses it (or, when the audit failed, refuses it with the reason)."""
    with skills_lock(home):
        index = read_index(home)
        trust = read_trust(home)
        # The arguments are checked by the file's own rules before anything is copied.
        probe = InstalledSkill(skill_id, version, publisher, "0" * 64, signature, True)
        _checked(home, index.with_installed(probe))
        digest = _copy_artifact(home, artifact, skill_id, version)
        entry = InstalledSkill(skill_id, version, publisher, digest, signature, True)
        new = _checked(home, index.with_installed(entry))
        atomic_write(home.installed_index, dumps_index(new), keep_backup=True)
        audit_installed(home, journal, new, trust, now_ms, only=skill_id)
    return _view(new, journal, skill_id, version)


def _checked(home: Home, index: InstalledIndex) -> InstalledIndex:
    """``index`` as the file would validate it; ``InvalidInput`` naming what is wrong."""
    check = validate_index_text(dumps_index(index), str(home.installed_index))
    if check.value is None:
        raise InvalidInput(
            "; ".join(i.message for i in check.errors[:3]), "see: palyra skills install --help"
        )
    return check.value


def _copy_artifact(home: Home, source: Path, skill_id: str, version: str) -> str:
    """Copy ``source`` into place (temp file, fsync, rename) and return its sha256. Only a
    regular file of at most ``MAX_ARTIFACT_BYTES`` (what a run accepts) is copied: a FIFO
    would hang the command with the lock held, ``/dev/zero`` would fill the disk."""
    dest = artifact_path(home, skill_id, version)
    for d in (home.skills_dir / skill_id, dest.parent):  # each level 0700, whatever the umask
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
    try:
        src_fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {source}: {exc.strerror}", "pass the artifact's path"
        ) from None
    src = os.fdopen(src_fd, "rb")
    st = os.fstat(src_fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ARTIFACT_BYTES:
        src.close()
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "too large"
        raise InvalidInput(
            f"{source} is {what}",
            f"an artifact is a regular file of at most {MAX_ARTIFACT_BYTES} bytes",
        )
    h = hashlib.sha256()
    copied = 0
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".artifact.", suffix=".tmp")
    try:
        with src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > MAX_ARTIFACT_BYTES:  # it grew while being copied
                    raise InvalidInput(
                        f"{source} grew past {MAX_ARTIFACT_BYTES} bytes while being copied"
                    )
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), 0o755)
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return h.hexdigest()


def _view(index: InstalledIndex, journal: Journal, skill_id: str, version: str) -> SkillView:
    for v in views(index, journal):
        if (v.skill_id, v.version) == (skill_id, version):
            return v
    raise UnknownSkill(f"no skill {skill_id!r} version {version!r}")


def trust(home: Home, journal: Journal, publisher: str, public_key: str, now_ms: int) -> None:
    """Trust ``publisher``'s Ed25519 key (replacing an earlier one) and re-audit."""
    key = parse_public_key(public_key)
    with skills_lock(home):
        store = read_trust(home).with_publisher(Publisher(publisher, key))
        _write_trust(home, store)
        audit_installed(home, journal, read_index(home), store, now_ms)


def untrust(home: Home, journal: Journal, publisher: str, now_ms: int) -> bool:
    """Stop trusting ``publisher`` (its skills are quarantined by the re-audit); False when
    it was not trusted."""
    with skills_lock(home):
        store = read_trust(home)
        if store.get(publisher) is None:
            return False
        store = store.without(publisher)
        _write_trust(home, store)
        audit_installed(home, journal, read_index(home), store, now_ms)
    return True


def _write_trust(home: Home, store: TrustStore) -> None:
    data = dumps_trust(store)
    path = trust_store_path(home)
    check = validate_trust_text(data, str(path))
    if check.value is None:
        raise InvalidInput(_issues(str(path), check.errors), "see: palyra skills trust --help")
    atomic_write(path, data, keep_backup=True)


def audit_now(home: Home, journal: Journal, skill_id: str | None, now_ms: int) -> list[AuditResult]:
    """``palyra skills audit [SKILL_ID]``: audit now; ``UnknownSkill`` for an unknown id."""
    index = read_index(home)
    if skill_id is not None and not index.versions(skill_id):
        raise UnknownSkill(f"no installed skill {skill_id!r}", "see: palyra skills list")
    return audit_installed(home, journal, index, read_trust(home), now_ms, only=skill_id)


def quarantine(
    home: Home, journal: Journal, skill_id: str, reason: str | None, now_ms: int
) -> None:
    """An operator's quarantine of every version of ``skill_id`` (sticky). It only writes
    the journal, so it works while the index is being edited (and does not validate): the
    emergency brake must not wait for a fixed file; an unknown id is refused otherwise."""
    try:
        known = bool(read_index(home).versions(skill_id))
    except InvalidInput:
        known = True
    if not known:
        raise UnknownSkill(f"no installed skill {skill_id!r}", "see: palyra skills list")
    journal.skills.quarantine(skill_id, reason, now_ms)


def release(home: Home, journal: Journal, skill_id: str, now_ms: int) -> list[AuditResult]:
    """Lift an operator's quarantine and audit the skill at once (the result decides)."""
    index = read_index(home)
    if not index.versions(skill_id):
        raise UnknownSkill(f"no installed skill {skill_id!r}", "see: palyra skills list")
    journal.skills.release(skill_id, now_ms)
    return audit_installed(home, journal, index, read_trust(home), now_ms, only=skill_id)
