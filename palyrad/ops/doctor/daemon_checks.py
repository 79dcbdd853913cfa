"""Checks of the running daemon: the supervisor (``daemon``), its four service processes
(``processes``) and the node listeners (``rpc``).

Everything here reads ``run/status.json`` through ``read_status`` (alive = the pid-file
lock is held, never the file's word) and the journal's process heartbeats. A stopped
daemon is a warning of ``daemon`` and nothing else: the other two have nothing to judge.
"""

from __future__ import annotations

import socket
import time

from palyra_proto.pairing import PairingFormatError, parse_address
from palyrad.ops.doctor.check import DoctorCheck, duration, listed
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, fail, ok, warn
from palyrad.runtime.liveness import remove_stale_pid_file
from palyrad.runtime.notify import request_fatal_restart
from palyrad.runtime.status import ProcessStatus, read_status

RESTART_WAIT_S = 5.0
CONNECT_TIMEOUT_S = 0.5
LOG_HINT = "see logs/palyrad.log"


class DaemonCheck(DoctorCheck):
    """palyrad runs (the pid-file lock is held); a stopped one is a warning."""

    check_id = "daemon"

    def run(self, ctx: DoctorContext) -> CheckResult:
        status = ctx.status
        if status.running:
            up = (
                f", up {duration(ctx.now_ms - status.started_at_ms)}"
                if status.started_at_ms
                else ""
            )
            return ok(self.check_id, f"palyrad running, pid {status.pid}{up}")
        if ctx.home.pid_file.exists():
            return warn(
                self.check_id,
                f"palyrad is not running; a crash left a stale pid file ({ctx.home.pid_file})",
                "palyra daemon start (palyra doctor --repair removes the stale pid file)",
                repairable=True,
            )
        return warn(self.check_id, "palyrad is not running", "palyra daemon start")

    def repair(self, ctx: DoctorContext) -> list[str]:
        """Remove a pid file no daemon holds (it never blocks a start; it only misleads)."""
        if remove_stale_pid_file(ctx.home):
            return [f"removed the stale pid file {ctx.home.pid_file}"]
        return []


def _last_sign_of_life(ctx: DoctorContext, p: ProcessStatus) -> int | None:
    """The newest of the supervisor's pipe heartbeat and the journal's heartbeat of this
    very process (a row left by its previous pid says nothing about this one)."""
    seen = [p.last_heartbeat_ms] if p.last_heartbeat_ms is not None else []
    journal = ctx.journal
    if journal is not None:
        hb = journal.heartbeats.all().get(p.name)
        if hb is not None and hb.pid == p.pid:
            seen.append(hb.heartbeat_ms)
    return max(seen) if seen else None


def _stalled(ctx: DoctorContext, p: ProcessStatus) -> bool:
    """This very process journals that its main loop has been busy far too long: its
    heartbeat thread alone keeps it looking alive."""
    journal = ctx.journal
    hb = journal.heartbeats.all().get(p.name) if journal is not None else None
    return hb is not None and hb.pid == p.pid and hb.state == "stalled"


class ProcessesCheck(DoctorCheck):
    """Each service process is running and heartbeating: ``fatal`` fails (repair: restart
    it), ``restarting`` warns, silence longer than ``[self_healing] process_silence_ms``
    fails."""

    check_id = "processes"

    def run(self, ctx: DoctorContext) -> CheckResult:
        status = ctx.status
        if not status.running:
            return ok(self.check_id, "daemon not running")
        if not status.processes:
            return warn(
                self.check_id, "palyrad is starting (no process reported yet)", "run doctor again"
            )
        fatal, restarting, silent = [], [], []
        for p in status.processes:
            if p.state == "fatal":
                fatal.append(p)
            elif p.state in ("restarting", "starting"):
                restarting.append(p)
            elif p.state == "running":
                last = _last_sign_of_life(ctx, p)
                if last is not None and ctx.now_ms - last > ctx.config.process_silence_ms:
                    quiet = duration(ctx.now_ms - last)
                    silent.append(f"{p.name} (pid {p.pid}) silent for {quiet}")
                elif _stalled(ctx, p):
                    silent.append(f"{p.name} (pid {p.pid}): its main loop is wedged (stalled)")
        lines = [f"{p.name} crashed too often and is stopped (fatal)" for p in fatal]
        lines += silent
        lines += [f"{p.name} is restarting (restart {p.restarts})" for p in restarting]
        if fatal:
            return fail(
                self.check_id,
                lines[0] + (f"; {len(lines) - 1} more problem(s)" if len(lines) > 1 else ""),
                f"palyra doctor --repair restarts it now; {LOG_HINT} for why it crashed",
                repairable=True,
                details=lines,
            )
        if silent:
            return fail(
                self.check_id,
                f"{listed(silent)} (limit: [self_healing] process_silence_ms ="
                f" {ctx.config.process_silence_ms})",
                f"self-healing restarts a silent process; if it does not: palyra daemon"
                f" restart; {LOG_HINT}",
                details=lines,
            )
        if restarting:
            return warn(
                self.check_id,
                listed(lines),
                f"{LOG_HINT} for why it exited; run doctor again in a few seconds",
                details=lines,
            )
        names = ", ".join(p.name for p in status.processes)
        restarts = sum(p.restarts for p in status.processes)
        return ok(self.check_id, f"{names} running and heartbeating ({restarts} restarts)")

    def repair(self, ctx: DoctorContext) -> list[str]:
        """Ask the supervisor to start its fatal services now (``R`` on run/notify), then
        wait up to ``RESTART_WAIT_S`` for them to run again, and say how it went."""
        fatal = [p.name for p in ctx.status.fatal]
        if not fatal:
            return []
        if not request_fatal_restart(ctx.home.run_dir):
            return [f"could not reach the supervisor to restart {', '.join(fatal)}"]
        deadline = time.monotonic() + RESTART_WAIT_S
        states: dict[str, str] = {}
        while True:
            status = read_status(ctx.home)
            states = {
                n: (p.state if (p := status.process(n)) is not None else "stopped") for n in fatal
            }
            started = all(s != "fatal" for s in states.values())
            if (started and all(s == "running" for s in states.values())) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.1)
        ctx.forget_status()
        done = []
        for name, state in states.items():
            if state == "running":
                done.append(f"restarted {name}: running")
            elif state == "fatal":
                done.append(f"asked the supervisor to restart {name}; still fatal ({LOG_HINT})")
            else:
                done.append(f"restarted {name}: {state} after {RESTART_WAIT_S:.0f} s")
        return done


def reach(address: str) -> str | None:
    """None when a TCP connection to ``address`` succeeds, else why not."""
    try:
        host, port = parse_address(address)
    except PairingFormatError:
        return f"malformed address {address!r}"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


class RpcCheck(DoctorCheck):
    """Both node listeners (pairing and node) are bound and accept TCP connections."""

    check_id = "rpc"

    def run(self, ctx: DoctorContext) -> CheckResult:
        status = ctx.status
        if not status.running:
            return ok(self.check_id, "daemon not running (no listeners)")
        rpc = status.process("node_rpc")
        if rpc is None or rpc.state != "running":
            state = "missing" if rpc is None else rpc.state
            return warn(
                self.check_id,
                f"node_rpc is {state}: the pairing and node listeners are down",
                "palyra doctor --only processes",
            )
        cfg = ctx.config
        ports = {"pairing": cfg.pairing_port, "node": cfg.node_port}
        endpoints = status.endpoints
        problems, up = [], []
        for name in ("pairing", "node"):
            address = endpoints.get(name)
            if address is None:
                problems.append(
                    f"the {name} listener is not up (port {ports[name]} could not be bound)"
                )
                continue
            why = reach(address)
            if why is None:
                up.append(f"{name} {address}")
            else:
                problems.append(f"the {name} listener {address} is unreachable: {why}")
        if problems:
            return fail(
                self.check_id,
                "; ".join(problems),
                "free the port or set another [rpc] pairing_port / node_port in palyra.toml,"
                f" then: palyra daemon restart; {LOG_HINT}",
            )
        return ok(self.check_id, ", ".join(up) + " reachable")
