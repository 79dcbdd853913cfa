"""Stable per-tick jitter (SPEC §2.3 ``jitter_ms``).

The offset is a pure function of (routine id, nominal tick), so every process — scheduler,
CLI preview, a restarted daemon — computes the same fire time, and the next tick is always
computed from the *nominal* instant, never from the jittered one, so jitter never drifts.
"""

from __future__ import annotations

from hashlib import sha256

__all__ = ["fire_at_ms", "jitter_offset_ms"]


def jitter_offset_ms(routine_id: str, nominal_ms: int, jitter_ms: int) -> int:
    """Delay in [0, jitter_ms] for this tick: sha256("{id}:{nominal_ms}")[:8] mod (jitter+1)."""
    if jitter_ms <= 0:
        return 0
    digest = sha256(f"{routine_id}:{nominal_ms}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (jitter_ms + 1)


def fire_at_ms(routine_id: str, nominal_ms: int, jitter_ms: int) -> int:
    """When the tick nominally at ``nominal_ms`` actually fires (nominal + jitter offset).

    Only the run starts late; the schedule's next tick is still computed from nominal_ms.
    """
    return nominal_ms + jitter_offset_ms(routine_id, nominal_ms, jitter_ms)
