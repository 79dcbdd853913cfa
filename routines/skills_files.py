"""The two hand-editable skill files of SPEC §6: ``skills/installed-index.json`` (which skill
versions are installed, and which one of each is current) and ``skills/trust-store.json``
(the publishers whose Ed25519 keys sign artifacts). Their model, validation and serialization
live here, in the pure library, so the daemon and the CLI share one schema and one set of
messages.

Validation reports errors in the §2.4 format of definitions.json and reuses its machinery:
``validate.decode_document`` (UTF-8, byte order mark), ``jsonpos`` (syntax errors with their
position, duplicate keys), the ``Checker``'s findings and ``issues.positioned`` (a JSON path,
then a line and a column, worked out only when something is wrong). Print them with
``routines.validate.format_issue``. These files are small (at most 8 MiB, 10 000 entries), so
unlike definitions.json they are parsed in one go.

Only the format is checked here: signatures are checked elsewhere (this package imports no
cryptography), and neither file is checked against the other (an index entry whose publisher
is not trusted is a failed audit, not an invalid file).

An empty document is not valid JSON and is reported as such. A *missing* file is not an
error: the caller treats it as the empty index or store, ``InstalledIndex()`` /
``TrustStore()`` (``load_index`` and ``load_trust`` do exactly that).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from routines import jsonpos
from routines.definitions_file import read_document
from routines.errors import InvalidInput
from routines.model import ID_PATTERN, ID_RULE
from routines.validate.document import decode_document
from routines.validate.issues import Finding, Issue, file_issue, internal_error, positioned
from routines.validate.primitives import Checker, describe, hint

__all__ = [
    "MAX_PUBLISHERS",
    "MAX_SKILLS",
    "MAX_SKILLS_FILE_BYTES",
    "SKILLS_SCHEMA_VERSION",
    "InstalledIndex",
    "InstalledSkill",
    "Publisher",
    "SkillsFileResult",
    "TrustStore",
    "dumps_index",
    "dumps_trust",
    "load_index",
    "load_trust",
    "parse_installed_skill",
    "parse_public_key",
    "parse_publisher_name",
    "validate_index_text",
    "validate_trust_text",
]

SKILLS_SCHEMA_VERSION = 1
MAX_SKILLS_FILE_BYTES = 8 * 1024 * 1024
MAX_SKILLS = 10_000  # index entries
MAX_PUBLISHERS = 1_000

SIGNATURE_BYTES = 64  # an Ed25519 signature
PUBLIC_KEY_BYTES = 32  # an Ed25519 public key

_ID_RE = re.compile(ID_PATTERN)
# A version names a directory (skills/<id>/<version>/): no separators, never "." or "..".
_VERSION_RE = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_PUBLISHER_RE = re.compile(r"[A-Za-z0-9._@-]{1,128}")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
# Standard alphabet, padding required (so a truncated copy never decodes by accident).
_BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

VERSION_RULE = (
    "versions are 1-64 characters of A-Z, a-z, 0-9, '.', '_', '+', '-', other than \".\" "
    'and "..": a version names a directory'
)
PUBLISHER_RULE = "publisher names are 1-128 characters of A-Z, a-z, 0-9, '.', '_', '@', '-'"

_SKILL_KEYS = ("skill_id", "version", "publisher", "artifact_sha256", "signature", "current")
_SKILL_KEY_SET = frozenset(_SKILL_KEYS)
_PUBLISHER_KEYS = ("ed25519_public_key",)
_PUBLISHER_KEY_SET = frozenset(_PUBLISHER_KEYS)
_INDEX_ROOT_KEYS = ("schema_version", "skills")
_TRUST_ROOT_KEYS = ("schema_version", "publishers")
_DUP_KEY_NOTE = " (only the last value would count; remove the others)"  # as definitions.json
# DER SubjectPublicKeyInfo of an Ed25519 key, before its 32 raw bytes (`openssl pkey -pubout`).
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstalledSkill:
    """One installed version of a skill: an entry of installed-index.json.

    Construct it from validated values (``validate_index_text``, ``parse_installed_skill``);
    the hex digest is stored lower-case whatever case it was given in, so equal digests
    compare equal."""

    skill_id: str
    version: str
    publisher: str
    artifact_sha256: str  # 64 hex digits, lower-case
    signature: str  # base64 of the 64-byte Ed25519 signature
    current: bool

    def __post_init__(self) -> None:
        low = self.artifact_sha256.lower()
        if low != self.artifact_sha256:
            object.__setattr__(self, "artifact_sha256", low)

    @property
    def signature_bytes(self) -> bytes:
        """The raw 64 bytes of the signature (what an Ed25519 verifier takes)."""
        return base64.b64decode(self.signature)

    @property
    def digest(self) -> bytes:
        """The 32 raw bytes of ``artifact_sha256``: the signed message ends with them."""
        return bytes.fromhex(self.artifact_sha256)

    def to_json(self) -> dict[str, Any]:
        """The entry as in the file, keys in SPEC order."""
        return {
            "skill_id": self.skill_id,
            "version": self.version,
            "publisher": self.publisher,
            "artifact_sha256": self.artifact_sha256,
            "signature": self.signature,
            "current": self.current,
        }


def _skill_order(s: InstalledSkill) -> tuple[str, str]:
    return (s.skill_id, s.version)


@dataclass(frozen=True, slots=True)
class InstalledIndex:
    """installed-index.json: every installed version, kept sorted by (skill_id, version) so
    that equal indexes compare equal whatever order their file listed them in, and the file
    written back is stable (the order of versions is by string, not a version order).

    A valid index has one current version per skill id; the methods never break that."""

    skills: tuple[InstalledSkill, ...] = ()
    _by_id: dict[str, tuple[InstalledSkill, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        skills = tuple(sorted(self.skills, key=_skill_order))
        object.__setattr__(self, "skills", skills)
        by_id: dict[str, list[InstalledSkill]] = {}
        for s in skills:
            by_id.setdefault(s.skill_id, []).append(s)
        object.__setattr__(self, "_by_id", {k: tuple(v) for k, v in by_id.items()})

    def current(self, skill_id: str) -> InstalledSkill | None:
        """The current version of ``skill_id`` (the one a ``skill`` action runs), or None."""
        for s in self._by_id.get(skill_id, ()):
            if s.current:
                return s
        return None

    def versions(self, skill_id: str) -> tuple[InstalledSkill, ...]:
        """Every installed version of ``skill_id``, sorted by version string."""
        return self._by_id.get(skill_id, ())

    def get(self, skill_id: str, version: str) -> InstalledSkill | None:
        """The entry of that exact version, or None."""
        for s in self._by_id.get(skill_id, ()):
            if s.version == version:
                return s
        return None

    def skill_ids(self) -> tuple[str, ...]:
        """The installed skill ids, sorted."""
        return tuple(self._by_id)

    def with_installed(self, skill: InstalledSkill) -> InstalledIndex:
        """The index after ``palyra skills install``: ``skill`` added (replacing an entry of
        the same id and version) as the current version of its id; the other versions stay
        installed but are no longer current."""
        new = dataclasses.replace(skill, current=True) if not skill.current else skill
        kept = [
            s
            if s.skill_id != skill.skill_id or not s.current
            else dataclasses.replace(s, current=False)
            for s in self.skills
            if (s.skill_id, s.version) != (skill.skill_id, skill.version)
        ]
        return InstalledIndex(tuple([*kept, new]))

    def to_json(self) -> dict[str, Any]:
        """The file's content as JSON values: ``{"schema_version": 1, "skills": [...]}``."""
        return {
            "schema_version": SKILLS_SCHEMA_VERSION,
            "skills": [s.to_json() for s in self.skills],
        }


@dataclass(frozen=True, slots=True)
class Publisher:
    """A trusted publisher: its name and Ed25519 public key (base64 of the 32 raw bytes)."""

    name: str
    ed25519_public_key: str

    @property
    def key_bytes(self) -> bytes:
        """The raw 32 bytes of the public key (what an Ed25519 verifier is built from)."""
        return base64.b64decode(self.ed25519_public_key)


@dataclass(frozen=True, slots=True)
class TrustStore:
    """trust-store.json: the trusted publishers, sorted by name (names are unique: the file
    maps each name to its key, and a later entry of the same name replaces the earlier)."""

    publishers: tuple[Publisher, ...] = ()
    _by_name: dict[str, Publisher] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_name = {p.name: p for p in self.publishers}
        object.__setattr__(self, "publishers", tuple(by_name[n] for n in sorted(by_name)))
        object.__setattr__(self, "_by_name", by_name)

    def get(self, name: str) -> Publisher | None:
        """The publisher of that name, or None (an untrusted publisher)."""
        return self._by_name.get(name)

    def with_publisher(self, p: Publisher) -> TrustStore:
        """The store after ``palyra skills trust``: ``p`` added, or its key replaced."""
        return TrustStore((*(q for q in self.publishers if q.name != p.name), p))

    def without(self, name: str) -> TrustStore:
        """The store after ``palyra skills untrust`` (unchanged if ``name`` is not there)."""
        return TrustStore(tuple(q for q in self.publishers if q.name != name))

    def to_json(self) -> dict[str, Any]:
        """``{"schema_version": 1, "publishers": {name: {"ed25519_public_key": ...}}}``."""
        return {
            "schema_version": SKILLS_SCHEMA_VERSION,
            "publishers": {
                p.name: {"ed25519_public_key": p.ed25519_public_key} for p in self.publishers
            },
        }


def dumps_index(index: InstalledIndex) -> bytes:
    """The canonical installed-index.json: 2-space indented, entries by (skill_id, version),
    newline-ended (like definitions.json, so a hand edit diffs cleanly)."""
    return orjson.dumps(index.to_json(), option=orjson.OPT_INDENT_2) + b"\n"


def dumps_trust(store: TrustStore) -> bytes:
    """The canonical trust-store.json: 2-space indented, publishers by name, newline-ended."""
    return orjson.dumps(store.to_json(), option=orjson.OPT_INDENT_2) + b"\n"


# --- one value's format: shared by the file validators and the CLI -----------------------


class _Bad(Exception):
    """A value in the wrong format: what is wrong, and what to do (the hint)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def text(self) -> str:
        return f"{self.message} ({self.hint})"


def _string(v: object, what: str) -> str:
    if type(v) is not str:
        raise _Bad(f"must be a string, got {describe(v)}", f"write {what} in double quotes")
    return v


def _skill_id(v: object) -> str:
    s = _string(v, "the skill id")
    if _ID_RE.fullmatch(s) is None:
        raise _Bad(f"invalid skill id {describe(s)}", ID_RULE)
    return s


def _version(v: object) -> str:
    s = _string(v, "the version")
    if _VERSION_RE.fullmatch(s) is None or s in (".", ".."):
        raise _Bad(f"invalid version {describe(s)}", VERSION_RULE)
    return s


def _publisher(v: object) -> str:
    s = _string(v, "the publisher's name")
    if _PUBLISHER_RE.fullmatch(s) is None:
        raise _Bad(f"invalid publisher name {describe(s)}", PUBLISHER_RULE)
    return s


def _sha256(v: object) -> str:
    s = _string(v, "the artifact's SHA-256")
    if _HEX64_RE.fullmatch(s) is None:
        raise _Bad(
            f"must be 64 hex digits, got {describe(s)}",
            "the SHA-256 of the artifact, as `sha256sum ARTIFACT` prints it",
        )
    return s.lower()


def _base64(v: object, size: int, what: str) -> str:
    """``v`` if it is standard, padded base64 of exactly ``size`` bytes, re-encoded
    canonically (unused low bits of the last character zeroed): equal bytes, equal text."""
    chars = 4 * ((size + 2) // 3)
    s = _string(v, f"{what} in base64")
    if len(s) > 4 * chars or _BASE64_RE.fullmatch(s) is None:
        raise _Bad(
            f"must be base64 of {what}, got {describe(s)}",
            f'standard alphabet A-Z a-z 0-9 "+" "/", padded with "=": {chars} characters',
        )
    raw = base64.b64decode(s)
    if len(raw) != size:
        raise _Bad(
            f"decodes to {len(raw)} bytes, but {what} is {size} bytes",
            f"copy all of it: {chars} base64 characters",
        )
    return base64.b64encode(raw).decode("ascii")


def _signature(v: object) -> str:
    return _base64(v, SIGNATURE_BYTES, "an Ed25519 signature")


def _public_key(v: object) -> str:
    return _base64(v, PUBLIC_KEY_BYTES, "an Ed25519 public key")


def _current(v: object) -> bool:
    if type(v) is not bool:
        raise _Bad(
            f"must be true or false, got {describe(v)}",
            "true for the version a skill action runs, false for the others",
        )
    return v


def parse_publisher_name(text: str) -> str:
    """A publisher name typed on the command line (``palyra skills trust P``), else
    ``InvalidInput`` with the rule."""
    try:
        return _publisher(text)
    except _Bad as exc:
        raise InvalidInput(exc.message, exc.hint) from None


def parse_public_key(text: str) -> str:
    """The key of ``palyra skills trust P --public-key KEY``, as the store keeps it: standard
    padded base64 of the 32 raw bytes.

    Accepted as people have keys at hand: base64 of the 32 raw bytes in the standard or the
    URL-safe alphabet, padded or not, with surrounding whitespace; or the base64 body of the
    DER public key ``openssl pkey -pubout`` prints (with or without its PEM lines), of which
    the raw key is the last 32 bytes. Anything else is ``InvalidInput`` with a hint."""
    body = text.strip()
    if body.startswith("-----BEGIN"):
        body = "".join(line for line in body.splitlines() if not line.startswith("-----"))
    body = re.sub(r"\s+", "", body).translate(str.maketrans("-_", "+/")).rstrip("=")
    how = (
        "give the base64 of the 32 raw bytes of the publisher's Ed25519 public key "
        "(44 characters ending in '=')"
    )
    if not body or len(body) > 200 or re.fullmatch(r"[A-Za-z0-9+/]+", body) is None:
        raise InvalidInput(f"the public key {describe(text.strip())} is not base64", how)
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"the public key {describe(text.strip())} is not base64", how) from None
    if len(raw) == len(_ED25519_SPKI_PREFIX) + PUBLIC_KEY_BYTES and raw.startswith(
        _ED25519_SPKI_PREFIX
    ):
        raw = raw[len(_ED25519_SPKI_PREFIX) :]
    if len(raw) != PUBLIC_KEY_BYTES:
        raise InvalidInput(
            f"the public key decodes to {len(raw)} bytes; an Ed25519 public key is "
            f"{PUBLIC_KEY_BYTES}",
            how,
        )
    return base64.b64encode(raw).decode("ascii")


def parse_installed_skill(
    skill_id: str,
    version: str,
    publisher: str,
    artifact_sha256: str,
    signature: str,
    *,
    current: bool = True,
) -> InstalledSkill:
    """An entry from command-line values (``palyra skills install``), checked exactly as the
    file's entries are; ``InvalidInput`` naming the option otherwise."""
    values: list[str] = []
    for what, check, v in (
        ("--id", _skill_id, skill_id),
        ("--version", _version, version),
        ("--publisher", _publisher, publisher),
        ("the artifact's SHA-256", _sha256, artifact_sha256),
        ("--signature", _signature, signature.strip()),
    ):
        try:
            values.append(check(v))
        except _Bad as exc:
            raise InvalidInput(f"{what}: {exc.message}", exc.hint) from None
    sid, ver, pub, sha, sig = values
    return InstalledSkill(sid, ver, pub, sha, sig, current)


# --- validating a file -------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class SkillsFileResult(Generic[T]):
    """The outcome of validating one skills file: the value when there are no errors."""

    value: T | None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there are no errors (then ``value`` is set)."""
        return not self.errors


def validate_index_text(data: bytes | str, filename: str) -> SkillsFileResult[InstalledIndex]:
    """Validate a whole installed-index.json and report every error (SPEC §2.4's format).

    ``filename`` is for the caller's messages only (``format_issue``). Never raises: a bug
    in validation makes the document invalid with an issue that says so, so a daemon
    reloading the file keeps its last good index."""
    del filename
    return _validate(data, _INDEX_ROOT_KEYS, _check_index)


def validate_trust_text(data: bytes | str, filename: str) -> SkillsFileResult[TrustStore]:
    """Validate a whole trust-store.json and report every error (SPEC §2.4's format).
    Never raises, like ``validate_index_text``."""
    del filename
    return _validate(data, _TRUST_ROOT_KEYS, _check_trust)


def load_index(path: Path) -> SkillsFileResult[InstalledIndex]:
    """Read and validate installed-index.json; a missing file is the empty index."""
    data = _read(path)
    if data is None:
        return SkillsFileResult(InstalledIndex())
    if isinstance(data, Issue):
        return SkillsFileResult(None, [data])
    return validate_index_text(data, str(path))


def load_trust(path: Path) -> SkillsFileResult[TrustStore]:
    """Read and validate trust-store.json; a missing file is the empty store."""
    data = _read(path)
    if data is None:
        return SkillsFileResult(TrustStore())
    if isinstance(data, Issue):
        return SkillsFileResult(None, [data])
    return validate_trust_text(data, str(path))


def _read(path: Path) -> bytes | Issue | None:
    """The file's bytes, the issue that prevents reading them, or None when it is missing
    (through definitions' reader: a FIFO or a device is an invalid document, never a hang)."""
    read = read_document(path, MAX_SKILLS_FILE_BYTES)
    if read.missing:
        return None
    if read.issue is not None or read.data is None:
        return read.issue or file_issue("cannot read the file")
    return read.data


def _too_large(size: int) -> Issue:
    return file_issue(
        f"file is {size} bytes; the limit is {MAX_SKILLS_FILE_BYTES} bytes "
        f"({MAX_SKILLS_FILE_BYTES >> 20} MiB)"
    )


def _decode(data: bytes | str) -> str | Issue:
    """``decode_document`` (UTF-8, byte order mark) under this file's smaller size limit."""
    if len(data) > MAX_SKILLS_FILE_BYTES:  # a str has at least as many bytes as characters
        return _too_large(
            len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        )
    text = decode_document(data)
    if isinstance(text, str) and isinstance(data, str) and not text.isascii():
        size = len(data.encode("utf-8"))  # decode_document checked it encodes
        if size > MAX_SKILLS_FILE_BYTES:
            return _too_large(size)
    return text


_Check = Callable[[Checker, Any, jsonpos.Path], T | None]


def _validate(
    data: bytes | str, root_keys: tuple[str, str], check: _Check[T]
) -> SkillsFileResult[T]:
    try:
        text = _decode(data)
        if isinstance(text, Issue):
            return SkillsFileResult(None, [text])
        try:
            rd = jsonpos.Reader(text)
            pos = rd.ws(0)
            if pos >= len(text):
                raise rd.error("the document is empty (expected a JSON object)", pos)
            root, end = rd.value(pos)
            end = rd.ws(end)
            if end < len(text):
                raise rd.error("unexpected data after the JSON document", end)
            _, dups = jsonpos.locate_offsets(text, [], find_duplicates=True)
        except jsonpos.JsonSyntaxError as exc:
            return SkillsFileResult(
                None, [Issue("", exc.line, exc.column, f"invalid JSON: {exc.message}")]
            )
        cx = Checker(0, {}, "UTC")
        for path, offset in dups:
            cx.err_at(offset, path, f'duplicate key "{path[-1]}"' + _DUP_KEY_NOTE)
        value = _check_root(cx, root, pos, root_keys, check)
        if not (cx.errors or cx.warnings):
            return SkillsFileResult(value)
        errors = positioned(text, cx.errors, None)
        warnings = positioned(text, cx.warnings, None)
        return SkillsFileResult(None if errors else value, errors, warnings)
    except Exception as exc:
        return SkillsFileResult(None, [file_issue(internal_error(exc))])


def _example(root_keys: tuple[str, str]) -> str:
    return f'{{"schema_version": {SKILLS_SCHEMA_VERSION}, "{root_keys[1]}": ' + (
        "[]}" if root_keys[1] == "skills" else "{}}"
    )


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
    close = hint(key, known)
    return f'unknown key "{key}"{close}; the keys are {", ".join(known)}'


def _check_root(
    cx: Checker, root: object, root_at: int, root_keys: tuple[str, str], check: _Check[T]
) -> T | None:
    if type(root) is not dict:
        cx.err_at(
            root_at,
            (),
            f"the document must be a JSON object, got {describe(root)} "
            f"(like {_example(root_keys)})",
        )
        return None
    for key in root:
        if key not in root_keys:
            cx.err((key,), _unknown_key(key, root_keys), at_key=True)
    if "schema_version" not in root:
        cx.missing((), "schema_version", f' (add "schema_version": {SKILLS_SCHEMA_VERSION})')
    else:
        v = root["schema_version"]
        if type(v) is not int or v != SKILLS_SCHEMA_VERSION:
            cx.err(
                ("schema_version",),
                f"must be {SKILLS_SCHEMA_VERSION}, got {describe(v)} (the only version "
                "this palyra reads)",
            )
    main = root_keys[1]
    if main not in root:
        empty = "[]" if main == "skills" else "{}"
        cx.missing((), main, f' (add "{main}": {empty} when there are none)')
        return None
    value = check(cx, root[main], (main,))
    return None if cx.errors else value


def _field(
    cx: Checker, o: dict[str, Any], key: str, p: jsonpos.Path, check: Callable[[Any], T]
) -> T | None:
    try:
        return check(o[key])
    except _Bad as exc:
        cx.err((*p, key), exc.text())
        return None


def _check_index(cx: Checker, v: object, p: jsonpos.Path) -> InstalledIndex | None:
    if type(v) is not list:
        cx.err(
            p,
            f"must be an array of installed skills, got {describe(v)} "
            '(like [{"skill_id": "...", "version": "...", ...}])',
        )
        return None
    if len(v) > MAX_SKILLS:
        cx.err(p, f"too many skills: {len(v)} (the limit is {MAX_SKILLS}; uninstall old versions)")
        return None
    skills: list[InstalledSkill] = []
    first_at: dict[tuple[str, str], int] = {}
    currents: dict[str, list[int]] = {}  # skill id → indexes of its current entries
    settled: dict[str, bool] = {}  # skill id → whether every entry's "current" is a bool
    first_of: dict[str, int] = {}
    for i, item in enumerate(v):
        ip: jsonpos.Path = (*p, i)
        if type(item) is not dict:
            cx.err(ip, f"must be an object, got {describe(item)} (one installed skill version)")
            continue
        for key in item:
            if key not in _SKILL_KEY_SET:
                cx.err((*ip, key), _unknown_key(key, _SKILL_KEYS), at_key=True)
        ok = True
        for key in _SKILL_KEYS:
            if key not in item:
                cx.missing(ip, key)
                ok = False
        sid, ver, cur = item.get("skill_id"), item.get("version"), item.get("current")
        # The uniqueness rules use the raw values, so an entry with another error (a bad
        # hash) still counts: its id needs no spurious "no current version" error.
        if type(sid) is str:
            first_of.setdefault(sid, i)
            j = first_at.setdefault((sid, ver), i) if type(ver) is str else i
            if j != i:  # reported once, as a duplicate: not again as a second current
                vp: jsonpos.Path = (*ip, "version")
                cx.errors.append(
                    Finding(
                        vp,
                        f'duplicate entry for skill "{sid}" version "{ver}": remove one '
                        f"(first listed at skills[{j}]",
                        vp,
                        False,
                        (*p, j, "version"),
                    )
                )
            elif type(cur) is bool:
                settled.setdefault(sid, True)
                if cur:
                    currents.setdefault(sid, []).append(i)
            else:
                settled[sid] = False
        if not ok:
            continue
        values = (
            _field(cx, item, "skill_id", ip, _skill_id),
            _field(cx, item, "version", ip, _version),
            _field(cx, item, "publisher", ip, _publisher),
            _field(cx, item, "artifact_sha256", ip, _sha256),
            _field(cx, item, "signature", ip, _signature),
        )
        current = _field(cx, item, "current", ip, _current)
        if current is None:
            continue
        sid_, ver_, pub_, sha_, sig_ = values
        if sid_ and ver_ and pub_ and sha_ and sig_:
            skills.append(InstalledSkill(sid_, ver_, pub_, sha_, sig_, current))
    for sid, i in first_of.items():
        found = currents.get(sid, [])
        if not found and settled.get(sid, False):
            cx.err(
                (*p, i, "current"),
                f'no current version of skill "{sid}": set "current": true on one',
            )
        elif len(found) > 1:
            # An entry may lack its version (reported already): described, never indexed.
            shown = [f"{describe(v[k].get('version'))} (skills[{k}])" for k in found[:5]]
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            cx.err(
                (*p, found[1], "current"),
                f'skill "{sid}" has {len(found)} current versions: {", ".join(shown)}{more}; '
                'set "current": false on all but one',
            )
    return InstalledIndex(tuple(skills)) if not cx.errors else None


def _check_trust(cx: Checker, v: object, p: jsonpos.Path) -> TrustStore | None:
    if type(v) is not dict:
        cx.err(
            p,
            f"must be an object of publishers, got {describe(v)} "
            '(like {"name": {"ed25519_public_key": "<base64>"}})',
        )
        return None
    if len(v) > MAX_PUBLISHERS:
        cx.err(p, f"too many publishers: {len(v)} (the limit is {MAX_PUBLISHERS})")
        return None
    out: list[Publisher] = []
    for name, entry in v.items():
        ep: jsonpos.Path = (*p, name)
        valid_name = True
        try:
            _publisher(name)
        except _Bad as exc:
            cx.err(ep, exc.text(), at_key=True)
            valid_name = False
        if type(entry) is not dict:
            cx.err(
                ep,
                f"must be an object, got {describe(entry)} "
                '(like {"ed25519_public_key": "<base64 of 32 bytes>"})',
            )
            continue
        for key in entry:
            if key not in _PUBLISHER_KEY_SET:
                cx.err((*ep, key), _unknown_key(key, _PUBLISHER_KEYS), at_key=True)
        if "ed25519_public_key" not in entry:
            cx.missing(ep, "ed25519_public_key", " (the base64 of the publisher's 32-byte key)")
            continue
        key = _field(cx, entry, "ed25519_public_key", ep, _public_key)
        if valid_name and key is not None:
            out.append(Publisher(name, key))
    return TrustStore(tuple(out)) if not cx.errors else None
