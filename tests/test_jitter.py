"""Jitter: the SPEC formula, its bounds, and stability across processes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from routines.jitter import fire_at_ms, jitter_offset_ms

CASES = [
    ("morning-report", 1_774_854_000_000, 60_000),
    ("nightly-backup", 0, 1),
    ("a", 1_700_000_000_123, 59_999),
    ("ünïcode.id", 42, 1_000),
]


@pytest.mark.parametrize(("rid", "nominal", "jitter"), CASES)
def test_formula(rid: str, nominal: int, jitter: int) -> None:
    digest = hashlib.sha256(f"{rid}:{nominal}".encode()).digest()
    expected = int.from_bytes(digest[:8], "big") % (jitter + 1)
    assert jitter_offset_ms(rid, nominal, jitter) == expected
    assert fire_at_ms(rid, nominal, jitter) == nominal + expected


def test_zero_jitter_is_zero() -> None:
    assert jitter_offset_ms("x", 123, 0) == 0
    assert fire_at_ms("x", 123, 0) == 123


def test_bounds_and_spread() -> None:
    offsets = [jitter_offset_ms("r", 1_000 * k, 10) for k in range(2_000)]
    assert min(offsets) == 0
    assert max(offsets) == 10  # both ends reachable: the modulus is jitter_ms + 1
    assert len(set(offsets)) == 11


def test_known_value() -> None:
    # Pinned so a refactor cannot silently change every routine's fire times.
    assert (
        jitter_offset_ms("morning-report", 1_774_854_000_000, 60_000)
        == int.from_bytes(hashlib.sha256(b"morning-report:1774854000000").digest()[:8], "big")
        % 60_001
    )


def test_stable_across_processes() -> None:
    code = (
        "import json, sys; from routines.jitter import jitter_offset_ms; "
        "cases = json.loads(sys.argv[1]); "
        "print(json.dumps([jitter_offset_ms(r, n, j) for r, n, j in cases]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(CASES)],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": ":".join(sys.path)},
    )
    assert json.loads(out.stdout) == [jitter_offset_ms(r, n, j) for r, n, j in CASES]
