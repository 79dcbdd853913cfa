"""What an adversarial review of signed skills (SPEC §1, §4.7, §6) broke, kept as tests (all
fixed): an install of a FIFO hung with the lock held, an install had no size limit, an
operator could not quarantine while the index was mid-edit, a trust store others could write
went unnoticed, and the "last good index" existed only in an executor that had run a skill.
Real files, the real ``palyra`` CLI in subprocesses, and a real daemon where needed.

What held up (no test here): swapping the artifact (rename, in-place rewrite, partial write)
in a loop while runs fire never ran unsigned bytes; a FIFO / directory / symlink / missing
artifact is refused by the runner without a hang; 50 runs (accepted, mismatched, missing,
FIFO, operator-quarantined) leak no descriptor in any daemon process; an operator's
quarantine survives reinstall, new versions, hand edits and restarts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from palyrad.domain.runs import Run
from palyrad.domain.skill_audit import signed_message
from tests.daemon_harness import BIN, RPC_ANY_PORTS, Daemon, palyra, routine, wait_until

pytestmark = pytest.mark.timeout(180)

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
SCRIPT = b'#!/bin/sh\necho hello "$PALYRA_SKILL_ARGS"\n'


def sign(sid: str, version: str, data: bytes, publisher: str = "acme") -> str:
    msg = signed_message(sid, version, publisher, hashlib.sha256(data).digest())
    return base64.b64encode(KEY.sign(msg)).decode()


def install(home: Path, tmp: Path, sid: str, version: str, data: bytes = SCRIPT) -> None:
    art = tmp / f"{sid}-{version}.bin"
    art.write_bytes(data)
    palyra(home, "skills", "install", str(art), "--id", sid, "--version", version,
           "--publisher", "acme", "--signature", sign(sid, version, data))  # fmt: skip


def break_index(home: Path) -> None:
    """A half-finished hand edit (written in place, like an editor without rename)."""
    idx = home / "skills" / "installed-index.json"
    text = idx.read_text()
    assert '"current": true' in text
    with open(idx, "r+") as f:
        f.seek(0)
        f.truncate()
        f.write(text.replace('"current": true', '"current": tru', 1))


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_install_of_a_fifo_is_refused_and_does_not_hold_the_lock(tmp_path: Path) -> None:
    home = tmp_path / "home"
    palyra(home, "skills", "trust", "acme", "--public-key", PUBLIC)
    fifo = tmp_path / "artifact.fifo"
    os.mkfifo(fifo)
    argv = [str(BIN / "palyra"), "--home", str(home), "skills", "install", str(fifo),
            "--id", "greet", "--version", "1", "--publisher", "acme",
            "--signature", sign("greet", "1", SCRIPT)]  # fmt: skip
    hung = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            rc: int | None = hung.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        # Meanwhile, another skills command must not be blocked behind it.
        try:
            other = subprocess.run(
                [str(BIN / "palyra"), "--home", str(home), "skills", "untrust", "acme"],
                capture_output=True,
                timeout=10,
            ).returncode
        except subprocess.TimeoutExpired:
            other = None
    finally:
        if hung.poll() is None:
            hung.kill()
        hung.wait()
    assert rc == 2, "install of a FIFO did not return (it blocks in open() forever)"
    assert other == 0, "untrust was blocked behind the hung install's skills/.lock"


@pytest.mark.timeout(120)
def test_install_refuses_an_artifact_larger_than_a_run_accepts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    palyra(home, "skills", "trust", "acme", "--public-key", PUBLIC)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse: costs the test nothing to make
    # The signature is irrelevant: the size alone makes this artifact unrunnable.
    proc = palyra(home, "skills", "install", str(big), "--id", "big", "--version", "1",
                  "--publisher", "acme", "--signature", sign("big", "1", b""), check=False,
                  timeout=100)  # fmt: skip
    installed = home / "skills" / "big" / "1" / "artifact"
    size = installed.stat().st_size if installed.exists() else 0
    installed.unlink(missing_ok=True)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert size == 0


def test_an_operator_can_quarantine_while_the_index_is_being_edited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    palyra(home, "skills", "trust", "acme", "--public-key", PUBLIC)
    install(home, tmp_path, "greet", "1")
    break_index(home)
    proc = palyra(home, "skills", "quarantine", "greet", "--reason", "CVE", check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_trust_store_others_can_write_is_refused_or_reported(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "home")
    d.home.config.write_text(RPC_ANY_PORTS)
    palyra(d.root, "skills", "trust", "acme", "--public-key", PUBLIC)
    store = d.home.skills_dir / "trust-store.json"
    os.chmod(store, 0o666)
    try:
        start = palyra(d.root, "daemon", "start", check=False)
        doctor = palyra(d.root, "doctor", check=False)
    finally:
        d.close()
    refused = start.returncode != 0
    reported = "trust-store.json" in doctor.stdout + doctor.stderr
    assert refused or reported, doctor.stdout


# --- the daemon -------------------------------------------------------------------------------


def run_now(d: Daemon, rid: str) -> Run:
    doc = orjson.loads(palyra(d.root, "routines", "run-now", rid, "--json").stdout)
    run_id = str(doc["run_id"])

    def ended() -> Run | None:
        run = d.journal.runs.get(run_id)
        return run if run is not None and not run.is_active else None

    return wait_until(ended, timeout=30)


def test_an_invalid_edit_before_the_first_skill_run_keeps_the_last_good_index(
    tmp_path: Path,
) -> None:
    d = Daemon(tmp_path / "home")
    d.home.config.write_text(RPC_ANY_PORTS)
    d.write_definitions(
        [routine("use", {"kind": "manual"}, {"kind": "skill", "skill_id": "greet"})]
    )
    try:
        d.start()
        palyra(d.root, "skills", "trust", "acme", "--public-key", PUBLIC)
        install(d.root, tmp_path, "greet", "1")  # valid, audited, active
        time.sleep(1.5)  # the scheduler has seen and validated the good index
        break_index(d.root)
        time.sleep(1.5)
        run = run_now(d, "use")
        assert run.status == "succeeded", (run.error_kind, run.error_message)
    finally:
        d.close()
