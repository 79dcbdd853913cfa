"""A webhook trigger's HMAC secret (SPEC §4.5), read afresh on every request.

Reading on every call means a rotated file (or, after a restart, variable) takes effect
without a reload; the file is small and the checks are a handful of syscalls. A secret file is
opened without following a symlink in its last component (``O_NOFOLLOW``) and without blocking
(``O_NONBLOCK``: a FIFO put in its place must not hang the listener), then checked on the open
descriptor, so a swap between check and read cannot pass a different file: a regular file,
owned by the daemon's user, with no group/other permission bits, at most ``MAX_SECRET_BYTES``.
One trailing newline (``\\n`` or ``\\r\\n``, as editors and ``echo`` leave) is not part of
the secret; a variable's value is used as it is. Either way it must be at least
``MIN_SECRET_BYTES`` long.

Every refusal is a ``SecretUnavailable`` whose reason names the variable or path, never a
byte of the secret; the listener answers 503 with it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping

from routines.errors import PalyraError
from routines.model import WebhookTrigger

MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 4096  # an HMAC key longer than SHA-256's 64-byte block is hashed anyway


class SecretUnavailable(PalyraError):
    """The trigger's secret cannot be used now; ``reason`` says why (without the secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_secret(trigger: WebhookTrigger, env: Mapping[str, str]) -> bytes:
    """The HMAC key of ``trigger``, from the daemon's ``env`` or its secret file (``~``
    expanded now); raises ``SecretUnavailable``."""
    if trigger.secret_file is not None:
        return _check_length(_read_file(trigger.secret_file), f"secret file {trigger.secret_file}")
    name = trigger.secret_env
    if name is None:
        raise SecretUnavailable("the webhook trigger names no secret")
    value = env.get(name, "")
    if not value:
        raise SecretUnavailable(f"environment variable {name} is not set")
    secret = os.fsencode(value)
    if len(secret) > MAX_SECRET_BYTES:
        raise SecretUnavailable(
            f"environment variable {name} is longer than {MAX_SECRET_BYTES} bytes"
        )
    return _check_length(secret, f"environment variable {name}")


def _check_length(secret: bytes, what: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretUnavailable(f"{what} holds fewer than {MIN_SECRET_BYTES} bytes")
    return secret


def _read_file(path: str) -> bytes:
    full = os.path.expanduser(path)
    what = f"secret file {path}"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(full, flags)
    except FileNotFoundError:
        raise SecretUnavailable(f"{what} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SecretUnavailable(f"{what} is a symbolic link (not followed)") from None
        raise SecretUnavailable(f"{what} cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretUnavailable(f"{what} is not a regular file")
        if st.st_uid != os.geteuid():
            raise SecretUnavailable(
                f"{what} is owned by uid {st.st_uid}, not the daemon's user (uid {os.geteuid()})"
            )
        if st.st_mode & 0o077:
            raise SecretUnavailable(
                f"{what} has group/other permissions (mode {stat.S_IMODE(st.st_mode):04o}; "
                "chmod 600 it)"
            )
        data = _read_capped(fd, what)
    finally:
        os.close(fd)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if len(data) > MAX_SECRET_BYTES:
        raise SecretUnavailable(f"{what} is larger than {MAX_SECRET_BYTES} bytes")
    return data


def _read_capped(fd: int, what: str) -> bytes:
    """The file's bytes; refused past the cap (+2 for a trailing CRLF), whatever ``st_size``
    said (a file may grow between the ``fstat`` and the read)."""
    limit = MAX_SECRET_BYTES + 2
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, limit + 1 - total)
        except OSError as exc:
            raise SecretUnavailable(f"{what} cannot be read ({exc.strerror})") from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise SecretUnavailable(f"{what} is larger than {MAX_SECRET_BYTES} bytes")
    return b"".join(chunks)
