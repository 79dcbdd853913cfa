"""Who may write to the home: one judgement for the daemon's start and for ``palyra doctor``.

SPEC §1: the daemon refuses to start on a home (or its ``certs/``, ``skills/``,
``routines/``) that another user can write to — whoever can write there can swap the
definitions it runs, the skills it executes or the CA it trusts. ``preflight`` raises the
first such finding (``refuse_unsafe_home``); doctor reports every finding, including the
ones that are only advice (the other folders, other users reading the home), and
``palyra doctor --repair`` fixes the modes with ``chmod 700``. An owner that is not the
current user is refused too but never "repaired": a chown is not ours to decide.

Apart from ``runtime.home`` because ``palyra routines run-now`` imports that module on its
100 ms budget and never needs this one.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from palyrad.runtime.home import Home
from routines.errors import PalyraError

# Relative to the home ("" is the home itself). Others writing to these: the daemon refuses.
PROTECTED_DIRS = ("", "certs", "skills", "routines")
# Created 0700 by the daemon too; others writing here is fixed by doctor --repair, not refused.
PRIVATE_DIRS = ("run", "logs", "runs")
# Every folder the daemon creates at start (``Home.ensure``), in the order doctor lists them.
HOME_DIRS = ("routines", "skills", "certs", "runs", "run", "logs")
# Files whose writer decides what code runs: whoever can write the trust store adds a key
# and runs what they sign; whoever can write the index points a skill at an older signed
# version. Others writing to them is refused like a protected folder (``chmod 600`` fixes).
PROTECTED_FILES = ("skills/trust-store.json", "skills/installed-index.json")


class UnsafeHome(PalyraError, RuntimeError):
    """The home (or a protected folder in it) can be changed by another user (exit 1)."""


@dataclass(frozen=True, slots=True)
class DirFinding:
    """What is wrong with one folder of the home.

    ``refused``: the daemon will not start because of it; ``chmod_fixes``: ``chmod 700``
    is the (safe, reversible) fix — false for a wrong owner or a file where a folder belongs.
    """

    path: Path
    problem: str
    refused: bool
    chmod_fixes: bool
    # A folder of the home that is a symlink: judged by what it points to, which is where
    # the fix belongs — and which ``doctor --repair`` never changes (it may be anywhere).
    symlink_to: Path | None = None
    is_file: bool = False  # one of PROTECTED_FILES (its fix is chmod 600)

    @property
    def fix(self) -> str:
        """The command (or action) that fixes it."""
        if self.chmod_fixes:
            return f"chmod {'600' if self.is_file else '700'} {self.path}"
        if self.symlink_to is not None and "can be" in self.problem:
            return (
                f"chmod 700 {self.symlink_to} ({self.path} is a symlink to it: doctor --repair"
                " changes nothing outside the home)"
            )
        if "owned by" in self.problem:
            return f"sudo chown {_user_name()} {self.path}, or use a home of your own"
        return f"move {self.path} aside (the daemon creates the folder)"


def judge_dir(
    path: Path, *, protected: bool, uid: int | None = None, follow_root: bool = True
) -> DirFinding | None:
    """The problem with the existing folder ``path`` (None when it is fine or missing).

    Others writing to it is refused for a protected folder; others reading it is advice
    (the journal, logs and run output live in the home). A folder inside the home
    (``follow_root=False``) that is a symlink is judged by its target, but ``chmod`` is not
    its fix here: the target is outside the home."""
    uid = os.geteuid() if uid is None else uid
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISDIR(st.st_mode):
        return DirFinding(path, "is not a directory", refused=protected, chmod_fixes=False)
    if st.st_uid != uid:
        return DirFinding(
            path, f"is owned by uid {st.st_uid}, not by you (uid {uid})", protected, False
        )
    mode = stat.S_IMODE(st.st_mode)
    target = _symlink_target(path) if follow_root is False else None
    via = f" (through the symlink to {target})" if target is not None else ""
    if mode & 0o022:
        who = "group and other users" if mode & 0o022 == 0o022 else _who(mode, 0o020)
        return DirFinding(
            path,
            f"can be written by {who} (mode {mode:04o}){via}",
            protected,
            target is None,
            target,
        )
    if mode & 0o004:
        return DirFinding(
            path,
            f"can be read by other users (mode {mode:04o}){via}",
            False,
            target is None,
            target,
        )
    return None


def _symlink_target(path: Path) -> Path | None:
    """Where ``path`` leads when it is a symlink (None when it is not)."""
    if not os.path.islink(path):
        return None
    return Path(os.path.realpath(path))


def chmod_private_dir(path: Path, *, follow: bool) -> None:
    """``chmod 700`` the folder ``path`` — never through a symlink unless ``follow`` (the
    home itself, which the operator named), and only a folder that is ours: the fd that is
    changed is the one that was checked, so a folder swapped for a symlink meanwhile (by
    someone who could write to the home) is refused, not followed."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnsafeHome(f"{path}: not changed ({exc.strerror}: not a folder of the home)") from exc
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise UnsafeHome(f"{path}: not changed (it is not yours)")
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def chmod_private_file(path: Path) -> None:
    """``chmod 600`` the regular file ``path`` (a private key) — never through a symlink,
    only a file that is ours, on the descriptor that was checked (a file swapped for a
    symlink meanwhile is refused, not followed); opening never blocks (a FIFO)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnsafeHome(f"{path}: not changed ({exc.strerror})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeHome(f"{path}: not changed (not a regular file)")
        if st.st_uid != os.geteuid():
            raise UnsafeHome(f"{path}: not changed (it is not yours)")
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _who(mode: int, group_bit: int) -> str:
    return "its group" if mode & group_bit else "other users"


def judge_file(path: Path, uid: int | None = None) -> DirFinding | None:
    """The problem with the existing protected file ``path`` (None when fine or missing):
    not a regular file (a symlink is one: it may lead anywhere), not ours, or writable by
    others."""
    uid = os.geteuid() if uid is None else uid
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return DirFinding(path, "is not a regular file", True, False, is_file=True)
    if st.st_uid != uid:
        return DirFinding(
            path, f"is owned by uid {st.st_uid}, not by you (uid {uid})", True, False, is_file=True
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = "group and other users" if mode & 0o022 == 0o022 else _who(mode, 0o020)
        return DirFinding(
            path, f"can be written by {who} (mode {mode:04o})", True, True, is_file=True
        )
    return None


def home_findings(home: Home) -> list[DirFinding]:
    """Every problem of ``home``'s folders (the home first, then ``HOME_DIRS`` order) and
    protected files; what does not exist is not a finding here."""
    uid = os.geteuid()
    found = []
    for rel in ("", *HOME_DIRS):
        path = home.root / rel if rel else home.root
        finding = judge_dir(path, protected=rel in PROTECTED_DIRS, uid=uid, follow_root=not rel)
        if finding is not None:
            found.append(finding)
    for rel in PROTECTED_FILES:
        finding = judge_file(home.root / rel, uid)
        if finding is not None:
            found.append(finding)
    return found


def refuse_unsafe_home(home: Home) -> None:
    """Raise ``UnsafeHome`` for the first folder the daemon must not start on (SPEC §1)."""
    for finding in home_findings(home):
        if finding.refused:
            raise UnsafeHome(
                f"{finding.path} {finding.problem}: another user could change what palyrad runs",
                f"{finding.fix}, or run: palyra doctor --repair"
                if finding.chmod_fixes
                else finding.fix,
            )
