"""The operator's stop request: ``run/stop-request.json``, written by ``palyra daemon stop``
just before its SIGTERM, read by the supervisor when the SIGTERM arrives.

A signal carries no argument, and ``palyra daemon stop --timeout S`` must change how long the
runs get between SIGTERM and SIGKILL (``[daemon] stop_timeout_ms`` otherwise). The file names
the supervisor's pid, so a request left behind (the daemon had died, the SIGTERM never
arrived) is never applied to a later daemon's stop; the supervisor also removes any stale one
when it starts. It relays the timeout to the services with its ``stop`` message.
"""

from __future__ import annotations

import contextlib
import os

import orjson

from palyrad.runtime.home import Home


def write_stop_request(home: Home, pid: int, timeout_ms: int) -> None:
    """Ask the supervisor ``pid`` to give runs ``timeout_ms`` at its next stop (atomic)."""
    path = home.stop_request
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_bytes(orjson.dumps({"pid": pid, "timeout_ms": timeout_ms}))
    os.replace(tmp, path)


def take_stop_request(home: Home, pid: int) -> int | None:
    """The requested stop timeout (ms) for supervisor ``pid``, or None; removes the file."""
    path = home.stop_request
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    if not isinstance(data, dict) or data.get("pid") != pid:
        return None
    timeout_ms = data.get("timeout_ms")
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms < 0:
        return None
    return timeout_ms
