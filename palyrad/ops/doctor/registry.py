"""The one ordered list of doctor's checks (SPEC §4.3): their ids and their order are
stable, since scripts read ``palyra doctor --json`` and pick checks with ``--only``.

A new check is one class behind ``palyrad.seams.Check`` in the module of its kind, and one
line here.
"""

from __future__ import annotations

from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.daemon_checks import DaemonCheck, ProcessesCheck, RpcCheck
from palyrad.ops.doctor.files import ConfigCheck, DefinitionsCheck, HomeCheck, SkillsIndexCheck
from palyrad.ops.doctor.journal_checks import JournalCheck, SqliteCheck
from palyrad.ops.doctor.memory_checks import MemoryCheck
from palyrad.ops.doctor.pki_checks import DevicesCheck, PkiCheck
from palyrad.ops.doctor.system import AgentRunnerCheck, DiskCheck, InotifyCheck
from palyrad.ops.doctor.webhook_checks import WebhooksCheck
from palyrad.ops.doctor.work import ApprovalsCheck, IncidentsCheck, OverdueCheck, StuckRunsCheck
from palyrad.seams import Check

CHECKS: tuple[Check[DoctorContext], ...] = (
    HomeCheck(),
    ConfigCheck(),
    DefinitionsCheck(),
    SkillsIndexCheck(),
    JournalCheck(),
    SqliteCheck(),
    DaemonCheck(),
    ProcessesCheck(),
    OverdueCheck(),
    StuckRunsCheck(),
    ApprovalsCheck(),
    IncidentsCheck(),
    PkiCheck(),
    DevicesCheck(),
    RpcCheck(),
    WebhooksCheck(),
    MemoryCheck(),
    InotifyCheck(),
    AgentRunnerCheck(),
    DiskCheck(),
)

CHECK_IDS: tuple[str, ...] = tuple(c.check_id for c in CHECKS)

# Repairs run in the registry's order except these, which run after every other repair: a
# service restarted before the files it reads were fixed (certs/ modes, key files) would
# only crash on them again.
REPAIR_LAST: tuple[str, ...] = ("processes",)
