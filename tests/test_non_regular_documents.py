"""Anything but a regular file where a document belongs is an invalid document, read without
blocking (issue 9 item 3): a directory, a FIFO, a socket, a device."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from routines.definitions_file import load, read_document

pytestmark = pytest.mark.timeout(30)


def _directory(p: Path) -> None:
    p.mkdir()


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _device(p: Path) -> None:
    p.symlink_to("/dev/zero")  # followed: the open descriptor is a character device


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "definitions.json"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    try:
        yield path
    finally:
        s.close()


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_directory, "a directory"), (_fifo, "a FIFO"), (_device, "a character device")],
)
def test_non_regular_files_are_invalid_documents(
    tmp_path: Path, make: Callable[[Path], None], kind: str
) -> None:
    path = tmp_path / "definitions.json"
    make(path)
    read = read_document(path)
    assert read.data is None and read.issue is not None
    assert f"is {kind}, not a file" in read.issue.message
    result = load(path, now_ms=0, env={})
    assert result.definitions is None and kind in result.errors[0].message


def test_a_socket_is_an_invalid_document(unix_socket: Path) -> None:
    read = read_document(unix_socket)
    assert read.issue is not None and "socket" in read.issue.message


def test_a_missing_file_is_missing_not_an_error(tmp_path: Path) -> None:
    read = read_document(tmp_path / "nope.json")
    assert read.missing and read.issue is None


def test_validate_on_a_fifo_answers_at_once(tmp_path: Path) -> None:
    """The CLI path: `routines validate` names the problem instead of hanging."""
    home = tmp_path / "home"
    (home / "routines").mkdir(parents=True)
    os.mkfifo(home / "routines" / "definitions.json")
    palyra = Path(sys.executable).parent / "palyra"
    proc = subprocess.run(
        [str(palyra), "--home", str(home), "routines", "validate"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2
    assert "is a FIFO, not a file" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
