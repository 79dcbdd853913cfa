"""installed-index.json and trust-store.json (SPEC §6): the model, every error with its path,
line and column (SPEC §2.4's format), canonical serialization and the CLI's value parsers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from routines.errors import InvalidInput
from routines.skills_files import (
    MAX_PUBLISHERS,
    MAX_SKILLS,
    MAX_SKILLS_FILE_BYTES,
    InstalledIndex,
    InstalledSkill,
    Publisher,
    SkillsFileResult,
    TrustStore,
    dumps_index,
    dumps_trust,
    load_index,
    load_trust,
    parse_installed_skill,
    parse_public_key,
    parse_publisher_name,
    validate_index_text,
    validate_trust_text,
)
from routines.validate import Issue, format_issue

pytestmark = pytest.mark.timeout(60)

SIG = base64.b64encode(bytes(range(64))).decode()
KEY = base64.b64encode(bytes(range(100, 132))).decode()
SHA = "0123456789abcdef" * 4


def at(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """(line, column) of the nth occurrence of ``needle``, computed independently of the
    code under test, in characters."""
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    return text.count("\n", 0, idx) + 1, idx - (text.rfind("\n", 0, idx) + 1) + 1


def skill(
    sid: str = "hello", version: str = "1.0.0", current: bool = True, **kw: object
) -> dict[str, object]:
    entry: dict[str, object] = {
        "skill_id": sid,
        "version": version,
        "publisher": "acme",
        "artifact_sha256": SHA,
        "signature": SIG,
        "current": current,
    }
    entry.update(kw)
    return entry


def index_text(*entries: dict[str, object]) -> str:
    return json.dumps({"schema_version": 1, "skills": list(entries)}, indent=2)


def trust_text(publishers: object) -> str:
    return json.dumps({"schema_version": 1, "publishers": publishers}, indent=2)


def single(res: SkillsFileResult[Any]) -> Issue:
    assert res.value is None and not res.ok
    assert len(res.errors) == 1, res.errors
    return res.errors[0]


def index_error(text: str) -> Issue:
    return single(validate_index_text(text, "installed-index.json"))


def trust_error(text: str) -> Issue:
    return single(validate_trust_text(text, "trust-store.json"))


def installed(sid: str = "hello", version: str = "1.0.0", current: bool = True) -> InstalledSkill:
    return InstalledSkill(sid, version, "acme", SHA, SIG, current)


# --- valid files and round trips ---------------------------------------------------------


def test_valid_index_round_trips() -> None:
    text = index_text(
        skill("zeta", "2.0", True),
        skill("alpha", "1.0+build.5", False),
        skill("alpha", "1.1", True, publisher="me@example.org"),
        skill("zeta", "1.0", False),
    )
    res = validate_index_text(text, "installed-index.json")
    assert res.ok and res.errors == [] and res.warnings == []
    index = res.value
    assert index is not None
    # Stored sorted by (skill_id, version): the file's order does not matter.
    assert [(s.skill_id, s.version) for s in index.skills] == [
        ("alpha", "1.0+build.5"),
        ("alpha", "1.1"),
        ("zeta", "1.0"),
        ("zeta", "2.0"),
    ]
    out = dumps_index(index)
    assert out.endswith(b"}\n") and b'\n  "skills": [\n    {\n      "skill_id"' in out
    again = validate_index_text(out, "installed-index.json")
    assert again.value == index
    assert dumps_index(again.value) == out  # canonical: stable byte for byte
    assert list(json.loads(out)["skills"][0]) == [
        "skill_id",
        "version",
        "publisher",
        "artifact_sha256",
        "signature",
        "current",
    ]
    assert list(index.to_json()) == ["schema_version", "skills"]


def test_empty_index_and_store_round_trip() -> None:
    assert dumps_index(InstalledIndex()) == b'{\n  "schema_version": 1,\n  "skills": []\n}\n'
    assert validate_index_text(dumps_index(InstalledIndex()), "i").value == InstalledIndex()
    assert dumps_trust(TrustStore()) == b'{\n  "schema_version": 1,\n  "publishers": {}\n}\n'
    assert validate_trust_text(dumps_trust(TrustStore()), "t").value == TrustStore()


def test_valid_trust_store_round_trips() -> None:
    other = base64.b64encode(b"\xff" * 32).decode()
    text = trust_text(
        {"zed": {"ed25519_public_key": KEY}, "acme.io": {"ed25519_public_key": other}}
    )
    res = validate_trust_text(text, "trust-store.json")
    assert res.ok
    store = res.value
    assert store is not None
    assert [p.name for p in store.publishers] == ["acme.io", "zed"]
    assert store.get("zed") == Publisher("zed", KEY)
    assert store.get("zed").key_bytes == bytes(range(100, 132))  # type: ignore[union-attr]
    assert store.get("nobody") is None
    out = dumps_trust(store)
    assert json.loads(out) == {
        "schema_version": 1,
        "publishers": {
            "acme.io": {"ed25519_public_key": other},
            "zed": {"ed25519_public_key": KEY},
        },
    }
    assert validate_trust_text(out, "trust-store.json").value == store
    assert dumps_trust(validate_trust_text(out, "t").value) == out  # type: ignore[arg-type]


def test_bytes_with_bom_and_str_are_accepted() -> None:
    text = index_text(skill())
    a = validate_index_text(text, "i").value
    assert a is not None
    assert validate_index_text(text.encode(), "i").value == a
    assert validate_index_text(b"\xef\xbb\xbf" + text.encode(), "i").value == a


def test_hex_digest_is_normalized_to_lower_case() -> None:
    upper = "0123456789ABCDEF" * 4
    res = validate_index_text(index_text(skill(artifact_sha256=upper)), "i")
    assert res.value is not None
    s = res.value.skills[0]
    assert s.artifact_sha256 == SHA
    assert s.digest == bytes.fromhex(SHA) and len(s.digest) == 32
    assert b'"artifact_sha256": "' + SHA.encode() + b'"' in dumps_index(res.value)
    # The model normalizes too, so equal digests compare equal however they were given.
    assert InstalledSkill("a", "1", "p", upper, SIG, True) == InstalledSkill(
        "a", "1", "p", SHA, SIG, True
    )


def test_signature_bytes_and_canonical_base64() -> None:
    s = validate_index_text(index_text(skill()), "i").value.skills[0]  # type: ignore[union-attr]
    assert s.signature_bytes == bytes(range(64))
    # Non-zero unused bits in the last character decode to the same bytes: stored canonical.
    odd = SIG[:-3] + chr(ord(SIG[-3]) + 1) + "=="
    assert base64.b64decode(odd) == bytes(range(64)) and odd != SIG
    res = validate_index_text(index_text(skill(signature=odd)), "i")
    assert res.value is not None and res.value.skills[0].signature == SIG


# --- file-level errors -------------------------------------------------------------------


@pytest.mark.parametrize("check", [index_error, trust_error])
def test_file_level_errors(check: Callable[[bytes | str], Issue]) -> None:
    f = check
    err = f(b"{\xff}")
    assert (err.path, err.line, err.column) == ("", 1, 1)
    assert err.message == "file is not valid UTF-8 (invalid byte 0xff at byte offset 1)"
    err = f(b" " * (MAX_SKILLS_FILE_BYTES + 1))
    assert (err.line, err.column) == (1, 1)
    assert err.message == (
        f"file is {MAX_SKILLS_FILE_BYTES + 1} bytes; the limit is {MAX_SKILLS_FILE_BYTES} bytes"
        " (8 MiB)"
    )
    big = "é" * (MAX_SKILLS_FILE_BYTES // 2 + 1)  # fewer characters than the limit, more bytes
    err = f(big)
    assert err.message.startswith(f"file is {2 * len(big)} bytes; the limit")
    err = f("  \n ")
    assert (err.path, err.line, err.column) == ("", 2, 2)
    assert err.message == "invalid JSON: the document is empty (expected a JSON object)"
    err = f('{\n  "schema_version": 1,\n}')
    assert (err.line, err.column) == (3, 1)
    assert err.message.startswith("invalid JSON: ")
    err = f("{} []")
    assert (err.line, err.column, err.message) == (
        1,
        4,
        "invalid JSON: unexpected data after the JSON document",
    )
    err = f("\n  [1]")
    assert (err.path, err.line, err.column) == ("", 2, 3)
    assert err.message.startswith("the document must be a JSON object, got an array (like {")


def test_root_keys_of_the_index() -> None:
    res = validate_index_text("{}", "i")
    assert [(e.path, e.line, e.column, e.message) for e in res.errors] == [
        ("schema_version", 1, 1, 'missing required key "schema_version" (add "schema_version": 1)'),
        ("skills", 1, 1, 'missing required key "skills" (add "skills": [] when there are none)'),
    ]
    text = '{\n  "schema_version": 1,\n  "skills": [],\n  "skils": []\n}'
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skils", *at(text, '"skils"'))
    assert (
        err.message
        == 'unknown key "skils" (did you mean "skills"?); the keys are schema_version, skills'
    )
    for bad in ("2", '"1"', "1.0", "true", "null"):
        text = '{"skills": [], "schema_version": ' + bad + "}"
        err = index_error(text)
        assert (err.path, err.line, err.column) == ("schema_version", 1, 34)
        assert err.message == f"must be 1, got {bad} (the only version this palyra reads)"
    text = '{"schema_version": 1, "skills": {"a": 1}}'
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills", 1, 33)
    assert err.message.startswith("must be an array of installed skills, got an object (like [")


def test_root_keys_of_the_trust_store() -> None:
    res = validate_trust_text('{"schema_version": 1}', "t")
    err = single(res)
    assert (err.path, err.line, err.column) == ("publishers", 1, 1)
    assert (
        err.message
        == 'missing required key "publishers" (add "publishers": {} when there are none)'
    )
    text = '{"schema_version": 1, "publishers": [], "skills": []}'
    res = validate_trust_text(text, "t")
    assert [(e.path, e.column) for e in res.errors] == [
        ("publishers", at(text, "[]")[1]),
        ("skills", at(text, '"skills"')[1]),
    ]
    assert res.errors[0].message.startswith("must be an object of publishers, got an array")
    assert res.errors[1].message == 'unknown key "skills"; the keys are schema_version, publishers'


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    entry = json.dumps(skill())[:-1] + ', "version": "2"}'
    text = '{"schema_version": 1,\n "skills": [\n' + entry + '],\n "schema_version": 1}'
    res = validate_index_text(text, "i")
    assert res.value is None
    assert [(e.path, e.line, e.column, e.message) for e in res.errors] == [
        (
            "skills[0].version",
            *at(text, '"version"', 2),
            'duplicate key "version" (only the last value would count; remove the others)',
        ),
        (
            "schema_version",
            *at(text, '"schema_version"', 2),
            'duplicate key "schema_version" (only the last value would count; remove the others)',
        ),
    ]
    a_key = json.dumps({"ed25519_public_key": KEY})
    text = '{"schema_version": 1, "publishers": {"a": ' + a_key + ', "a": {}}}'
    # The missing key is reported on the last value too: it is the one a parser keeps.
    trust = validate_trust_text(text, "t")
    assert [(e.path, e.column) for e in trust.errors] == [
        ("publishers.a", at(text, '"a"', 2)[1]),
        ("publishers.a.ed25519_public_key", at(text, "{}")[1]),
    ]


# --- index entries ----------------------------------------------------------------------


def test_entry_must_be_an_object_with_exactly_the_known_keys() -> None:
    text = index_text(skill(), "nope")  # type: ignore[arg-type]
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills[1]", *at(text, '"nope"'))
    assert err.message == 'must be an object, got "nope" (one installed skill version)'

    text = index_text(skill(signatur=SIG))
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills[0].signatur", *at(text, '"signatur"'))
    assert err.message == (
        'unknown key "signatur" (did you mean "signature"?); the keys are skill_id, version, '
        "publisher, artifact_sha256, signature, current"
    )
    entry = skill()
    del entry["current"]
    text = index_text(entry)
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills[0].current", *at(text, "{", 2))
    assert err.message == 'missing required key "current"'


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("skill_id", 5, "must be a string, got 5 (write the skill id in double quotes)"),
        ("skill_id", "Hello", 'invalid skill id "Hello" (ids are 1-128 characters of a-z'),
        ("skill_id", "", 'invalid skill id "" (ids are'),
        ("version", "..", 'invalid version ".." (versions are 1-64 characters'),
        ("version", ".", 'invalid version "." (versions are'),
        ("version", "1/2", 'invalid version "1/2" (versions are'),
        ("version", "1" * 65, "invalid version"),
        ("version", None, "must be a string, got null (write the version in double quotes)"),
        ("publisher", "a b", 'invalid publisher name "a b" (publisher names are 1-128'),
        ("publisher", "x" * 129, "invalid publisher name"),
        ("artifact_sha256", SHA[:-1], "must be 64 hex digits, got"),
        ("artifact_sha256", SHA[:-1] + "g", "must be 64 hex digits, got"),
        ("artifact_sha256", [], "must be a string, got an array"),
        ("signature", SIG.rstrip("="), "must be base64 of an Ed25519 signature, got"),
        ("signature", SIG[:-4] + "=AAA", "must be base64 of an Ed25519 signature"),
        ("signature", "not base64!", "must be base64 of an Ed25519 signature"),
        (
            "signature",
            base64.b64encode(bytes(63)).decode(),
            "decodes to 63 bytes, but an Ed25519 signature is 64 bytes (copy all of it: 88",
        ),
        ("signature", KEY, "decodes to 32 bytes, but an Ed25519 signature is 64 bytes"),
        ("current", "true", 'must be true or false, got "true" (true for the version'),
        ("current", 1, "must be true or false, got 1"),
    ],
)
def test_entry_value_errors_point_at_the_value(key: str, value: object, message: str) -> None:
    entry = skill()
    entry[key] = value
    text = index_text(entry)
    err = index_error(text)
    line, column = at(text, f'"{key}": ')
    assert (err.path, err.line, err.column) == (f"skills[0].{key}", line, column + len(key) + 4)
    assert err.message.startswith(message), err.message
    name = "skills/installed-index.json"
    assert format_issue(name, err) == (
        f"{name}:{line}:{column + len(key) + 4}: skills[0].{key}: {err.message}"
    )


def test_every_error_of_a_file_is_reported() -> None:
    text = index_text(
        skill(version="a b", publisher=""),
        skill("other", artifact_sha256="x", signature=""),
    )
    res = validate_index_text(text, "i")
    assert [e.path for e in res.errors] == [
        "skills[0].version",
        "skills[0].publisher",
        "skills[1].artifact_sha256",
        "skills[1].signature",
    ]


def test_duplicate_id_and_version() -> None:
    text = index_text(skill("a", "1"), skill("b", "1"), skill("a", "1", current=False))
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills[2].version", *at(text, '"1"', 3))
    line0 = at(text, '"1"')[0]
    assert err.message == (
        f'duplicate entry for skill "a" version "1": remove one (first listed at skills[0], '
        f"line {line0})"
    )
    # Two current duplicates: reported once, as the duplicate.
    err = index_error(index_text(skill("a", "1"), skill("a", "1")))
    assert err.path == "skills[1].version"


def test_zero_current_versions() -> None:
    text = index_text(skill("a", "1", False), skill("b", "1"), skill("a", "2", False))
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills[0].current", *at(text, "false"))
    assert err.message == 'no current version of skill "a": set "current": true on one'


def test_two_current_versions_name_both() -> None:
    text = index_text(skill("a", "1"), skill("a", "2", False), skill("a", "3"))
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills[2].current", *at(text, "true", 2))
    assert err.message == (
        'skill "a" has 2 current versions: "1" (skills[0]), "3" (skills[2]); '
        'set "current": false on all but one'
    )
    many = index_text(*(skill("a", str(n)) for n in range(7)))
    err = index_error(many)
    assert err.message.startswith('skill "a" has 7 current versions: "0" (skills[0]),')
    assert "and 2 more; " in err.message


def test_an_invalid_current_value_does_not_add_a_zero_current_error() -> None:
    err = index_error(index_text(skill("a", "1", current=None)))  # type: ignore[arg-type]
    assert err.path == "skills[0].current" and err.message.startswith("must be true or false")
    # An entry with another error still counts as the current one.
    err = index_error(index_text(skill("a", "1", publisher="bad name")))
    assert err.path == "skills[0].publisher"


def test_too_many_skills(monkeypatch: pytest.MonkeyPatch) -> None:
    import routines.skills_files as sf

    monkeypatch.setattr(sf, "MAX_SKILLS", 2)
    text = index_text(skill("a"), skill("b"), skill("c"))
    err = index_error(text)
    assert (err.path, err.line, err.column) == ("skills", *at(text, "["))
    assert err.message == "too many skills: 3 (the limit is 2; uninstall old versions)"
    assert MAX_SKILLS == 10_000


def test_non_json_constants_are_errors() -> None:
    text = index_text(skill()).replace("true", "NaN")
    err = index_error(text)
    assert (err.path, *at(text, "NaN")) == ("skills[0].current", err.line, err.column)
    assert err.message.startswith("must be true or false, got NaN (not valid JSON)")


# --- trust store entries -----------------------------------------------------------------


def test_publisher_errors() -> None:
    text = trust_text({"bad name": {"ed25519_public_key": KEY}})
    err = trust_error(text)
    assert (err.path, err.line, err.column) == ('publishers["bad name"]', *at(text, '"bad name"'))
    assert err.message.startswith('invalid publisher name "bad name" (publisher names are')

    text = trust_text({"acme": KEY})
    err = trust_error(text)
    assert (err.path, err.line, err.column) == ("publishers.acme", *at(text, f'"{KEY}"'))
    assert err.message.startswith(f'must be an object, got "{KEY}" (like {{"ed25519_public_key"')

    text = trust_text({"acme": {"ed25519_public_key": KEY, "comment": "x"}})
    err = trust_error(text)
    assert (err.path, err.line, err.column) == ("publishers.acme.comment", *at(text, '"comment"'))
    assert err.message == 'unknown key "comment"; the keys are ed25519_public_key'

    text = trust_text({"acme": {"ed25519_key": KEY}})
    res = validate_trust_text(text, "t")
    assert [(e.path, e.line, e.column) for e in res.errors] == [
        ("publishers.acme.ed25519_public_key", *at(text, "{", 3)),
        ("publishers.acme.ed25519_key", *at(text, '"ed25519_key"')),
    ]
    assert res.errors[0].message == (
        'missing required key "ed25519_public_key" (the base64 of the publisher\'s 32-byte key)'
    )
    assert 'did you mean "ed25519_public_key"?' in res.errors[1].message


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (SIG, "decodes to 64 bytes, but an Ed25519 public key is 32 bytes (copy all of it: 44"),
        (KEY.rstrip("="), "must be base64 of an Ed25519 public key, got"),
        ("!!!!" * 11, "must be base64 of an Ed25519 public key"),
        (32, "must be a string, got 32"),
    ],
)
def test_public_key_errors(key: object, message: str) -> None:
    text = trust_text({"acme": {"ed25519_public_key": key}})
    err = trust_error(text)
    line, column = at(text, '"ed25519_public_key": ')
    assert (err.path, err.line, err.column) == (
        "publishers.acme.ed25519_public_key",
        line,
        column + len('"ed25519_public_key": '),
    )
    assert err.message.startswith(message), err.message


def test_too_many_publishers(monkeypatch: pytest.MonkeyPatch) -> None:
    import routines.skills_files as sf

    monkeypatch.setattr(sf, "MAX_PUBLISHERS", 1)
    text = trust_text({"a": {"ed25519_public_key": KEY}, "b": {"ed25519_public_key": KEY}})
    err = trust_error(text)
    assert (err.path, err.line, err.column) == ("publishers", *at(text, "{", 2))
    assert err.message == "too many publishers: 2 (the limit is 1)"
    assert MAX_PUBLISHERS == 1_000


# --- the model's edits -------------------------------------------------------------------


def test_with_installed_switches_the_current_version() -> None:
    index = InstalledIndex((installed("a", "1"), installed("b", "1")))
    assert index.current("a") == installed("a", "1")
    index2 = index.with_installed(installed("a", "2", current=False))  # made current anyway
    assert index2.current("a") == installed("a", "2")
    assert index2.get("a", "1") == installed("a", "1", current=False)
    assert [s.version for s in index2.versions("a")] == ["1", "2"]
    assert index2.current("b") == installed("b", "1")  # other ids untouched
    assert index.current("a") == installed("a", "1")  # the original is unchanged
    # Reinstalling an existing version replaces it and makes it current again.
    new_sig = base64.b64encode(b"\x01" * 64).decode()
    again = index2.with_installed(InstalledSkill("a", "1", "acme", SHA, new_sig, True))
    assert len(again.versions("a")) == 2
    assert again.current("a") == InstalledSkill("a", "1", "acme", SHA, new_sig, True)
    assert again.get("a", "2") == installed("a", "2", current=False)
    assert (
        again.current("zzz") is None and again.versions("zzz") == () and again.get("a", "9") is None
    )
    assert again.skill_ids() == ("a", "b")
    # Whatever the edits, the result is a valid file.
    assert validate_index_text(dumps_index(again), "i").value == again


def test_trust_store_with_and_without() -> None:
    other = base64.b64encode(b"\x07" * 32).decode()
    store = (
        TrustStore().with_publisher(Publisher("zed", KEY)).with_publisher(Publisher("acme", KEY))
    )
    assert [p.name for p in store.publishers] == ["acme", "zed"]
    store2 = store.with_publisher(Publisher("acme", other))  # a new key replaces the old
    assert store2.get("acme") == Publisher("acme", other) and len(store2.publishers) == 2
    store3 = store2.without("acme")
    assert store3.get("acme") is None and [p.name for p in store3.publishers] == ["zed"]
    assert store3.without("nobody") == store3
    assert store == TrustStore((Publisher("acme", KEY), Publisher("zed", KEY)))
    assert validate_trust_text(dumps_trust(store2), "t").value == store2


# --- the CLI's value parsers -------------------------------------------------------------


def test_parse_public_key_accepts_and_normalizes() -> None:
    raw = bytes(range(200, 232))
    std = base64.b64encode(raw).decode()
    assert parse_public_key(std) == std
    assert parse_public_key(f"  {std}\n") == std
    assert parse_public_key(std.rstrip("=")) == std
    assert parse_public_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == std
    spki = bytes.fromhex("302a300506032b6570032100") + raw  # `openssl pkey -pubout` DER
    der = base64.b64encode(spki).decode()
    assert parse_public_key(der) == std
    pem = f"-----BEGIN PUBLIC KEY-----\n{der}\n-----END PUBLIC KEY-----\n"
    assert parse_public_key(pem) == std


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'the public key "" is not base64'),
        ("not a key!", 'the public key "not a key!" is not base64'),
        (base64.b64encode(bytes(31)).decode(), "the public key decodes to 31 bytes"),
        (SIG, "the public key decodes to 64 bytes; an Ed25519 public key is 32"),
        ("A", 'the public key "A" is not base64'),
    ],
)
def test_parse_public_key_refuses_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_public_key(text)
    assert str(exc.value).startswith(message), str(exc.value)
    assert exc.value.hint is not None and "32 raw bytes" in exc.value.hint
    assert exc.value.exit_code == 2


def test_parse_publisher_name_and_installed_skill() -> None:
    assert parse_publisher_name("me@example.org") == "me@example.org"
    with pytest.raises(InvalidInput) as exc:
        parse_publisher_name("a/b")
    assert exc.value.hint is not None and "1-128 characters" in exc.value.hint
    s = parse_installed_skill("hello", "1.0", "acme", SHA.upper(), SIG + "\n")
    assert s == InstalledSkill("hello", "1.0", "acme", SHA, SIG, True)
    with pytest.raises(InvalidInput) as exc:
        parse_installed_skill("hello", "..", "acme", SHA, SIG)
    assert str(exc.value) == '--version: invalid version ".."'
    with pytest.raises(InvalidInput) as exc:
        parse_installed_skill("hello", "1", "acme", SHA, "abc=")
    assert str(exc.value).startswith("--signature: decodes to 2 bytes")


def test_load_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_index(tmp_path / "installed-index.json").value == InstalledIndex()
    assert load_trust(tmp_path / "trust-store.json").value == TrustStore()
    p = tmp_path / "trust-store.json"
    p.write_bytes(b"")
    err = single(load_trust(p))
    assert err.message.startswith("invalid JSON: the document is empty")
    p.write_bytes(dumps_trust(TrustStore((Publisher("acme", KEY),))))
    assert load_trust(p).value == TrustStore((Publisher("acme", KEY),))
    (tmp_path / "d").mkdir()
    err = single(load_index(tmp_path / "d"))
    assert (err.line, err.column) == (1, 1) and "not a file" in err.message


def test_two_current_when_one_lacks_its_version() -> None:
    entry = skill("a", "2")
    del entry["version"]
    res = validate_index_text(index_text(skill("a", "1"), entry), "i")
    assert [(e.path, e.message) for e in res.errors] == [
        ("skills[1].version", 'missing required key "version"'),
        (
            "skills[1].current",
            'skill "a" has 2 current versions: "1" (skills[0]), null (skills[1]); '
            'set "current": false on all but one',
        ),
    ]


def test_a_full_index_validates_quickly() -> None:
    import time

    entries = [skill(f"s{n // 4}", f"{n % 4}", current=n % 4 == 0) for n in range(MAX_SKILLS)]
    data = index_text(*entries).encode()
    assert len(data) < MAX_SKILLS_FILE_BYTES
    t0 = time.perf_counter()
    res = validate_index_text(data, "i")
    assert res.value is not None and len(res.value.skills) == MAX_SKILLS
    assert time.perf_counter() - t0 < 5  # about 0.1 s; generous for a busy machine
    assert validate_index_text(dumps_index(res.value), "i").value == res.value
