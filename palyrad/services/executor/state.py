"""What the executor's parts share: the service context, its journal and clock, the lease
owner, and the runs this executor holds (armed: claimed and waiting for their instant;
active: started).

One thread owns all of it (the service's selector loop), so there is no locking; the parts
are split by job, not by thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from palyrad.journal import Journal
from palyrad.seams import Clock
from palyrad.services.context import ServiceContext
from palyrad.services.executor.intents import SpawnIntents

if TYPE_CHECKING:
    from palyrad.services.executor.active_run import ActiveRun
    from palyrad.services.executor.spawn import Prepared


class ExecutorState:
    """The runs one executor instance holds, and what every part needs to act on them."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.journal: Journal = ctx.journal
        self.clock: Clock = ctx.clock
        self.owner = f"executor:{ctx.instance}:{os.getpid()}"
        self.active: dict[str, ActiveRun] = {}
        self.armed: dict[str, Prepared] = {}  # claimed, spawning on their instant
        # Written just before each spawn; read by the next executor's recovery.
        self.intents = SpawnIntents(ctx.home.spawn_intents)
        # Wakes the background-queue workers (set by the executor once they run).
        self.nudge_tasks: Callable[[], None] = lambda: None


class ExecutorPart:
    """Base of the executor's parts (claims, launcher, supervision, finalizer): the shared
    state under the names every part uses, bound once here instead of in each part."""

    def __init__(self, state: ExecutorState) -> None:
        self.ctx = state.ctx
        self.journal = state.journal
        self.clock = state.clock
        self.owner = state.owner
        self.active = state.active
        self.armed = state.armed
        self.intents = state.intents
