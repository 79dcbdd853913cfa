"""Webhook secrets (SPEC §4.5) with real files: what is read, and every refusal."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from palyrad.runtime.webhook_secrets import (
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    SecretUnavailable,
    read_secret,
)
from routines.model import WebhookTrigger

SECRET = b"0123456789abcdef-webhook"


def _file(tmp_path: Path, data: bytes = SECRET, mode: int = 0o600, name: str = "s") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    p.chmod(mode)
    return p


def _refusal(trigger: WebhookTrigger, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SecretUnavailable) as info:
        read_secret(trigger, env or {})
    reason = info.value.reason
    assert SECRET.decode() not in reason and str(info.value) == reason
    return reason


def _from_file(p: Path | str) -> WebhookTrigger:
    return WebhookTrigger(secret_file=str(p))


def test_env_secret() -> None:
    trig = WebhookTrigger(secret_env="HOOK")
    assert read_secret(trig, {"HOOK": SECRET.decode()}) == SECRET
    # A variable's value is used as it is: no newline stripping.
    assert read_secret(trig, {"HOOK": SECRET.decode() + "\n"}) == SECRET + b"\n"
    assert _refusal(trig) == "environment variable HOOK is not set"
    assert _refusal(trig, {"HOOK": ""}) == "environment variable HOOK is not set"
    assert _refusal(trig, {"HOOK": "short"}) == (
        f"environment variable HOOK holds fewer than {MIN_SECRET_BYTES} bytes"
    )
    assert "longer than" in _refusal(trig, {"HOOK": "x" * (MAX_SECRET_BYTES + 1)})


def test_good_file_and_one_trailing_newline(tmp_path: Path) -> None:
    assert read_secret(_from_file(_file(tmp_path)), {}) == SECRET
    assert read_secret(_from_file(_file(tmp_path, SECRET + b"\n")), {}) == SECRET
    assert read_secret(_from_file(_file(tmp_path, SECRET + b"\r\n")), {}) == SECRET
    assert read_secret(_from_file(_file(tmp_path, SECRET + b"\n\n")), {}) == SECRET + b"\n"
    assert read_secret(_from_file(_file(tmp_path, b"x" * MAX_SECRET_BYTES + b"\n")), {}) == (
        b"x" * MAX_SECRET_BYTES
    )


def test_read_on_every_call(tmp_path: Path) -> None:
    p = _file(tmp_path)
    trig = _from_file(p)
    assert read_secret(trig, {}) == SECRET
    p.write_bytes(b"rotated-secret-value-0001")
    assert read_secret(trig, {}) == b"rotated-secret-value-0001"


def test_tilde_is_expanded_at_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _file(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_secret(WebhookTrigger(secret_file="~/s"), {}) == SECRET


def test_too_short_after_the_newline(tmp_path: Path) -> None:
    p = _file(tmp_path, b"x" * (MIN_SECRET_BYTES - 1) + b"\n")
    assert _refusal(_from_file(p)) == (f"secret file {p} holds fewer than {MIN_SECRET_BYTES} bytes")
    assert read_secret(_from_file(_file(tmp_path, b"x" * MIN_SECRET_BYTES + b"\n")), {})


def test_too_large(tmp_path: Path) -> None:
    for data in (b"x" * (MAX_SECRET_BYTES + 1), b"x" * (MAX_SECRET_BYTES + 2), b"x" * 100_000):
        p = _file(tmp_path, data)
        assert _refusal(_from_file(p)) == f"secret file {p} is larger than {MAX_SECRET_BYTES} bytes"


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope"
    assert _refusal(_from_file(p)) == f"secret file {p} does not exist"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o610, 0o601, 0o660])
def test_group_or_other_bits(tmp_path: Path, mode: int) -> None:
    p = _file(tmp_path, mode=mode)
    assert _refusal(_from_file(p)) == (
        f"secret file {p} has group/other permissions (mode {mode:04o}; chmod 600 it)"
    )


def test_owner_only_modes_are_fine(tmp_path: Path) -> None:
    assert read_secret(_from_file(_file(tmp_path, mode=0o400)), {}) == SECRET


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = _file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert _refusal(_from_file(link)) == f"secret file {link} is a symbolic link (not followed)"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert "symbolic link" in _refusal(_from_file(dangling))


def test_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    assert _refusal(_from_file(d)) == f"secret file {d} is not a regular file"


def test_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(_refusal(_from_file(fifo))), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "reading a FIFO secret blocked"
    assert got == [f"secret file {fifo} is not a regular file"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_wrong_owner(tmp_path: Path) -> None:
    p = _file(tmp_path)
    os.chown(p, 12345, -1)
    assert _refusal(_from_file(p)) == (
        f"secret file {p} is owned by uid 12345, not the daemon's user (uid 0)"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a mode-000 file")
    p = _file(tmp_path, mode=0o000)
    assert _refusal(_from_file(p)) == f"secret file {p} cannot be opened (Permission denied)"
