"""The one list of self-healing detectors and remediations, one per incident domain.

Domains with a remediation: ``run`` (fail_run), ``process`` (restart_process),
``node_stream`` (close_stream), ``task`` (requeue_task); detected only: ``definitions``,
``disk``, ``journal``, ``skills`` (a skill quarantined by an audit, a skills file refused).
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
from palyrad.services.self_healing.skills import SkillsDetector
from palyrad.services.self_healing.tasks import RequeueTask, StaleTaskDetector


def detectors(ctx: ServiceContext) -> list[Detector]:
    return [
        StuckRunDetector(ctx),
        ProcessDetector(ctx),
        DefinitionsDetector(ctx),
        DiskDetector(ctx),
        JournalDetector(ctx),
        NodeStreamDetector(ctx),
        StaleTaskDetector(ctx),
        SkillsDetector(ctx),
    ]


def remediations(ctx: ServiceContext) -> dict[str, Remediation]:
    found: list[Remediation] = [
        FailStuckRun(ctx),
        RestartProcess(ctx),
        CloseStreamRemediation(ctx),
        RequeueTask(ctx),
    ]
    return {r.domain: r for r in found}
