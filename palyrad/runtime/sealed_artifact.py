"""Verify a skill artifact and hold the verified bytes where nobody can change them (SPEC §6).

A ``skill`` run may execute an installed artifact only if its bytes hash to the audited
sha256, and the bytes that were hashed must be the bytes executed: hashing the path and then
exec'ing the path would let anyone who can write the skills directory swap the file in
between. ``seal`` therefore opens the artifact once (``O_NOFOLLOW``, never re-opened by
name), copies it into an anonymous memory file (``memfd``), seals that copy against every
kind of change, and only then hashes the *sealed copy*: the kernel guarantees the hashed
bytes are the bytes a later ``execve`` of ``/proc/self/fd/N`` loads, whatever happens to the
file on disk afterwards. A mismatch closes the copy and raises ``ArtifactUnavailable`` with
``mismatch=True`` (the caller quarantines the skill); nothing is ever spawned from it.

Cost (measured on a loaded 2-core host): about 2 ms for a 1 MB artifact (0.75 ms of it the
sha256 itself), 20-30 ms for 10 MB; the copy is a kernel-side ``sendfile`` into tmpfs pages,
as fast as or faster than read + write through a Python buffer.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import mmap
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

# Copy and hashing chunk: large enough that per-call overhead is negligible, small enough to
# notice early a file that grows past ``max_bytes`` while it is read.
CHUNK = 1 << 20

DEFAULT_MAX_BYTES = 1 << 30

# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (it is refused by
# the fstat check right after, without ever blocking). O_NOFOLLOW: a symlink as the last path
# component is refused (ELOOP) rather than followed somewhere the audit never looked.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

# Linux ≥ 6.3 memfd_create flag (include/uapi/linux/memfd.h); Python 3.11 has no constant.
# Asking for an executable memfd explicitly keeps working under ``vm.memfd_noexec = 1`` (which
# otherwise makes new memfds non-executable) and avoids the kernel's "called without MFD_EXEC
# or MFD_NOEXEC_SEAL" log warning. Older kernels reject the unknown bit with EINVAL; then we
# fall back to the plain flags (there memfds are always executable).
_MFD_EXEC = getattr(os, "MFD_EXEC", 0x0010)
_mfd_exec_supported = True

# Every seal: no more seals (so none can be removed), no shrinking (which would also make the
# hashing mmap below fault with SIGBUS), no growing, no writes — through any descriptor,
# including one re-opened from /proc/<pid>/fd by the child itself.
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class ArtifactUnavailable(Exception):
    """The artifact cannot be used: missing, not a regular file, a symlink, too large,
    unreadable, or its bytes do not hash to the expected digest.

    ``reason`` is one short sentence for the run's error message and the quarantine reason;
    ``mismatch`` is True only for a hash mismatch (the one case where the caller quarantines:
    the other cases are the audit's business, or not the artifact's fault at all).
    """

    def __init__(self, reason: str, *, mismatch: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.mismatch = mismatch


@dataclass
class SealedArtifact:
    """A sealed memfd holding exactly the verified bytes of an artifact.

    ``fd`` has FD_CLOEXEC set, so it leaks into no other child; the spawner hands it to the
    skill's process with ``pass_fds=(fd,)`` (which keeps the number) and execs ``exec_path``.
    The memfd's mode stays the kernel's default 0777: writes are refused by the seals whatever
    the mode, and the inode is reachable only through this descriptor or /proc/<pid>/fd of a
    process holding it, which needs ptrace access to that process anyway. Close it once the
    child has been spawned (the child keeps its own copy of the descriptor).
    """

    fd: int
    sha256: str
    size: int
    _closed: bool = field(default=False, init=False, repr=False)

    @property
    def exec_path(self) -> str:
        """The path a child that inherited ``fd`` at the same number can ``execve``.

        ``/proc/self`` resolves in the child, so the path names the child's own descriptor;
        a ``#!`` script works too (its interpreter opens the same path, which the child
        inherited without CLOEXEC through ``pass_fds``).
        """
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        """Close the memfd; calling it again does nothing (never closes a reused number)."""
        if not self._closed:
            self._closed = True
            os.close(self.fd)

    def __enter__(self) -> SealedArtifact:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def seal(path: Path, expected_sha256: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> SealedArtifact:
    """Copy the artifact at ``path`` into a sealed memfd and check it hashes to the digest.

    The file is opened and read exactly once; its path is never looked at again. Raises
    ``ArtifactUnavailable`` (``mismatch=True`` only for a digest mismatch); on any failure no
    descriptor is left open.
    """
    expected = _normalized_digest(expected_sha256)
    src = _open_regular(path, max_bytes)
    try:
        memfd = _memfd()
        try:
            size = _copy(src, memfd, max_bytes)
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
            found = _sha256_of_sealed(memfd, size)
            if not hmac.compare_digest(found, expected):
                raise ArtifactUnavailable(
                    f"hash mismatch: expected {expected[:12]}…, found {found[:12]}…",
                    mismatch=True,
                )
            os.lseek(memfd, 0, os.SEEK_SET)
            return SealedArtifact(fd=memfd, sha256=found, size=size)
        except BaseException:
            os.close(memfd)
            raise
    except OSError as exc:
        raise ArtifactUnavailable(f"artifact unreadable: {exc.strerror or exc}") from exc
    finally:
        os.close(src)


def file_sha256(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The lower-case hex sha256 of the file at ``path``, streamed (for audits).

    The same refusals as ``seal`` (missing, symlink, not a regular file, more than
    ``max_bytes`` — also if the file grows past it while read). A plain read loop rather than
    ``hashlib.file_digest``, which cannot stop at a size limit; never an mmap of the file
    itself, which a concurrent truncate would turn into a SIGBUS of the daemon.
    """
    fd = _open_regular(path, max_bytes)
    try:
        digest = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        total = 0
        while n := os.readv(fd, [buf]):
            total += n
            if total > max_bytes:
                raise _too_large(max_bytes)
            digest.update(view[:n])
        return digest.hexdigest()
    except OSError as exc:
        raise ArtifactUnavailable(f"artifact unreadable: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _normalized_digest(expected: str) -> str:
    value = expected.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        # Not the artifact's fault (the index is validated before it is applied): fail the
        # run, quarantine nothing.
        raise ArtifactUnavailable("expected digest is not 64 hex digits")
    return value


def _too_large(max_bytes: int) -> ArtifactUnavailable:
    return ArtifactUnavailable(f"artifact is larger than {max_bytes} bytes")


def _open_regular(path: Path, max_bytes: int) -> int:
    """Open ``path`` without following a final symlink and check it is a small regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ArtifactUnavailable("artifact missing") from exc
        if exc.errno == errno.ELOOP:
            raise ArtifactUnavailable("artifact is a symbolic link") from exc
        raise ArtifactUnavailable(f"artifact unreadable: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactUnavailable(f"artifact is not a regular file ({_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            raise _too_large(max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "unknown type"


def _memfd() -> int:
    global _mfd_exec_supported
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    if _mfd_exec_supported:
        try:
            return os.memfd_create("palyra-skill", flags | _MFD_EXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _mfd_exec_supported = False
    return os.memfd_create("palyra-skill", flags)


def _copy(src: int, dst: int, max_bytes: int) -> int:
    """Copy ``src`` to ``dst`` from the current offset to EOF; fail past ``max_bytes``.

    ``sendfile`` keeps the bytes in the kernel (page cache to tmpfs pages); ``copy_file_range``
    would too, but refuses memfd targets across file systems (EXDEV). Asking for at most
    ``max_bytes + 1`` in total notices a file that grows while read without reading more.
    """
    total = 0
    try:
        while n := os.sendfile(dst, src, None, min(CHUNK, max_bytes + 1 - total)):
            total += n
            if total > max_bytes:
                raise _too_large(max_bytes)
        return total
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS) or total:
            raise
    return _copy_by_read(src, dst, max_bytes)


def _copy_by_read(src: int, dst: int, max_bytes: int) -> int:
    """The portable fallback for ``_copy`` when ``sendfile`` cannot write to a memfd."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    while n := os.readv(src, [buf]):
        total += n
        if total > max_bytes:
            raise _too_large(max_bytes)
        written = 0
        while written < n:
            written += os.write(dst, view[written:n])
    return total


def _sha256_of_sealed(memfd: int, size: int) -> str:
    """Hash the sealed memfd itself, so the digest is of the bytes ``execve`` will load.

    An mmap is safe here only because F_SEAL_SHRINK is already in place (no SIGBUS); one
    ``update`` over the whole mapping releases the GIL while hashing.
    """
    if size == 0:
        return hashlib.sha256().hexdigest()
    with mmap.mmap(memfd, size, prot=mmap.PROT_READ) as mapped:
        return hashlib.sha256(mapped).hexdigest()
