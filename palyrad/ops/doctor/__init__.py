"""``palyra doctor`` (SPEC §4.3): what is wrong with a Palyra home and how to fix it.

- ``registry``: the ordered checks (``CHECKS``, ``CHECK_IDS``), each a ``seams.Check``;
- ``context``: ``DoctorContext``, what the checks share (config, status, the read-only
  journal, the definitions file, "now"), computed once and lazily;
- ``report``: ``CheckResult`` verdicts and the ``DoctorReport`` with its JSON;
- ``runner``: ``run_doctor`` — runs, isolates, repairs;
- the checks, by kind: ``files`` (home, config, definitions, skills_index),
  ``journal_checks`` (journal, sqlite), ``daemon_checks`` (daemon, processes, rpc),
  ``work`` (overdue, stuck_runs, approvals, incidents), ``pki_checks`` (pki, devices),
  ``system`` (inotify, agent_runner, disk).

Read-only unless ``repair=True``: no home, journal, folder or memo is created or changed
(docs/doctor.md lists what each repair does).
"""

from palyrad.ops.doctor.registry import CHECK_IDS
from palyrad.ops.doctor.report import CheckResult, CheckStatus, DoctorReport
from palyrad.ops.doctor.runner import run_doctor

__all__ = ["CHECK_IDS", "CheckResult", "CheckStatus", "DoctorReport", "run_doctor"]
