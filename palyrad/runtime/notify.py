"""Pokes: "the journal changed, look again" — the one notify helper.

Writers commit to the journal first and poke second, so a lost poke only costs latency: every
loop also wakes on its own timer. From outside the daemon (the CLI) a poke is one byte written
to the FIFO ``run/notify``; the supervisor reads it and fans it out to its children. Inside,
a child sends ``("poke", targets)`` over its pipe to the supervisor.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# One byte per target, so the CLI can say who should wake.
POKE_SCHEDULER = b"s"
POKE_EXECUTOR = b"e"
POKE_NODE_RPC = b"n"
POKE_ALL = b"*"
# Not a poke: asks the supervisor to start every ``fatal`` service now instead of after its
# cool-down (``palyra doctor --repair``, the self-healing ``process`` remediation).
RESTART_FATAL = b"R"

SERVICE_FOR_BYTE = {
    POKE_SCHEDULER: "scheduler",
    POKE_EXECUTOR: "executor",
    POKE_NODE_RPC: "node_rpc",
}


def poke_fifo(fifo: Path, what: bytes = POKE_ALL) -> bool:
    """Poke a running daemon through its FIFO; False when no daemon is reading it.

    Opening a FIFO for writing with O_NONBLOCK fails with ENXIO when nobody has it open
    for reading, which is exactly "palyrad is not running" — no blocking, no stale pokes.
    """
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, what)
    except BlockingIOError:
        pass  # the FIFO is full of unread pokes: the daemon is waking up anyway
    finally:
        os.close(fd)
    return True


def ensure_fifo(fifo: Path) -> None:
    """Create the notify FIFO (0600), replacing anything else at that path."""
    if fifo.exists() and not fifo.is_fifo():
        fifo.unlink()
    if not fifo.exists():
        os.mkfifo(fifo, 0o600)


def poke_service(run_dir: Path, service: str) -> bool:
    """Wake one service of a running daemon: straight through its own FIFO
    ``run/wake-<service>`` (one process hop less), else relayed by the supervisor through
    ``run/notify``. False when no daemon is reading either."""
    if poke_fifo(run_dir / f"wake-{service}"):
        return True
    byte = {v: k for k, v in SERVICE_FOR_BYTE.items()}.get(service, POKE_ALL)
    return poke_fifo(run_dir / "notify", byte)


def request_fatal_restart(run_dir: Path) -> bool:
    """Ask a running supervisor to restart its ``fatal`` services now (a safe repair: the
    restart policy still applies, so a service that keeps crashing goes ``fatal`` again).
    False when no daemon is reading ``run/notify``."""
    return poke_fifo(run_dir / "notify", RESTART_FATAL)
