"""The ``skills`` domain (SPEC §6): a skill version quarantined by an audit, and a skills file
the scheduler refused.

Nothing here is safe to fix automatically: an artifact that no longer matches its signed
hash, or a publisher no longer trusted, is the operator's to judge (restore the artifact,
trust the key, or remove the skill). So incidents are recorded — critical when the bytes or
the signature are wrong (tampering looks exactly like this), a warning otherwise — announced
through ``incident.*`` events, and resolved by the audit that passes again. An operator's
own quarantine is a decision, not an incident.
"""

from __future__ import annotations

import orjson

from palyrad.domain.skill_audit import QUARANTINED
from palyrad.journal import STATE_SKILLS_ERROR
from palyrad.seams import Finding
from palyrad.services.context import ServiceContext

CRITICAL_REASONS = ("hash mismatch", "bad signature")


class SkillsDetector:
    domain = "skills"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        journal = self.ctx.journal
        found: list[Finding] = []
        for (sid, version), audit in sorted(journal.skills.audits().items()):
            if audit.state != QUARANTINED:
                continue
            reason = audit.reason or "quarantined by an audit"
            critical = reason.startswith(CRITICAL_REASONS)
            found.append(
                Finding(
                    self.domain,
                    f"{sid}@{version}",
                    "critical" if critical else "warning",
                    f"skill {sid} {version} is quarantined: {reason}; its runs fail"
                    " skill_unavailable (palyra skills list; palyra skills audit after a fix)",
                )
            )
        raw = journal.state.get(STATE_SKILLS_ERROR)
        if raw is not None:
            try:
                doc = orjson.loads(raw)
                where = str(doc.get("file") or "skills file")
                errors = [str(e) for e in doc.get("errors") or []]
            except (orjson.JSONDecodeError, AttributeError):
                where, errors = "skills file", []
            first = errors[0] if errors else "the file is invalid"
            found.append(
                Finding(
                    self.domain,
                    where,
                    "warning",
                    f"{where} was not applied; the daemon keeps the last good one: {first}."
                    " Fix it (palyra doctor --only skills_index)",
                )
            )
        return found
