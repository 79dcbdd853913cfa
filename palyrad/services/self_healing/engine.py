"""Findings → incidents → remediations: the self-healing process's one decision loop.

Each sweep asks every detector for the failing conditions of its domain *now*. A finding
opens the incident of its (domain, subject), or keeps it open (the journal allows one open
incident per pair); an open incident whose subject is no longer found has cleared and is
resolved. Opening and resolving emit ``incident.opened`` / ``incident.resolved`` in the same
transaction, so a ``system_event`` routine can notify the operator and a crash between the
two writes cannot lose the event.

In ``auto`` mode a remediable finding gets its domain's remediation, recorded as an attempt
(succeeded / failed with the detail). Remediations are rate-limited per (domain, subject),
across its incidents: never two within ``ATTEMPT_SPACING_MS`` (the fix may still be taking
effect: a killed service is being restarted), and at most ``MAX_ATTEMPTS`` in
``ATTEMPT_WINDOW_MS``; past that the incident is raised to ``critical`` with one ``skipped``
attempt saying so, and nothing more is tried until it resolves — a fix that does not work
never loops, nor does one that works for a moment only (its condition comes back as a new
incident, with the same spent budget). ``observe_only`` records incidents
and acts on nothing.

A detector that raises loses its sweep only: its domain's open incidents are neither
refreshed nor resolved, and the other domains go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import orjson

from palyrad.domain.runs import new_ulid
from palyrad.journal import Journal, incident_to_json
from palyrad.journal.errors import JournalUnavailable
from palyrad.journal.records import Incident
from palyrad.seams import Detector, Finding, Remediation, RemediationFailed

log = logging.getLogger("palyrad.self_healing")

ATTEMPT_SPACING_MS = 5_000
ATTEMPT_WINDOW_MS = 10 * 60_000
MAX_ATTEMPTS = 3
INCIDENT_OPENED = "incident.opened"
INCIDENT_RESOLVED = "incident.resolved"
GAVE_UP = " (automatic remediation gave up)"


@dataclass
class SweepReport:
    """What one sweep did (for logs and tests)."""

    opened: list[Incident] = field(default_factory=list)
    resolved: list[Incident] = field(default_factory=list)
    attempts: list[tuple[str, str, str]] = field(default_factory=list)  # (subject, outcome, detail)
    failed_domains: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.resolved or self.attempts)


def _unchanged(incident: Incident, finding: Finding) -> bool:
    """Whether reporting ``finding`` again would change nothing (same summary, and no
    escalation: severity never goes down while open)."""
    return incident.summary == finding.summary and (
        finding.severity != "critical" or incident.severity == "critical"
    )


class IncidentEngine:
    """Reconciles detectors' findings with the journal's incidents and remediates."""

    def __init__(
        self,
        journal: Journal,
        detectors: Iterable[Detector],
        remediations: Mapping[str, Remediation],
        *,
        mode: Callable[[], str],
        on_event: Callable[[], None] = lambda: None,
    ) -> None:
        self.journal = journal
        self.detectors = list(detectors)
        self.remediations = dict(remediations)
        self.mode = mode  # read each sweep: SIGHUP may switch auto <-> observe_only
        self.on_event = on_event  # an incident event was emitted: wake the scheduler
        # Attempts made while the journal could not be written, waiting to be recorded,
        # and their times per (domain, subject) for the rate limit.
        self._blind: list[tuple[Finding, str, str, str, int]] = []
        self._blind_times: dict[tuple[str, str], list[int]] = {}

    def sweep(self, now_ms: int) -> SweepReport:
        report = SweepReport()
        try:
            self._record_blind_attempts(report)
        except JournalUnavailable:
            log.warning("journal still not writable; blind attempts wait", exc_info=True)
        open_by_domain: dict[str, dict[str, Incident]] = {}
        for incident in self.journal.incidents.open_incidents():
            open_by_domain.setdefault(incident.domain, {})[incident.subject] = incident
        for detector in self.detectors:
            try:
                self._sweep_domain(
                    detector, open_by_domain.get(detector.domain, {}), now_ms, report
                )
            except Exception:
                # A detector's bug, or a write that failed (the journal is locked or full):
                # this domain waits for the next sweep, the others go on.
                log.exception(
                    "self-healing sweep of a domain failed", extra={"domain": detector.domain}
                )
                report.failed_domains.append(detector.domain)
        if report.opened or report.resolved:
            self.on_event()
        return report

    def _findings(
        self, detector: Detector, now_ms: int, current: Mapping[str, Incident]
    ) -> list[Finding]:
        """The detector's findings: its own domain only, one per subject."""
        found: dict[str, Finding] = {}
        for finding in detector.detect(now_ms, frozenset(current)):
            if finding.domain == detector.domain:
                found.setdefault(finding.subject, finding)
        return list(found.values())

    def _sweep_domain(
        self,
        detector: Detector,
        current: Mapping[str, Incident],
        now_ms: int,
        report: SweepReport,
    ) -> None:
        findings = self._findings(detector, now_ms, current)
        fixed = False
        for finding in findings:
            prior = current.get(finding.subject)
            if prior is not None and _escalated(prior):
                # A refreshed summary keeps saying that the fixes gave up.
                finding = replace(finding, summary=finding.summary + GAVE_UP)
            try:
                if prior is not None and _unchanged(prior, finding):
                    incident = prior  # nothing to write: a long incident costs no writes
                else:
                    incident = self._open(finding, now_ms, report)
            except JournalUnavailable:
                # The journal is locked — perhaps by the very service this finding is about,
                # frozen inside a write — or failing. A fix that needs no journal still runs.
                self._remediate_blind(finding, now_ms, report)
                raise
            if finding.remediable and self.mode() == "auto":
                fixed |= self._remediate(incident, finding, now_ms, report) == "succeeded"
        still = {f.subject for f in findings}
        if fixed:
            # A fix that clears its condition at once (a stuck run failed, a stream closed)
            # resolves its incident in this sweep, not the next.
            still = {f.subject for f in self._findings(detector, now_ms, current)}
        for subject in (current.keys() | {f.subject for f in findings}) - still:
            self._resolve(detector.domain, subject, now_ms, report)

    # --- incidents ---------------------------------------------------------------------------

    def _open_within(self, finding: Finding, at_ms: int) -> tuple[Incident, bool]:
        """Open (or refresh) the finding's incident and emit ``incident.opened`` when it is
        new, inside the caller's transaction."""
        incident, opened = self.journal.incidents.open(
            new_ulid(at_ms),
            finding.domain,
            finding.subject,
            finding.severity,
            finding.summary,
            at_ms,
        )
        if opened:
            self._emit(INCIDENT_OPENED, incident, at_ms)
        return incident, opened

    def _open(self, finding: Finding, now_ms: int, report: SweepReport) -> Incident:
        with self.journal.transaction():
            incident, opened = self._open_within(finding, now_ms)
        if opened:
            report.opened.append(incident)
            log.warning(
                "incident opened",
                extra={
                    "incident_id": incident.incident_id,
                    "domain": incident.domain,
                    "subject": incident.subject,
                    "summary": incident.summary,
                },
            )
        return incident

    def _resolve(self, domain: str, subject: str, now_ms: int, report: SweepReport) -> None:
        with self.journal.transaction():
            incident = self.journal.incidents.resolve(domain, subject, now_ms)
            if incident is not None:
                self._emit(INCIDENT_RESOLVED, incident, now_ms)
        if incident is not None:
            report.resolved.append(incident)
            log.info(
                "incident resolved",
                extra={"incident_id": incident.incident_id, "domain": domain, "subject": subject},
            )

    def _emit(self, name: str, incident: Incident, now_ms: int) -> None:
        payload = orjson.dumps(incident_to_json(incident)).decode()
        self.journal.events.emit(name, payload, now_ms)

    # --- remediation -------------------------------------------------------------------------

    def _apply(self, remediation: Remediation, finding: Finding, now_ms: int) -> tuple[str, str]:
        """Run a remediation: (outcome, detail); it never raises."""
        try:
            return "succeeded", remediation.apply(finding, now_ms)
        except RemediationFailed as exc:
            return "failed", str(exc)
        except Exception as exc:  # a broken remediation is a failed attempt, not a crash
            log.exception("remediation crashed", extra={"domain": finding.domain})
            return "failed", f"remediation crashed: {type(exc).__name__}: {exc}"

    def _remediate(
        self, incident: Incident, finding: Finding, now_ms: int, report: SweepReport
    ) -> str | None:
        """Apply the domain's remediation within the rate limits; its outcome, or None when
        none was attempted."""
        remediation = self.remediations.get(finding.domain)
        if remediation is None:
            return None
        if _escalated(incident):
            return None  # escalated already: an operator's turn
        # Counted per (domain, subject), not per incident: a fix that clears its condition
        # for a moment (a fatal service restarted, running, crash-looping to fatal again)
        # meets a new incident each time, and must not get a fresh budget each time.
        times = self.journal.incidents.attempt_times(
            finding.domain, finding.subject, now_ms - ATTEMPT_WINDOW_MS
        )
        if times and now_ms - times[-1] < ATTEMPT_SPACING_MS:
            return None  # the last fix may still be taking effect
        recent = len(times)
        if recent >= MAX_ATTEMPTS:
            detail = (
                f"{recent} attempts in {ATTEMPT_WINDOW_MS // 60_000} min did not clear it;"
                " escalated to critical, no further automatic attempts"
            )
            with self.journal.transaction():
                self.journal.incidents.open(
                    incident.incident_id,
                    finding.domain,
                    finding.subject,
                    "critical",
                    finding.summary + GAVE_UP,
                    now_ms,
                )
                self.journal.incidents.record_attempt(
                    incident.incident_id, remediation.action, "skipped", detail, now_ms
                )
            report.attempts.append((finding.subject, "skipped", detail))
            log.error(
                "remediation gave up",
                extra={"domain": finding.domain, "subject": finding.subject},
            )
            return None
        outcome, detail = self._apply(remediation, finding, now_ms)
        self.journal.incidents.record_attempt(
            incident.incident_id, remediation.action, outcome, detail[:500], now_ms
        )
        self._log_attempt(remediation, finding, outcome, detail)
        report.attempts.append((finding.subject, outcome, detail))
        return outcome

    def _log_attempt(
        self, remediation: Remediation, finding: Finding, outcome: str, detail: str
    ) -> None:
        log.warning(
            "remediation attempted",
            extra={
                "domain": finding.domain,
                "subject": finding.subject,
                "action": remediation.action,
                "outcome": outcome,
                "detail": detail,
            },
        )

    # --- while the journal cannot be written -------------------------------------------------

    def _remediate_blind(self, finding: Finding, now_ms: int, report: SweepReport) -> None:
        """Apply a journal-free remediation (``journal_free``: a service restart) for a
        finding whose incident could not be written, under the same spacing and limit as
        journaled attempts (kept in memory), and keep the attempt to record later."""
        remediation = self.remediations.get(finding.domain)
        if (
            remediation is None
            or not remediation.journal_free
            or not finding.remediable
            or self.mode() != "auto"
        ):
            return
        key = (finding.domain, finding.subject)
        times = [t for t in self._blind_times.get(key, []) if now_ms - t < ATTEMPT_WINDOW_MS]
        if len(times) >= MAX_ATTEMPTS or (times and now_ms - times[-1] < ATTEMPT_SPACING_MS):
            return
        outcome, detail = self._apply(remediation, finding, now_ms)
        detail += " (while the journal could not be written; recorded afterwards)"
        self._blind_times[key] = [*times, now_ms]
        self._blind.append((finding, remediation.action, outcome, detail, now_ms))
        self._log_attempt(remediation, finding, outcome, detail)
        report.attempts.append((finding.subject, outcome, detail))

    def _record_blind_attempts(self, report: SweepReport) -> None:
        """Journal the incidents and attempts of blind remediations, as of when they were
        made, once the journal takes writes again (the incident then resolves as usual if
        its condition cleared). Raises while it still cannot write; nothing is lost."""
        while self._blind:
            finding, action, outcome, detail, at_ms = self._blind[0]
            with self.journal.transaction():
                incident, opened = self._open_within(finding, at_ms)
                self.journal.incidents.record_attempt(
                    incident.incident_id, action, outcome, detail[:500], at_ms
                )
            if opened:
                report.opened.append(incident)
            self._blind.pop(0)


def _escalated(incident: Incident) -> bool:
    """The automatic fixes gave up on ``incident`` (its last attempt is the ``skipped`` one)."""
    return bool(incident.remediations) and incident.remediations[-1].outcome == "skipped"
