"""``sealed_artifact``: the bytes that were hashed are the bytes executed (SPEC §6, skills).

Real files, real memfds, real subprocesses exec'ing ``/proc/self/fd/N``: a tampered file on
disk never changes what runs once ``seal`` returned, a tampered file before it never runs, and
everything that is not a small regular file is refused without blocking.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from palyrad.runtime import sealed_artifact
from palyrad.runtime.sealed_artifact import (
    ArtifactUnavailable,
    SealedArtifact,
    file_sha256,
    seal,
)

pytestmark = pytest.mark.timeout(60)

SCRIPT = b'#!/bin/sh\necho "original:$*"\n'
TAMPERED = b'#!/bin/sh\necho "tampered:$*"\n'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes, mode: int = 0o755) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _open_fds() -> dict[int, str]:
    found: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # listdir's own descriptor, closed by now
            continue
    return found


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """No descriptor the test opened outlives it. Compared by target, not by number set:
    under xdist a worker's earlier tests (garbage, a daemon harness thread) open and
    close descriptors of their own while this test runs, which are not ours to judge."""
    before = _open_fds()
    yield
    after = _open_fds()
    leaked = {
        fd: target
        for fd, target in after.items()
        if before.get(fd) != target
        and any(part in target for part in ("palyra-skill", "pytest", "mountinfo"))
    }
    assert leaked == {}


def _run(sealed: SealedArtifact, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sealed.exec_path, *args], pass_fds=(sealed.fd,), capture_output=True, check=True
    )


def test_script_artifact_runs_from_the_sealed_copy(tmp_path: Path) -> None:
    path = _write(tmp_path / "artifact", SCRIPT)
    with seal(path, _sha(SCRIPT)) as sealed:
        assert sealed.sha256 == _sha(SCRIPT)
        assert sealed.size == len(SCRIPT)
        assert sealed.exec_path == f"/proc/self/fd/{sealed.fd}"
        assert _run(sealed, "a", "b").stdout == b"original:a b\n"


def test_binary_artifact_runs(tmp_path: Path) -> None:
    echo = shutil.which("echo")
    assert echo is not None
    path = tmp_path / "artifact"
    shutil.copyfile(echo, path)
    path.chmod(0o755)
    data = path.read_bytes()
    with seal(path, _sha(data)) as sealed:
        assert sealed.size == len(data)
        assert _run(sealed, "hello", "world").stdout == b"hello world\n"


def test_expected_digest_is_case_insensitive(tmp_path: Path) -> None:
    path = _write(tmp_path / "artifact", SCRIPT)
    with seal(path, _sha(SCRIPT).upper()) as sealed:
        assert sealed.sha256 == _sha(SCRIPT)


def test_tamper_after_seal_still_runs_the_hashed_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "artifact", SCRIPT)
    with seal(path, _sha(SCRIPT)) as sealed:
        # in place (same inode) ...
        with path.open("r+b") as f:
            f.write(TAMPERED)
            f.truncate()
        assert _run(sealed, "x").stdout == b"original:x\n"
        # ... and replaced by another file under the same name
        replacement = _write(tmp_path / "other", TAMPERED + b"# longer\n")
        replacement.replace(path)
        assert _run(sealed, "y").stdout == b"original:y\n"


def test_tamper_before_seal_is_a_mismatch_and_nothing_is_left_open(
    tmp_path: Path, no_fd_leak: None
) -> None:
    path = _write(tmp_path / "artifact", TAMPERED)
    with pytest.raises(ArtifactUnavailable) as info:
        seal(path, _sha(SCRIPT))
    assert info.value.mismatch is True
    assert info.value.reason == (
        f"hash mismatch: expected {_sha(SCRIPT)[:12]}…, found {_sha(TAMPERED)[:12]}…"
    )
    assert str(info.value) == info.value.reason


def test_missing_artifact(tmp_path: Path, no_fd_leak: None) -> None:
    for path in (tmp_path / "absent", tmp_path / "absent" / "below"):
        with pytest.raises(ArtifactUnavailable) as info:
            seal(path, _sha(SCRIPT))
        assert (info.value.reason, info.value.mismatch) == ("artifact missing", False)
    # a regular file used as a directory: ENOTDIR, also "missing"
    _write(tmp_path / "file", SCRIPT)
    with pytest.raises(ArtifactUnavailable, match=r"^artifact missing$"):
        seal(tmp_path / "file" / "below", _sha(SCRIPT))


def test_symlink_is_refused_even_to_the_right_bytes(tmp_path: Path, no_fd_leak: None) -> None:
    target = _write(tmp_path / "target", SCRIPT)
    link = tmp_path / "artifact"
    link.symlink_to(target)
    for call in (lambda: seal(link, _sha(SCRIPT)), lambda: file_sha256(link)):
        with pytest.raises(ArtifactUnavailable) as info:
            call()
        assert (info.value.reason, info.value.mismatch) == ("artifact is a symbolic link", False)


def test_directory_is_refused(tmp_path: Path, no_fd_leak: None) -> None:
    with pytest.raises(ArtifactUnavailable) as info:
        seal(tmp_path, _sha(SCRIPT))
    assert info.value.reason == "artifact is not a regular file (a directory)"
    assert info.value.mismatch is False


def test_fifo_is_refused_without_blocking(tmp_path: Path, no_fd_leak: None) -> None:
    # No writer ever opens it: a blocking open would hang here until the timeout.
    fifo = tmp_path / "artifact"
    os.mkfifo(fifo)
    for call in (lambda: seal(fifo, _sha(SCRIPT)), lambda: file_sha256(fifo)):
        with pytest.raises(ArtifactUnavailable) as info:
            call()
        assert info.value.reason == "artifact is not a regular file (a FIFO)"
        assert info.value.mismatch is False


def test_too_large_by_size(tmp_path: Path, no_fd_leak: None) -> None:
    path = _write(tmp_path / "artifact", SCRIPT)
    for call in (
        lambda: seal(path, _sha(SCRIPT), max_bytes=len(SCRIPT) - 1),
        lambda: file_sha256(path, max_bytes=len(SCRIPT) - 1),
    ):
        with pytest.raises(ArtifactUnavailable) as info:
            call()
        assert info.value.reason == f"artifact is larger than {len(SCRIPT) - 1} bytes"
        assert info.value.mismatch is False
    # exactly at the limit is fine
    with seal(path, _sha(SCRIPT), max_bytes=len(SCRIPT)) as sealed:
        assert sealed.size == len(SCRIPT)


def test_growing_past_the_limit_while_read_is_refused(no_fd_leak: None) -> None:
    # A /proc file is a regular file whose fstat size is 0 but whose read yields bytes: the
    # size check at open passes, and only the limit applied while copying catches it (as for
    # a file that grows after it was opened). It is read once, through the one descriptor.
    proc_file = Path("/proc/self/mountinfo")
    assert os.stat(proc_file).st_size == 0
    for call in (
        lambda: seal(proc_file, "0" * 64, max_bytes=16),
        lambda: file_sha256(proc_file, max_bytes=16),
    ):
        with pytest.raises(ArtifactUnavailable) as info:
            call()
        assert info.value.reason == "artifact is larger than 16 bytes"
        assert info.value.mismatch is False


def test_malformed_expected_digest_fails_without_quarantine(
    tmp_path: Path, no_fd_leak: None
) -> None:
    path = _write(tmp_path / "artifact", SCRIPT)
    for bad in ("", "xyz", _sha(SCRIPT)[:-1], _sha(SCRIPT)[:-1] + "g", "é" * 64):
        with pytest.raises(ArtifactUnavailable) as info:
            seal(path, bad)
        assert info.value.mismatch is False
        assert info.value.reason == "expected digest is not 64 hex digits"


def test_memfd_is_sealed_and_cloexec(tmp_path: Path) -> None:
    path = _write(tmp_path / "artifact", SCRIPT)
    with seal(path, _sha(SCRIPT)) as sealed:
        seals = fcntl.fcntl(sealed.fd, fcntl.F_GET_SEALS)
        for flag in (
            fcntl.F_SEAL_SEAL,
            fcntl.F_SEAL_SHRINK,
            fcntl.F_SEAL_GROW,
            fcntl.F_SEAL_WRITE,
        ):
            assert seals & flag
        assert fcntl.fcntl(sealed.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        with pytest.raises(PermissionError) as write_error:
            os.pwrite(sealed.fd, b"#!/bin/false\n", 0)
        assert write_error.value.errno == errno.EPERM
        with pytest.raises(PermissionError):
            os.write(sealed.fd, b"appended")
        with pytest.raises(PermissionError):
            os.ftruncate(sealed.fd, 0)
        with pytest.raises(PermissionError):
            os.ftruncate(sealed.fd, 1 << 20)
        with pytest.raises(PermissionError):
            fcntl.fcntl(sealed.fd, fcntl.F_ADD_SEALS, 0)  # F_SEAL_SEAL: seals are final
        # re-opened through /proc (as the child could): still no writes
        reopened = os.open(sealed.exec_path, os.O_RDWR)
        try:
            with pytest.raises(PermissionError):
                os.write(reopened, b"x")
        finally:
            os.close(reopened)
        # the content is the verified bytes, read from the start
        assert os.pread(sealed.fd, 1 << 16, 0) == SCRIPT
        assert os.read(sealed.fd, 1 << 16) == SCRIPT
        assert _run(sealed).stdout == b"original:\n"


def test_close_is_idempotent_and_with_closes(tmp_path: Path, no_fd_leak: None) -> None:
    path = _write(tmp_path / "artifact", SCRIPT)
    with seal(path, _sha(SCRIPT)) as sealed:
        fd = sealed.fd
        os.fstat(fd)
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    sealed.close()  # again: a no-op, never closes a number reused meanwhile
    other = seal(path, _sha(SCRIPT))
    other.close()
    other.close()


def test_empty_artifact(tmp_path: Path) -> None:
    path = _write(tmp_path / "artifact", b"")
    with seal(path, _sha(b"")) as sealed:
        assert (sealed.size, sealed.sha256) == (0, _sha(b""))
    assert file_sha256(path) == _sha(b"")


def test_read_fallback_when_sendfile_cannot_write_a_memfd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_fd_leak: None
) -> None:
    def no_sendfile(*args: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", no_sendfile)
    data = os.urandom(3 * sealed_artifact.CHUNK + 17)
    path = _write(tmp_path / "artifact", data)
    with seal(path, _sha(data)) as sealed:
        assert sealed.size == len(data)
        assert os.pread(sealed.fd, len(data) + 1, 0) == data
    with pytest.raises(ArtifactUnavailable, match="larger than"):
        seal(path, _sha(data), max_bytes=2 * sealed_artifact.CHUNK)
    with pytest.raises(ArtifactUnavailable) as info:
        seal(path, _sha(SCRIPT))
    assert info.value.mismatch is True


def test_multi_mib_seal_and_file_sha256(tmp_path: Path) -> None:
    data = os.urandom(5 * (1 << 20) + 123)
    path = _write(tmp_path / "artifact", data, mode=0o644)
    assert file_sha256(path) == _sha(data)
    with seal(path, _sha(data)) as sealed:
        assert sealed.size == len(data)
        assert os.pread(sealed.fd, len(data) + 1, 0) == data


def test_file_sha256_refusals(tmp_path: Path, no_fd_leak: None) -> None:
    with pytest.raises(ArtifactUnavailable, match=r"^artifact missing$"):
        file_sha256(tmp_path / "absent")
    with pytest.raises(ArtifactUnavailable, match=r"^artifact is not a regular file \(a direc"):
        file_sha256(tmp_path)
