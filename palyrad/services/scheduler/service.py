"""The scheduler service: decides *when*, and turns due ticks and triggers into run records.

Loop: reload definitions if they changed (watchdog + a stat check as backstop), run new
triggers (run-now, hooks, events, settled file bursts) through policy, claim due ticks in
batches (run records and the routine's next fire in one transaction), then sleep until the
earliest next fire, a file burst settling, the 15 s cap (so clock jumps and suspend are
noticed), or a poke.

The jobs live in their own modules: ``definitions`` (load, validate-then-swap, last good,
sync), ``decisions`` (triggers and events through the policies), ``ticks`` (due ticks, arming)
and ``control_socket`` (run-now requests). This module composes them and owns the order of
work and the sleeps; it is the only place in the scheduler that reads the clock for "now"
and passes it down (the loader and the request handler are handed the same clock).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from watchdog.observers import Observer

from palyrad.domain.runs import ARM_AHEAD_MS
from palyrad.journal import Journal
from palyrad.runtime.control_client import socket_path
from palyrad.runtime.request_socket import ControlServer
from palyrad.services.context import ServiceContext
from palyrad.services.scheduler.control_socket import RequestHandler
from palyrad.services.scheduler.decisions import Decisions
from palyrad.services.scheduler.definitions import DefinitionsEvents, DefinitionsLoader
from palyrad.services.scheduler.file_watch import FileWatchManager
from palyrad.services.scheduler.maintenance import MaintenanceTicks
from palyrad.services.scheduler.skill_files import SkillFilesWatch
from palyrad.services.scheduler.state import Loaded, SchedulerState
from palyrad.services.scheduler.ticks import Ticks
from routines.kinds import SystemEvent
from routines.timefmt import seconds_until

log = logging.getLogger("palyrad.scheduler")

IDLE_CAP_MS = 15_000


class Scheduler:
    """One scheduler's parts over one shared state: what the loop (and the tests) drive."""

    def __init__(self, ctx: ServiceContext, files: FileWatchManager | None = None) -> None:
        self.ctx = ctx
        self.journal: Journal = ctx.journal
        self.state = SchedulerState(self.journal, ctx.clock)
        self.files = files
        self.definitions = DefinitionsLoader(ctx, self.state, files)
        self.decisions = Decisions(self.state, files)
        self.ticks = Ticks(self.state, self.decisions)
        self.requests = RequestHandler(ctx, self.state, self.definitions, self.decisions)

    @property
    def routines(self) -> dict[str, Loaded]:
        """The routines in force."""
        return self.state.routines

    @property
    def deferred_ms(self) -> int | None:
        """The earliest tick in the arming window left to be decided on its instant."""
        return self.ticks.deferred_ms

    def reload(self, *, startup: bool = False) -> None:
        """Read, validate and apply ``definitions.json`` (see ``DefinitionsLoader.reload``)."""
        self.definitions.reload(startup=startup)

    def fire_due(self, now: int) -> tuple[int, bool]:
        """Record and arm due ticks (see ``Ticks.fire_due``)."""
        return self.ticks.fire_due(now)

    def handle_request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Answer one control-socket request (see ``RequestHandler``)."""
        return self.requests(msg)

    def emit_started(self, now: int) -> None:
        """Journal ``daemon.started`` (once per daemon start, not per service restart)."""
        self.journal.events.emit(
            SystemEvent.DAEMON_STARTED, orjson.dumps({"instance": self.ctx.instance}).decode(), now
        )

    def step(self, now: int) -> bool:
        """One round of work as of ``now``; True if the executor should look (a run may
        start). Sets ``state.more`` when a batch limit was hit."""
        self.state.more = False
        decisions = self.decisions
        runnable = decisions.decide_triggers(now)
        runnable = decisions.consume_events(now) or runnable
        runnable = decisions.fire_file_bursts(now) or runnable
        _, fired = self.ticks.fire_due(now)
        return runnable or fired


def run_scheduler(ctx: ServiceContext) -> None:
    """The scheduler process's loop: wake, do the work in order, sleep until the next due."""
    observer = Observer()
    observer.daemon = True
    files = FileWatchManager(observer, ctx.wake)
    sched = Scheduler(ctx, files)
    sched.reload(startup=True)
    ctx.home.routines_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    observer.schedule(
        DefinitionsEvents({"definitions.json"}, sched.definitions.changed, ctx),
        str(ctx.home.routines_dir),
        recursive=False,
    )
    skills = SkillFilesWatch(ctx)
    skills.attach(observer)
    observer.start()
    if ctx.restarts == 0:
        sched.emit_started(ctx.clock.now_ms())
    control: ControlServer | None = None
    try:
        control = ControlServer(
            socket_path(ctx.home.run_dir), sched.handle_request, ctx.register, ctx.unregister
        )
    except OSError as exc:  # run-now still works, through the journal
        log.error("control socket unavailable", extra={"error": str(exc)})
    maintenance = MaintenanceTicks(ctx)
    maintenance.load(ctx.clock.now_ms())
    ctx.ready({"routines": len(sched.routines)})
    try:
        while not ctx.stopping:
            if control is not None:
                control.sweep()
            sched.definitions.reload_if_changed()
            if files.dirty:
                files.reconcile()
            now = ctx.clock.now_ms()
            if sched.step(now) | maintenance.run(now) | skills.check(now):
                ctx.poke("executor")
            if sched.state.more:
                continue  # more due right now
            # Wake ARM_AHEAD_MS before the next tick beyond the armed window, or on the
            # instant of a tick that could not be armed. seconds_until is a real sleep to a
            # wall instant, read at the clock's full resolution (a whole-ms "now" would wake
            # up to 1 ms late): the one place the loop measures time rather than deciding.
            horizon = now + ARM_AHEAD_MS
            beyond = ctx.journal.routines.earliest_fire_ms(after=horizon)
            timeout_s = IDLE_CAP_MS / 1000
            if beyond is not None:
                timeout_s = min(timeout_s, seconds_until(beyond - ARM_AHEAD_MS))
            if sched.deferred_ms is not None:
                timeout_s = min(timeout_s, seconds_until(sched.deferred_ms))
            if maintenance.earliest_ms is not None:  # never later for a week-away routine
                timeout_s = min(timeout_s, seconds_until(maintenance.earliest_ms))
            sweep = control.next_sweep_s() if control is not None else None
            if sweep is not None:
                timeout_s = min(timeout_s, sweep)
            timeout_s = max(0.0, timeout_s)
            burst = files.next_deadline_s()
            if burst is not None:
                timeout_s = min(timeout_s, burst)
            ctx.wait(timeout_s)
    finally:
        if control is not None:
            control.close()
        observer.stop()
