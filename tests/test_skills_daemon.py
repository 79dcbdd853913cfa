"""Skill runs in a real daemon (SPEC §2.2, §6): the audited artifact runs with
``PALYRA_SKILL_ARGS``; a tampered artifact never runs (the run fails ``skill_unavailable``
and the skill is quarantined); an operator's quarantine refuses runs until released; a
hand-edited index that does not validate keeps the previous skills runnable; a version
added by hand is audited before its first run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from palyrad.domain.runs import Run
from palyrad.domain.skill_audit import signed_message
from palyrad.journal import STATE_SKILLS_ERROR
from tests.daemon_harness import RPC_ANY_PORTS, Daemon, palyra, routine, wait_until

pytestmark = pytest.mark.timeout(120)

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def script(out: Path, tag: str) -> bytes:
    return (
        f'#!/bin/sh\nprintf "%s" "$PALYRA_SKILL_ARGS" > "{out}/{tag}-$PALYRA_RUN_ID"\n'
    ).encode()


def sign(sid: str, version: str, data: bytes) -> str:
    msg = signed_message(sid, version, "acme", hashlib.sha256(data).digest())
    return base64.b64encode(KEY.sign(msg)).decode()


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    root = tmp_path_factory.mktemp("skills")
    out = root / "out"
    out.mkdir()
    daemon = Daemon(root / "home")
    # A 1 s periodic re-audit: the test of it needs no CLI command to see a tampered file.
    daemon.home.config.write_text(
        RPC_ANY_PORTS + "[maintenance]\nskill_reaudit_interval_ms = 1000\n"
    )
    daemon.write_definitions(
        [
            routine(
                "use-greet",
                {"kind": "manual"},
                {"kind": "skill", "skill_id": "greet", "args": ["a b", "c"]},
                concurrency="queue_one",
            )
        ]
    )
    try:
        daemon.start()
        palyra(daemon.root, "skills", "trust", "acme", "--public-key", PUBLIC)
        install(daemon, root, "1.0.0", script(out, "v1"))
        yield daemon, out
    finally:
        daemon.close()


def install(d: Daemon, root: Path, version: str, data: bytes) -> None:
    art = root / f"greet-{version}"
    art.write_bytes(data)
    palyra(d.root, "skills", "install", str(art), "--id", "greet", "--version", version,
           "--publisher", "acme", "--signature", sign("greet", version, data))  # fmt: skip


def run_now(d: Daemon) -> Run:
    doc = orjson.loads(palyra(d.root, "routines", "run-now", "use-greet", "--json").stdout)
    rid = str(doc["run_id"])

    def ended() -> Run | None:
        run = d.journal.runs.get(rid)
        return run if run is not None and not run.is_active else None

    return wait_until(ended, timeout=30)


def artifact(d: Daemon, version: str) -> Path:
    return d.home.skills_dir / "greet" / version / "artifact"


def state(d: Daemon, version: str) -> dict[str, object]:
    doc = orjson.loads(palyra(d.root, "skills", "list", "--json").stdout)
    for s in doc["skills"]:
        if s["version"] == version:
            return dict(s)
    raise AssertionError(f"no version {version}: {doc}")


def test_the_audited_artifact_runs_with_its_args(d: tuple[Daemon, Path]) -> None:
    daemon, out = d
    run = run_now(daemon)
    assert run.status == "succeeded", (run.error_kind, run.error_message)
    written = out / f"v1-{run.run_id}"
    assert orjson.loads(written.read_bytes()) == ["a b", "c"]


def test_a_tampered_artifact_never_runs(d: tuple[Daemon, Path]) -> None:
    daemon, out = d
    path = artifact(daemon, "1.0.0")
    good = path.read_bytes()
    path.write_bytes(script(out, "evil"))
    try:
        run = run_now(daemon)
        assert (run.status, run.error_kind) == ("failed", "skill_unavailable")
        assert "hash mismatch" in (run.error_message or "")
        assert not list(out.glob("evil-*"))  # the tampered code never ran
        s = state(daemon, "1.0.0")
        assert s["state"] == "quarantined" and str(s["reason"]).startswith("hash mismatch")
    finally:
        path.write_bytes(good)
    # Restored bytes pass the next audit, which lifts the audit's quarantine.
    palyra(daemon.root, "skills", "audit", "greet")
    assert state(daemon, "1.0.0")["state"] == "active"
    assert run_now(daemon).status == "succeeded"


def test_an_operators_quarantine_refuses_runs_until_released(d: tuple[Daemon, Path]) -> None:
    daemon, _ = d
    palyra(daemon.root, "skills", "quarantine", "greet", "--reason", "review")
    try:
        run = run_now(daemon)
        assert (run.status, run.error_kind) == ("failed", "skill_unavailable")
        assert "quarantined by an operator: review" in (run.error_message or "")
    finally:
        palyra(daemon.root, "skills", "release", "greet")
    assert run_now(daemon).status == "succeeded"


def test_an_invalid_index_keeps_the_previous_skills_runnable(d: tuple[Daemon, Path]) -> None:
    daemon, out = d
    index = daemon.home.installed_index
    good = index.read_bytes()
    index.write_bytes(good.replace(b'"current": true', b'"current": 1'))
    try:
        run = run_now(daemon)
        assert run.status == "succeeded", (run.error_kind, run.error_message)
        assert (out / f"v1-{run.run_id}").exists()
    finally:
        index.write_bytes(good)


def test_a_version_added_by_hand_is_audited_before_its_first_run(
    d: tuple[Daemon, Path], tmp_path: Path
) -> None:
    daemon, out = d
    data = script(out, "v2")
    target = artifact(daemon, "2.0.0")
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    target.chmod(0o755)
    index = daemon.home.installed_index
    doc = orjson.loads(index.read_bytes())
    for s in doc["skills"]:
        s["current"] = False
    doc["skills"].append(
        {
            "skill_id": "greet",
            "version": "2.0.0",
            "publisher": "acme",
            "artifact_sha256": hashlib.sha256(data).hexdigest(),
            "signature": sign("greet", "2.0.0", data),
            "current": True,
        }
    )
    index.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    run = run_now(daemon)
    assert run.status == "succeeded", (run.error_kind, run.error_message)
    assert (out / f"v2-{run.run_id}").exists()
    assert state(daemon, "2.0.0")["state"] == "active"


def test_the_periodic_reaudit_quarantines_a_tampered_artifact_by_itself(
    d: tuple[Daemon, Path],
) -> None:
    daemon, out = d
    path = artifact(daemon, current_version(daemon))
    good = path.read_bytes()
    path.write_bytes(script(out, "evil"))
    subject = f"greet@{current_version(daemon)}"
    try:
        wait_until(lambda: state(daemon, current_version(daemon))["state"] == "quarantined")
        assert not list(out.glob("evil-*"))
        # Self-healing's skills domain: a critical incident (the bytes changed).
        found = wait_until(lambda: incident(daemon, subject))
        assert found["severity"] == "critical" and "hash mismatch" in found["summary"]
    finally:
        path.write_bytes(good)
    # ... and the next one restores it (an audit's quarantine, not an operator's).
    wait_until(lambda: state(daemon, current_version(daemon))["state"] == "active")
    wait_until(lambda: incident(daemon, subject) is None, timeout=30)


def incident(d: Daemon, subject: str) -> dict[str, object] | None:
    doc = orjson.loads(palyra(d.root, "incidents", "list", "--json").stdout)
    for i in doc["incidents"]:
        if i["domain"] == "skills" and i["subject"] == subject:
            return dict(i)
    return None


def test_an_invalid_hand_edit_is_reported_and_never_applied(d: tuple[Daemon, Path]) -> None:
    daemon, _ = d
    index = daemon.home.installed_index
    good = index.read_bytes()
    index.write_bytes(good.replace(b'"publisher": "acme"', b'"publisher": "bad name!"', 1))
    try:
        wait_until(lambda: daemon.journal.state.get(STATE_SKILLS_ERROR))
        doc = orjson.loads(palyra(daemon.root, "doctor", "--json", "--only", "skills_index",
                                  check=False).stdout)  # fmt: skip
        check = doc["checks"][0]
        assert check["status"] == "fail" and f"{index}:" in check["message"], check
        assert run_now(daemon).status == "succeeded"  # the last good index still runs
    finally:
        index.write_bytes(good)
    wait_until(lambda: daemon.journal.state.get(STATE_SKILLS_ERROR) is None)


def current_version(d: Daemon) -> str:
    doc = orjson.loads(d.home.installed_index.read_bytes())
    return str(next(s["version"] for s in doc["skills"] if s["current"]))
