"""A skill audit (SPEC §6): a pure function of the artifact's digest, the index entry and the
trust store.

An installed version passes when its artifact exists, hashes to the index's
``artifact_sha256``, its publisher is trusted, and the publisher's Ed25519 key signed the
tagged message ``b"palyra-skill-v1\\0" + id + b"\\0" + version + b"\\0" + publisher + b"\\0"
+ sha256(artifact)``. Binding the id, version and publisher into what is signed means an
older or another skill's signed artifact cannot be substituted: its signature is over
another message.

What passed is remembered as ``audit_key``: a digest of the exact (id, version, publisher,
artifact hash, signature, publisher key). A skill run proceeds only when the current
entry's key equals the audited one, so an edit of either file that has not been audited yet
never runs (it is audited first).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from routines.skills_files import InstalledSkill, TrustStore

SIGNATURE_CONTEXT = b"palyra-skill-v1\0"
ACTIVE = "active"
QUARANTINED = "quarantined"


def signed_message(skill_id: str, version: str, publisher: str, digest: bytes) -> bytes:
    """What a publisher signs for one artifact (the 32-byte sha256 ``digest``)."""
    return (
        SIGNATURE_CONTEXT
        + skill_id.encode()
        + b"\0"
        + version.encode()
        + b"\0"
        + publisher.encode()
        + b"\0"
        + digest
    )


def audit_key(entry: InstalledSkill, public_key: bytes) -> str:
    """The digest of everything an audit vouched for (hex)."""
    h = hashlib.sha256(b"palyra-skill-audit-v1\0")
    for part in (entry.skill_id, entry.version, entry.publisher, entry.artifact_sha256):
        h.update(part.encode() + b"\0")
    h.update(entry.signature_bytes)
    h.update(public_key)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class AuditResult:
    """One version's verdict: ``key`` when it passed, ``reason`` when it did not."""

    skill_id: str
    version: str
    passed: bool
    reason: str | None = None
    key: str | None = None

    @property
    def state(self) -> str:
        return ACTIVE if self.passed else QUARANTINED


def audit(
    entry: InstalledSkill, artifact: str | None, unavailable: str | None, trust: TrustStore
) -> AuditResult:
    """Audit ``entry``. ``artifact`` is the artifact's sha256 (hex) as just hashed, or None
    with ``unavailable`` saying why it could not be (missing, a symlink, not a regular
    file)."""

    def refused(reason: str) -> AuditResult:
        return AuditResult(entry.skill_id, entry.version, False, reason)

    if artifact is None:
        return refused(unavailable or "artifact missing")
    if artifact.lower() != entry.artifact_sha256:
        return refused(
            f"hash mismatch: the index says {entry.artifact_sha256[:12]}…, the artifact is"
            f" {artifact.lower()[:12]}…"
        )
    publisher = trust.get(entry.publisher)
    if publisher is None:
        return refused(f"untrusted publisher {entry.publisher!r}")
    key = publisher.key_bytes
    message = signed_message(entry.skill_id, entry.version, entry.publisher, entry.digest)
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(entry.signature_bytes, message)
    except (InvalidSignature, ValueError):
        return refused(f"bad signature (not by {entry.publisher!r}'s key over this artifact)")
    return AuditResult(entry.skill_id, entry.version, True, None, audit_key(entry, key))
