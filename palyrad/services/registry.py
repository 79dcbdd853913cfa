"""The one list of the daemon's service processes, read by the supervisor and by each child.

A service is a name (used in status, logs, heartbeats and wake FIFOs) and the dotted path of
its loop function, imported only inside the spawned child so the supervisor stays tiny and a
crash while importing one service never touches the others. Adding a process (say, a
separate queue worker) is one entry here plus its package under ``palyrad/services/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from palyrad.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A supervised process: its name and where its loop lives (``module:function``)."""

    name: str
    entry: str
    summary: str

    def load(self) -> Callable[[ServiceContext], None]:
        """Import the service's loop; called in the child process only."""
        module, _, func = self.entry.partition(":")
        loop: Callable[[ServiceContext], None] = getattr(importlib.import_module(module), func)
        return loop


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "scheduler",
        "palyrad.services.scheduler.service:run_scheduler",
        "decides when: definitions, ticks, triggers, file watches",
    ),
    ServiceSpec(
        "executor",
        "palyrad.services.executor.service:run_executor",
        "runs what was decided: claims, spawns, finalizes, retries, delivers",
    ),
    ServiceSpec(
        "self_healing",
        "palyrad.services.self_healing.service:run_self_healing",
        "heartbeats to incidents and remediations; history pruning; WAL checkpoints",
    ),
    ServiceSpec(
        "node_rpc",
        "palyrad.services.node_rpc.service:run_node_rpc",
        "pairing and node listeners; webhook ingress",
    ),
)

SERVICE_NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)
_BY_NAME = {s.name: s for s in SERVICES}


def service(name: str) -> ServiceSpec:
    """The service called ``name``; a ``KeyError`` names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICE_NAMES)}") from None


def child_main(name: str, home_root: str, conn: Connection, instance: str, restarts: int) -> None:
    """The spawned child's entry (the ``multiprocessing`` target): imports the service
    plumbing only in the child, so the supervisor never loads the journal or a service."""
    from palyrad.services.context import service_main

    service_main(name, home_root, conn, instance, restarts)
