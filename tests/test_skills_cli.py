"""``palyra skills …`` against real files and a real journal, with the daemon stopped (SPEC
§4.7, §6): each audit failure kind, the auto-restore of an audit quarantine, the stickiness
of an operator's, the JSON shapes, and hand-edited files that do not validate.

Signatures are made here with ``cryptography``, over the tagged message a publisher signs.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from palyrad.domain.skill_audit import signed_message
from tests.daemon_harness import palyra

pytestmark = pytest.mark.timeout(120)

SCRIPT = b'#!/bin/sh\necho hello from the skill "$PALYRA_SKILL_ARGS"\n'


class Publisher:
    def __init__(self, name: str) -> None:
        self.name = name
        self.key = Ed25519PrivateKey.generate()

    @property
    def public_b64(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def sign(self, skill_id: str, version: str, data: bytes, publisher: str | None = None) -> str:
        digest = hashlib.sha256(data).digest()
        msg = signed_message(skill_id, version, publisher or self.name, digest)
        return base64.b64encode(self.key.sign(msg)).decode()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"


def run(home: Path, *args: str, check: bool = True) -> Any:
    proc = palyra(home, "skills", *args, check=check)
    return proc


def listed(home: Path) -> dict[tuple[str, str], dict[str, Any]]:
    doc = orjson.loads(run(home, "list", "--json").stdout)
    return {(s["skill_id"], s["version"]): s for s in doc["skills"]}


def install(home: Path, tmp: Path, pub: Publisher, sid: str, ver: str, data: bytes = SCRIPT,
            signature: str | None = None) -> dict[str, Any]:  # fmt: skip
    art = tmp / f"{sid}-{ver}.sh"
    art.write_bytes(data)
    sig = signature or pub.sign(sid, ver, data)
    out = run(home, "install", str(art), "--id", sid, "--version", ver, "--publisher", pub.name,
              "--signature", sig, "--json")  # fmt: skip
    result: dict[str, Any] = orjson.loads(out.stdout)
    return result


def artifact(home: Path, sid: str, ver: str) -> Path:
    return home / "skills" / sid / ver / "artifact"


def test_install_trust_list_and_the_json_shape(home: Path, tmp_path: Path) -> None:
    acme = Publisher("acme")
    got = install(home, tmp_path, acme, "greet", "1.0.0")
    assert got["state"] == "quarantined" and got["reason"] == "untrusted publisher 'acme'"
    run(home, "trust", "acme", "--public-key", acme.public_b64)
    s = listed(home)[("greet", "1.0.0")]
    assert set(s) == {
        "skill_id", "version", "publisher", "current", "state", "reason", "manual",
        "last_audit_at",
    }  # fmt: skip
    assert (s["state"], s["reason"], s["manual"], s["current"]) == ("active", None, False, True)
    assert datetime.fromisoformat(s["last_audit_at"]).tzinfo is not None
    path = artifact(home, "greet", "1.0.0")
    assert path.read_bytes() == SCRIPT and (path.stat().st_mode & 0o777) == 0o755
    index = orjson.loads((home / "skills" / "installed-index.json").read_bytes())
    assert index["skills"][0]["artifact_sha256"] == hashlib.sha256(SCRIPT).hexdigest()


def test_each_audit_failure_and_the_auto_restore(home: Path, tmp_path: Path) -> None:
    acme = Publisher("acme")
    run(home, "trust", "acme", "--public-key", acme.public_b64)
    install(home, tmp_path, acme, "greet", "1.0.0")
    path = artifact(home, "greet", "1.0.0")

    def audited() -> dict[str, Any]:
        doc = orjson.loads(run(home, "audit", "greet", "--json").stdout)
        result: dict[str, Any] = doc["skills"][0]
        return result

    assert audited()["state"] == "active"
    path.write_bytes(SCRIPT + b"rm -rf ~\n")  # tampered
    got = audited()
    assert got["state"] == "quarantined" and got["reason"].startswith("hash mismatch")
    path.write_bytes(SCRIPT)  # restored: a passing audit lifts an audit's quarantine
    assert audited()["state"] == "active"
    path.unlink()
    assert audited()["reason"] == "artifact missing"
    path.symlink_to(tmp_path / "greet-1.0.0.sh")
    assert "symbolic link" in audited()["reason"]
    path.unlink()
    path.write_bytes(SCRIPT)
    assert audited()["state"] == "active"
    run(home, "untrust", "acme")
    assert audited()["reason"] == "untrusted publisher 'acme'"


def test_a_signature_for_another_skill_or_version_is_bad(home: Path, tmp_path: Path) -> None:
    acme, mallory = Publisher("acme"), Publisher("mallory")
    run(home, "trust", "acme", "--public-key", acme.public_b64)
    run(home, "trust", "mallory", "--public-key", mallory.public_b64)
    old = acme.sign("greet", "0.9.0", SCRIPT)  # a signed older version of the same bytes
    got = install(home, tmp_path, acme, "greet", "1.0.0", signature=old)
    assert got["state"] == "quarantined" and got["reason"].startswith("bad signature")
    other = acme.sign("other", "1.0.0", SCRIPT)  # another skill's signature
    assert install(home, tmp_path, acme, "greet", "1.0.1", signature=other)["state"] == (
        "quarantined"
    )
    # Signed by mallory but claiming acme as the publisher: acme's key does not verify it.
    forged = mallory.sign("greet", "1.0.2", SCRIPT, publisher="acme")
    assert install(home, tmp_path, acme, "greet", "1.0.2", signature=forged)["reason"].startswith(
        "bad signature"
    )


def test_an_operators_quarantine_is_sticky_and_covers_later_versions(
    home: Path, tmp_path: Path
) -> None:
    acme = Publisher("acme")
    run(home, "trust", "acme", "--public-key", acme.public_b64)
    install(home, tmp_path, acme, "greet", "1.0.0")
    run(home, "quarantine", "greet", "--reason", "under review")
    run(home, "audit")
    s = listed(home)[("greet", "1.0.0")]
    assert (s["state"], s["reason"], s["manual"]) == ("quarantined", "under review", True)
    got = install(home, tmp_path, acme, "greet", "2.0.0")  # installed after: covered too
    assert (got["state"], got["manual"], got["current"]) == ("quarantined", True, True)
    assert listed(home)[("greet", "1.0.0")]["current"] is False
    out = orjson.loads(run(home, "release", "greet", "--json").stdout)
    assert {(r["version"], r["state"]) for r in out["skills"]} == {
        ("1.0.0", "active"),
        ("2.0.0", "active"),
    }
    assert not any(s["manual"] for s in listed(home).values())


def test_unknown_ids_and_bad_input(home: Path, tmp_path: Path) -> None:
    assert run(home, "audit", "nope", check=False).returncode == 1
    assert run(home, "quarantine", "nope", check=False).returncode == 1
    bad_key = run(home, "trust", "acme", "--public-key", "not-base64!", check=False)
    assert bad_key.returncode == 2 and "error:" in bad_key.stderr
    art = tmp_path / "a.sh"
    art.write_bytes(SCRIPT)
    bad_sig = run(home, "install", str(art), "--id", "greet", "--version", "1", "--publisher",
                  "acme", "--signature", "AAAA", check=False)  # fmt: skip
    assert bad_sig.returncode == 2 and "signature" in bad_sig.stderr
    assert not (home / "skills" / "installed-index.json").exists()  # nothing was written
    assert orjson.loads(run(home, "list", "--json").stdout) == {"skills": []}


def test_a_hand_edited_index_that_does_not_validate_is_named_with_its_position(
    home: Path, tmp_path: Path
) -> None:
    acme = Publisher("acme")
    install(home, tmp_path, acme, "greet", "1.0.0")
    index = home / "skills" / "installed-index.json"
    good = index.read_bytes()
    index.write_bytes(good.replace(b'"current": true', b'"current": "yes"'))
    proc = run(home, "list", check=False)
    assert proc.returncode == 2
    assert f"{index}:" in proc.stderr and "current" in proc.stderr
    index.write_bytes(good)
    assert ("greet", "1.0.0") in listed(home)
    os.chmod(index, 0o600)
