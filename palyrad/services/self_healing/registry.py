"""The one list of self-healing detectors and remediations, one per incident domain.

``task`` (stale background tasks) and ``skills`` (a skill quarantined by an audit) join when
the background queue and signed skills exist: a detector here, a remediation beside it
(``requeue_task`` for tasks); nothing else changes.
"""

from __future__ import annotations

from palyrad.seams import Detector, Remediation
from palyrad.services.context import ServiceContext
from palyrad.services.self_healing.conditions import (
    DefinitionsDetector,
    DiskDetector,
    JournalDetector,
)
from palyrad.services.self_healing.node_streams import (
    CloseStreamRemediation,
    NodeStreamDetector,
)
from palyrad.services.self_healing.processes import ProcessDetector, RestartProcess
from palyrad.services.self_healing.runs import FailStuckRun, StuckRunDetector


def detectors(ctx: ServiceContext) -> list[Detector]:
    return [
        StuckRunDetector(ctx),
        ProcessDetector(ctx),
        DefinitionsDetector(ctx),
        DiskDetector(ctx),
        JournalDetector(ctx),
        NodeStreamDetector(ctx),
    ]


def remediations(ctx: ServiceContext) -> dict[str, Remediation]:
    found: list[Remediation] = [
        FailStuckRun(ctx),
        RestartProcess(ctx),
        CloseStreamRemediation(ctx),
    ]
    return {r.domain: r for r in found}
