"""A fuzzer for definitions.json (issue 9 items 2 and 11): structured mutations of a valid,
realistic document, thrown at the validator, the loader and ``palyra routines validate``.

The property: validation never raises; every issue it reports formats (``format_issue``) and
encodes (UTF-8, orjson); a document is invalid exactly when it has errors; what it accepts can
be hashed, snapshotted for a run and written back (the daemon's apply path and the CLI's writer)
and reads back the same; through the real CLI, ``--json`` exits 0 or 2 with exactly one JSON
document on stdout and no traceback on stderr.

Every mutant is drawn from its own generator, seeded with ``"{seed}:{index}"``, so one failure
is reproduced alone with ``--seed S --index I``:

    .venv/bin/python -m tests.fuzz_definitions --mutants 10000 --seed 1 [--cli 50]
    .venv/bin/python -m tests.fuzz_definitions --seed 1 --index 4242 --dump /tmp/mutant.json

``tests/test_definitions_fuzz.py`` runs a small slice of it in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from palyrad.domain.runs import run_spec
from routines.definitions_file import dumps, load
from routines.jitter import fire_at_ms
from routines.schedules import next_fire
from routines.validate import ValidationResult, format_issue, parse_routine, validate_text

NOW_MS = 1_774_000_000_000  # 2026-03-20T09:46:40Z
SECRET_ENV = "PALYRA_FUZZ_SECRET"
ENV = {SECRET_ENV: "s3cret"}
BIN = Path(sys.executable).parent


# --- the valid document --------------------------------------------------------------------


def seed_document(base: str = "/tmp", tick_ms: int = 60_000) -> dict[str, Any]:
    """A valid document using every trigger kind, schedule type, action kind and policy.

    ``base`` is an existing directory the file-watch and file-delivery paths live in; the
    ``heartbeat`` routine runs ``true`` every ``tick_ms``.
    """
    return {
        "schema_version": 1,
        "routines": [
            {
                "id": "nightly-backup",
                "name": "Nightly backup",
                "enabled": True,
                "trigger": {
                    "kind": "schedule",
                    "schedule": {
                        "type": "cron",
                        "expr": "0 30 2 * * *",
                        "timezone": "Europe/Prague",
                    },
                },
                "action": {
                    "kind": "command",
                    "argv": ["/usr/bin/rsync", "-a", "--delete", f"{base}/src/", f"{base}/dst/"],
                    "cwd": base,
                    "env": {"RSYNC_RSH": "ssh -p 2222", "LANG": "C.UTF-8"},
                    "timeout_ms": 7_200_000,
                },
                "concurrency": "forbid",
                "misfire": {"policy": "catch_up", "grace_ms": 300_000, "max_catch_up_runs": 3},
                "jitter_ms": 5_000,
                "retry": {"max_attempts": 3, "backoff_ms": 1_000, "max_backoff_ms": 60_000},
                "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Prague"},
                "approval": "before_enable",
                "cooldown_ms": 60_000,
                "delivery": {
                    "mode": "channel",
                    "channel": "ops",
                    "silent_policy": "failure_only",
                    "failure_channel": "alerts",
                },
                "tags": ["backup", "nightly"],
            },
            {
                "id": "heartbeat",
                "trigger": {
                    "kind": "schedule",
                    "schedule": {
                        "type": "every",
                        "interval_ms": tick_ms,
                        "anchor": "2026-01-01T00:00:00.000Z",
                    },
                },
                "action": {"kind": "command", "shell": "true", "timeout_ms": 30_000},
                "concurrency": "queue_one",
                "delivery": {"mode": "file", "path": f"{base}/heartbeat.log"},
            },
            {
                "id": "dentist-reminder",
                "name": "Zubař — připomínka ☕",
                "trigger": {
                    "kind": "schedule",
                    "schedule": {"type": "at", "at": "2031-06-01T09:00:00+02:00"},
                },
                "action": {"kind": "prompt", "prompt": "Remind me about the dentist at 10:00."},
                "approval": "before_first_run",
                "delivery": {"mode": "logs_only"},
            },
            {
                "id": "weekday-standup",
                "trigger": {
                    "kind": "schedule",
                    "schedule": {"type": "cron", "expr": "0 9 * * MON-FRI"},
                },
                "action": {
                    "kind": "prompt",
                    "prompt": "Draft my stand-up notes.",
                    "timeout_ms": 600_000,
                },
                "misfire": {"policy": "skip"},
                "enabled": False,
            },
            {
                "id": "weekly-report",
                "trigger": {"kind": "manual"},
                "action": {
                    "kind": "skill",
                    "skill_id": "report.weekly",
                    "args": ["--format", "md"],
                },
                "concurrency": "replace",
            },
            {
                "id": "inbox-watch",
                "trigger": {
                    "kind": "file_watch",
                    "paths": [base],
                    "patterns": ["*.pdf", "*.PDF"],
                    "ignore": ["*.part"],
                    "events": ["created", "moved"],
                    "recursive": False,
                    "debounce_ms": 2_000,
                },
                "action": {"kind": "command", "argv": ["/bin/echo", "new file"]},
                "concurrency": "allow",
            },
            {
                "id": "deploy-webhook",
                "trigger": {"kind": "webhook", "secret_env": SECRET_ENV},
                "action": {
                    "kind": "command",
                    "shell": 'echo "$PALYRA_TRIGGER_PAYLOAD"',
                    "env": {"DEPLOY_ENV": "staging"},
                },
                "retry": {"max_attempts": 2},
            },
            {
                "id": "on-login",
                "trigger": {"kind": "system_event", "event": "operator.login"},
                "action": {"kind": "prompt", "prompt": "Summarise what happened overnight."},
                "cooldown_ms": 3_600_000,
            },
            {
                "id": "git-post-commit",
                "trigger": {"kind": "hook", "hook_id": "post-commit", "event": "commit"},
                "action": {"kind": "command", "argv": ["/usr/bin/env", "true"]},
                "quiet_hours": {"start": "23:30", "end": "06:15"},
            },
        ],
    }


# --- serializing mutated trees -------------------------------------------------------------


class Raw(str):
    """Text put into the document as it is (deep nesting, numbers JSON cannot spell)."""


class Pairs(list[tuple[str, Any]]):
    """An object as a list of members, so that a key can repeat."""


def to_json(v: Any, ascii_only: bool) -> str:
    """The JSON text of a tree that may hold ``Raw`` fragments and ``Pairs`` objects."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, (dict, Pairs)):
        items = v.items() if isinstance(v, dict) else v
        return (
            "{"
            + ", ".join(f"{to_json(k, ascii_only)}: {to_json(x, ascii_only)}" for k, x in items)
            + "}"
        )
    if isinstance(v, list):
        return "[" + ", ".join(to_json(x, ascii_only) for x in v) + "]"
    return json.dumps(v, ensure_ascii=ascii_only)


Slot = tuple[Any, Any]  # (container, key or index) of one value in the tree


def slots(tree: Any) -> list[Slot]:
    """Every value in the tree, as where it sits (the root excluded)."""
    out: list[Slot] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Pairs):
            continue  # already mutated (a repeated key): left as it is
        if isinstance(node, dict):
            for k, v in node.items():
                out.append((node, k))
                stack.append(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.append((node, i))
                stack.append(v)
    return out


def objects(tree: Any) -> list[dict[str, Any]]:
    """Every object in the tree, the root included."""
    return [tree] + [c[k] for c, k in slots(tree) if isinstance(c[k], dict)]


def string_slots(tree: Any) -> list[Slot]:
    return [(c, k) for c, k in slots(tree) if isinstance(c[k], str)]


# --- what mutations put in -------------------------------------------------------------------

ANY_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.5,
    4.0,
    "",
    "x",
    "0",
    "true",
    "null",
    [],
    {},
    [1, "a", None],
    {"a": {"b": []}},
    [[[]]],
    {"kind": "manual"},
    {"X": {"a": 1}},  # issue 9 item 2, one level down
]

NASTY_STRINGS: list[str] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "\t\r",
    "\u2028",
    "\ufeff",
    "é",
    "😀",
    "\U0010ffff",
    "\ud800",
    "\udfff",
    "a\udcffb",
    "\ud83d",
    "\ude00x",
    "../../etc/passwd",
    "~",
    "~root/x",
    "relative/path",
    "/",
    "*",
    "**/*",
    "[",
    "\\",
    '"',
    "${HOME}",
    "$(reboot)",
    "%s%n",
    "0 25 * * *",
    "* * * * * * *",
    "@reboot",
    "@hourly",
    "0 0 30 2 *",
    "L W #",
    "5L",
    "MON#6",
    "*/0 * * * *",
    "1-0 * * * *",
    "60 * * * * *",
    "0 0 LW * *",
    "0 0 32W * *",
    "0 0 * * 8",
    "Mars/Phobos",
    "utc",
    "Europe/Prague ",
    "EST5EDT",
    "../../../etc/localtime",
    "/etc/localtime",
    "2026-13-45T99:99:99Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2026-03-29T02:30:00",
    "2026-03-29T02:30:00+25:00",
    "2026-03-29T02:30:00.123456789123Z",
    "1970-01-01T00:00:00Z",
    "-1",
    "1e400",
    "NaN",
    "queue(1)",
    "Queue-One",
    "FORBID",
    "catch-up",
    "Schedule",
    "COMMAND",
    "file-watch",
    "before-enable",
    "logs-only",
    "24:00",
    "23:60",
    "7:00",
    "00:00",
    "A",
    "-a",
    "a..b",
    "a" * 129,
    "x=y",
    "1ABC",
]

NUMBERS: list[str] = [
    "1e400",
    "-1e400",
    "1e-400",
    "5e-324",
    "-0",
    "-0.0",
    "0e0",
    "1E3",
    "1000.0",
    str(2**63),
    str(2**64 - 1),
    str(2**70),
    str(-(2**70)),
    "1" + "0" * 400,
    "9" * 4300,
    "9" * 4301,
    "9" * 20_000,
    "0." + "0" * 5000 + "1",
    "NaN",
    "Infinity",
    "-Infinity",
    "01",
    "+1",
    ".5",
    "0x10",
    "1_000",
    "nan",
    "--1",
    "1e",
]

TOKENS: list[str] = [
    ",",
    "]",
    "}",
    "[",
    "{",
    '"',
    ":",
    "\\",
    "\\u",
    "\\ud800",
    "\\udc00",
    "\\uZZZZ",
    "NaN",
    "/*c*/",
    "//",
    "\x00",
    "\u00a0",
    "\x0c",
    "\t",
    "\r\n",
    "true",
    "1e999",
    "-",
    "'",
    ",,",
    "\ufeff",
]

INVALID_UTF8: list[bytes] = [
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xc3",
    b"\xc3(",
    b"\xe2\x82",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    b"\xc0\x80",  # overlong NUL
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf8\x88\x80\x80\x80",
]


def nested(rng: random.Random) -> Raw:
    depth = rng.choice([50, 999, 1_000, 5_000, 10_000, 100_000])
    shape = rng.randrange(4)
    if shape == 0:
        return Raw("[" * depth + "]" * depth)
    if shape == 1:
        return Raw('{"a": ' * depth + "1" + "}" * depth)
    if shape == 2:
        return Raw("[" * depth)  # never closed
    return Raw('[{"kind": ' * depth + "null" + "}]" * depth)


def with_surrogate(s: str, rng: random.Random) -> str:
    lone = rng.choice(["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00"])
    i = rng.randint(0, len(s))
    return s[:i] + lone + s[i:]


# --- mutations -------------------------------------------------------------------------------
# A structural mutation edits the tree in place; a text mutation edits the serialized bytes.


def m_type_swap(rng: random.Random, tree: Any) -> Any:
    if rng.random() < 0.02:
        return copy.deepcopy(rng.choice(ANY_VALUES))  # the whole document
    c, k = rng.choice(slots(tree))
    old = c[k]
    choices = [v for v in ANY_VALUES if type(v) is not type(old)]
    c[k] = copy.deepcopy(rng.choice(choices))
    return tree


def m_delete_key(rng: random.Random, tree: Any) -> Any:
    obj = rng.choice([o for o in objects(tree) if o])
    del obj[rng.choice(list(obj))]
    return tree


def m_unknown_key(rng: random.Random, tree: Any) -> Any:
    obj = rng.choice(objects(tree))
    keys = list(obj) or ["kind"]
    base = rng.choice(keys)
    key = rng.choice(
        [base + "s", base[:-1], base.upper(), base.replace("_", "-"), "x" + base, "", " ", "é"]
    )
    obj[key] = copy.deepcopy(rng.choice(ANY_VALUES))
    return tree


def m_nasty_string(rng: random.Random, tree: Any) -> Any:
    targets = string_slots(tree) if rng.random() < 0.7 else slots(tree)
    c, k = rng.choice(targets)
    c[k] = rng.choice(NASTY_STRINGS)
    return tree


def m_surrogate_value(rng: random.Random, tree: Any) -> Any:
    for _ in range(rng.randint(1, 3)):
        c, k = rng.choice(string_slots(tree))
        c[k] = with_surrogate(c[k], rng)
    return tree


def m_surrogate_key(rng: random.Random, tree: Any) -> Any:
    obj = rng.choice([o for o in objects(tree) if o])
    old = rng.choice(list(obj))
    new = with_surrogate(old, rng)
    value = obj.pop(old)
    obj[new] = value
    return tree


def m_deep_nesting(rng: random.Random, tree: Any) -> Any:
    c, k = rng.choice(slots(tree))
    c[k] = nested(rng)
    return tree


def m_huge_number(rng: random.Random, tree: Any) -> Any:
    numeric = [(c, k) for c, k in slots(tree) if type(c[k]) is int]
    c, k = rng.choice(numeric if numeric and rng.random() < 0.7 else slots(tree))
    c[k] = Raw(rng.choice(NUMBERS))
    return tree


def m_duplicate_key(rng: random.Random, tree: Any) -> Any:
    c, k = rng.choice([(c, k) for c, k in slots(tree) if isinstance(c[k], dict) and c[k]])
    members = list(c[k].items())
    key, value = rng.choice(members)
    again = copy.deepcopy(value) if rng.random() < 0.5 else rng.choice(ANY_VALUES)
    members.insert(rng.randint(0, len(members)), (key, again))
    c[k] = Pairs(members)
    return tree


def m_duplicate_routine(rng: random.Random, tree: Any) -> Any:
    routines = tree["routines"]
    twin = copy.deepcopy(rng.choice(routines))
    routines.insert(rng.randint(0, len(routines)), twin)
    return tree


def m_many_routines(rng: random.Random, tree: Any) -> Any:
    routines = tree["routines"]
    n = rng.choice([100, 1_000, 3_000])
    out = []
    for i in range(n):
        r = copy.deepcopy(routines[i % len(routines)])
        if rng.random() < 0.999:
            r["id"] = f"{r['id']}-{i}"
        out.append(r)
    tree["routines"] = out
    return tree


CRON_ATOMS = [
    "*", "?", "L", "W", "LW", "#", "/", "-", ",", "MON", "fri", "JAN", "DEC", "SUN", "0", "1",
    "7", "8", "12", "13", "23", "24", "29", "30", "31", "32", "59", "60", str(2**70), "-1",
    "5L", "15W", "1#5", "MON#1", "6#5", "L-3", "0/0", "*/1000", "1-31/7", "@daily", "",
]  # fmt: skip


def m_cron_expr(rng: random.Random, tree: Any) -> Any:
    """A random cron-ish expression in a cron schedule (valid ones are kept too: their next
    fire is computed, as the scheduler does when it applies them)."""
    crons = [o for o in objects(tree) if o.get("type") == "cron" and isinstance(o.get("expr"), str)]
    fields = rng.choice([1, 5, 5, 6, 6, 7])
    expr = " ".join(
        "".join(rng.choice(CRON_ATOMS) for _ in range(rng.randint(1, 3))) for _ in range(fields)
    )
    if crons:
        rng.choice(crons)["expr"] = expr
    return tree


def m_long_string(rng: random.Random, tree: Any) -> Any:
    size = rng.choice([1_000, 17_000, 100_000, 1_000_000])
    s = rng.choice(["x", "é", "😀", "\\", '"', "\n"]) * size
    if rng.random() < 0.2:
        obj = rng.choice(objects(tree))
        obj[s] = 1
    else:
        c, k = rng.choice(string_slots(tree))
        c[k] = s
    return tree


STRUCTURAL: dict[str, Callable[[random.Random, Any], Any]] = {
    "type_swap": m_type_swap,
    "delete_key": m_delete_key,
    "unknown_key": m_unknown_key,
    "nasty_string": m_nasty_string,
    "surrogate_value": m_surrogate_value,
    "surrogate_key": m_surrogate_key,
    "deep_nesting": m_deep_nesting,
    "huge_number": m_huge_number,
    "duplicate_key": m_duplicate_key,
    "duplicate_routine": m_duplicate_routine,
    "long_string": m_long_string,
    "cron_expr": m_cron_expr,
}


def t_truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def t_byte_flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] = rng.randrange(256) if rng.random() < 0.5 else b[i] ^ (1 << rng.randrange(8))
    return bytes(b)


def t_invalid_utf8(rng: random.Random, data: bytes) -> bytes:
    quotes = [i + 1 for i, c in enumerate(data) if c == 0x22]
    i = rng.choice(quotes) if quotes and rng.random() < 0.7 else rng.randint(0, len(data))
    return data[:i] + rng.choice(INVALID_UTF8) + data[i:]


def t_bom(rng: random.Random, data: bytes) -> bytes:
    bom = b"\xef\xbb\xbf"
    text = data.decode("utf-8", "surrogatepass")
    variant = rng.randrange(7)
    if variant == 0:
        return bom + data
    if variant == 1:
        return bom + bom + data
    if variant == 2:
        return b"  " + bom + data
    if variant == 3:
        return text.encode("utf-16", "surrogatepass")  # with its own BOM
    if variant == 4:
        return text.encode("utf-32", "surrogatepass")
    if variant == 5:
        return b"\xfe\xff" + data
    i = rng.randint(0, len(data))
    return data[:i] + bom + data[i:]


def t_splice(rng: random.Random, data: bytes) -> bytes:
    variant = rng.randrange(3)
    i = rng.randint(0, len(data))
    if variant == 0:
        return data[:i] + rng.choice(TOKENS).encode("utf-8", "surrogatepass") + data[i:]
    j = min(len(data), i + rng.randint(1, 64))
    if variant == 1:
        return data[:i] + data[j:]
    k = rng.randint(0, len(data))
    return data[:k] + data[i:j] + data[k:]


def t_tiny(rng: random.Random, data: bytes) -> bytes:
    return rng.choice(
        [
            b"",
            b" ",
            b"\n\n",
            b"null",
            b"[]",
            b"{}",
            b'""',
            b"0",
            b'{"schema_version": 1}',
            b'{"routines": []}',
            b'{"schema_version": 1, "routines": {}}',
            b'{"schema_version": 1, "routines": [null]}',
            b'{"schema_version": 1, "routines": [[]]}',
            b'{"schema_version": true, "routines": []}',
            b'{"schema_version": 1.0, "routines": []}',
            b'{"schema_version": 1, "routines": []} {}',
            b'{"schema_version": 1, "routines": [],}',
            b"\xef\xbb\xbf",
            b"\x00",
        ]
    )


TEXTUAL: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "truncate": t_truncate,
    "byte_flip": t_byte_flip,
    "invalid_utf8": t_invalid_utf8,
    "bom": t_bom,
    "splice": t_splice,
    "tiny": t_tiny,
}

NON_REGULAR = ("directory", "fifo", "socket", "device", "dangling_symlink", "symlink_loop")

# How often each kind is drawn (the rest of the weight is spread evenly).
KINDS: dict[str, float] = {
    **dict.fromkeys(STRUCTURAL, 1.0),
    "many_routines": 0.1,
    "combo": 2.0,
    **dict.fromkeys(TEXTUAL, 1.0),
    "non_regular": 0.3,
}


@dataclass(frozen=True)
class Mutant:
    """One input: bytes (``data``) or something that is not a file (``special``)."""

    seed: int
    index: int
    kind: str
    data: bytes = b""
    special: str | None = None
    as_text: bool = False  # handed to validate_text as str (decoded with surrogateescape)


def _serialize(rng: random.Random, tree: Any) -> bytes:
    # ensure_ascii=True writes lone surrogates as \ud800 escapes, as an operator would;
    # without it they come out raw and are encoded as (invalid) UTF-8 bytes.
    text = to_json(tree, ascii_only=rng.random() < 0.6)
    if rng.random() < 0.5:
        # Pretty-print the way orjson would, so that line and column numbers vary.
        with contextlib.suppress(ValueError, RecursionError):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")  # raw lone surrogates: invalid UTF-8


def make_mutant(seed: int, index: int, base: str = "/tmp") -> Mutant:
    """The ``index``-th mutant of run ``seed``: the same arguments give the same bytes."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    if kind == "non_regular":
        return Mutant(seed, index, kind, special=rng.choice(NON_REGULAR))
    tree = seed_document(base)
    if kind in STRUCTURAL:
        tree = STRUCTURAL[kind](rng, tree)
        data = _serialize(rng, tree)
    elif kind == "many_routines":
        tree = m_many_routines(rng, tree)
        data = _serialize(rng, tree)
    elif kind == "combo":
        for name in rng.choices(list(STRUCTURAL), k=rng.randint(2, 4)):
            if not isinstance(tree, dict) or not isinstance(tree.get("routines"), list):
                break
            with contextlib.suppress(IndexError, KeyError, TypeError):
                tree = STRUCTURAL[name](rng, tree)
        data = _serialize(rng, tree)
        if rng.random() < 0.3:
            data = TEXTUAL[rng.choice(["byte_flip", "invalid_utf8", "splice"])](rng, data)
    else:
        data = TEXTUAL[kind](rng, _serialize(rng, tree))
    return Mutant(seed, index, kind, data=data, as_text=rng.random() < 0.1)


@contextlib.contextmanager
def placed(mutant: Mutant, directory: Path) -> Iterator[Path]:
    """``mutant`` at ``directory/definitions.json`` (a file, or the thing it names)."""
    path = directory / "definitions.json"
    sock: socket.socket | None = None
    kind = mutant.special
    if kind is None:
        path.write_bytes(mutant.data)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "dangling_symlink":
        path.symlink_to(directory / "nowhere.json")
    elif kind == "symlink_loop":
        path.symlink_to(path)
    try:
        yield path
    finally:
        if sock is not None:
            sock.close()
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)


# --- the property ----------------------------------------------------------------------------


@dataclass
class Failure:
    """A mutant that broke the property: where (stage) and how."""

    mutant: Mutant
    stage: str
    error: str  # exception type and message
    where: str  # innermost project frame

    @property
    def signature(self) -> tuple[str, str, str]:
        return (self.stage, self.error.split(":", 1)[0], self.where)

    def describe(self) -> str:
        m = self.mutant
        return (
            f"FAIL seed={m.seed} index={m.index} kind={m.kind} stage={self.stage}: "
            f"{self.error} [{self.where}]"
        )


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/site-packages/" not in f.filename] or frames
    if not ours:
        return "?"
    f = ours[-1]
    return f"{Path(f.filename).name}:{f.lineno} {f.name}"


class PropertyBroken(AssertionError):
    pass


def check_result(result: ValidationResult, name: str) -> None:
    """Issues format and encode; invalid exactly when there are errors; accepted definitions
    can be hashed, snapshotted, written and read back the same."""
    issues = [*result.errors, *result.warnings]
    for issue in issues:
        line = format_issue(name, issue)
        line.encode("utf-8")
        orjson.dumps(line)
        if "Traceback" in issue.message:
            raise PropertyBroken(f"a traceback in a message: {issue.message[:200]!r}")
    orjson.dumps(
        {
            "ok": result.ok,
            "errors": [vars(i) for i in result.errors],
            "warnings": [vars(i) for i in result.warnings],
        }
    )
    if (result.definitions is None) != bool(result.errors):
        raise PropertyBroken(
            f"definitions {'missing' if result.definitions is None else 'given'} "
            f"with {len(result.errors)} errors"
        )
    defs = result.definitions
    if defs is None:
        return
    for r in defs.routines:  # what the scheduler's apply does with them
        r.content_hash()
        r.schedule_key()
        run_spec(r)
        if r.schedule is not None:
            nominal = next_fire(r.schedule, NOW_MS, first_seen_ms=NOW_MS)
            if nominal is not None:
                fire_at_ms(r.id, nominal, r.jitter_ms)
    again = validate_text(dumps(defs), filename=name, now_ms=NOW_MS, env=ENV)
    if again.definitions != defs:
        raise PropertyBroken(
            "the written definitions do not read back the same: "
            + "; ".join(i.message[:120] for i in again.errors[:3])
        )


def _routine_objects(data: bytes) -> list[Any]:
    """The routine values of a mutant, when it parses (for ``parse_routine``)."""
    try:
        doc = json.loads(data.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        return []
    if isinstance(doc, dict) and isinstance(doc.get("routines"), list):
        return list(doc["routines"][:12])
    return []


def check_in_process(mutant: Mutant, scratch: Path) -> list[Failure]:
    """Run one mutant through ``validate_text`` or ``load``, and ``parse_routine``."""
    failures: list[Failure] = []
    name = "definitions.json"

    def attempt(stage: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            failures.append(
                Failure(mutant, stage, f"{type(exc).__name__}: {exc}"[:300], _where(exc))
            )

    def through_load() -> None:
        with placed(mutant, scratch) as path:
            result = load(path, now_ms=NOW_MS, env=ENV)
        check_result(result, str(path))

    def through_text() -> None:
        data: bytes | str = mutant.data
        if mutant.as_text:
            data = mutant.data.decode("utf-8", "surrogateescape")
        result = validate_text(data, filename=name, now_ms=NOW_MS, env=ENV)
        check_result(result, name)

    if mutant.special is not None or mutant.index % 20 == 0:
        attempt("load", through_load)
    else:
        attempt("validate_text", through_text)
    for obj in _routine_objects(mutant.data):

        def through_parse_routine(obj: Any = obj) -> None:
            source = json.dumps(obj, indent=2)
            for text in (None, source):
                routine, errors, warnings = parse_routine(
                    obj, now_ms=NOW_MS, env=ENV, source_text=text
                )
                for issue in [*errors, *warnings]:
                    orjson.dumps(format_issue(name, issue))
                if (routine is None) != bool(errors):
                    raise PropertyBroken(f"routine {routine!r:.80} with {len(errors)} errors")

        attempt("parse_routine", through_parse_routine)
    return failures


def check_cli(mutant: Mutant, scratch: Path, *, as_argument: bool) -> list[Failure]:
    """``palyra routines validate [FILE] --json``, on the home's file or on FILE: exit 0 or 2,
    one JSON document on stdout, no traceback on stderr. (A FILE that does not exist, such as
    a dangling symlink, is refused like any missing argument: exit 2 and one error line.)"""
    home = scratch / "home"
    where = scratch if as_argument else home / "routines"
    where.mkdir(parents=True, exist_ok=True)
    with placed(mutant, where) as path:
        proc = subprocess.run(
            [
                str(BIN / "palyra"),
                "--home",
                str(home),
                "routines",
                "validate",
                *([str(path)] if as_argument else []),
                "--json",
            ],
            capture_output=True,
            timeout=60,
            env={**os.environ, SECRET_ENV: "s3cret"},
        )
    problems: list[str] = []
    if b"Traceback" in proc.stderr:
        problems.append("a traceback on stderr")
    if as_argument and mutant.special == "dangling_symlink":
        if proc.returncode != 2 or proc.stdout or not proc.stderr.startswith(b"error: "):
            problems.append("a missing FILE is not refused with one error line")
    else:
        if proc.returncode not in (0, 2):
            problems.append(f"exit {proc.returncode}")
        try:
            doc = orjson.loads(proc.stdout)
            if not (isinstance(doc, dict) and {"ok", "errors", "warnings"} <= doc.keys()):
                problems.append("stdout is not the validate document")
            elif doc["ok"] != (proc.returncode == 0):
                problems.append("ok disagrees with the exit code")
        except orjson.JSONDecodeError:
            problems.append("stdout is not one JSON document")
    if not problems:
        return []
    tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return [Failure(mutant, "cli", "; ".join(problems), tail[0][:200])]


# --- running many ----------------------------------------------------------------------------


@dataclass
class Report:
    """What a run found: mutants by kind, failures, and the slowest mutant."""

    kinds: Counter[str] = field(default_factory=Counter)
    failed_kinds: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    cli_runs: int = 0
    slowest: tuple[float, int, str] = (0.0, -1, "")
    seconds: float = 0.0
    _failing: set[int] = field(default_factory=set)

    def timed(self, mutant: Mutant, elapsed: float) -> None:
        self.kinds[mutant.kind] += 1
        if elapsed > self.slowest[0]:
            self.slowest = (elapsed, mutant.index, mutant.kind)

    def failed(self, mutant: Mutant, failures: list[Failure]) -> None:
        if failures and mutant.index not in self._failing:
            self._failing.add(mutant.index)
            self.failed_kinds[mutant.kind] += 1
        self.failures += failures

    def summary(self) -> str:
        total = sum(self.kinds.values())
        failed = sum(self.failed_kinds.values())
        lines = [
            f"{total} mutants in-process, {self.cli_runs} through the CLI, "
            f"{self.seconds:.1f} s; {failed} failing mutants, {len(self.failures)} failures",
            "by kind (mutants / failing):",
        ]
        for kind, n in sorted(self.kinds.items()):
            lines.append(f"  {kind:18} {n:6} / {self.failed_kinds[kind]}")
        groups: dict[tuple[str, str, str], list[Failure]] = {}
        for f in self.failures:
            groups.setdefault(f.signature, []).append(f)
        if groups:
            lines.append("failures by signature (count, first example):")
        for sig, fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  {len(fs):5}  {' | '.join(sig)}")
            lines.append(f"         {fs[0].describe()}")
        s, i, k = self.slowest
        lines.append(f"slowest mutant: index {i} ({k}), {s * 1000:.0f} ms")
        return "\n".join(lines)


def _cli_picks(drawn: list[tuple[int, str]], count: int) -> list[int]:
    """``count`` indices for the CLI: the first mutant of each kind, then evenly spread."""
    picks: list[int] = []
    seen: set[str] = set()
    for index, kind in drawn:
        if kind not in seen and len(picks) < count:
            seen.add(kind)
            picks.append(index)
    rest = [index for index, _ in drawn if index not in picks]
    step = max(1, len(rest) // max(1, count - len(picks)))
    picks += rest[::step][: count - len(picks)]
    return sorted(picks)


def run(
    seed: int,
    mutants: int,
    *,
    cli: int = 0,
    first: int = 0,
    on_failure: Callable[[Failure], None] | None = None,
) -> Report:
    """Mutants ``first`` … ``first + mutants - 1`` of ``seed`` in-process, and ``cli`` of
    them through the real CLI as well (one of each kind first; four processes at a time)."""
    report = Report()
    t0 = time.monotonic()
    drawn: list[tuple[int, str]] = []

    def record(mutant: Mutant, failures: list[Failure]) -> None:
        report.failed(mutant, failures)
        for f in failures:
            if on_failure is not None:
                on_failure(f)

    with tempfile.TemporaryDirectory(prefix="palyra-fuzz-") as tmp:
        root = Path(tmp)
        (root / "scratch").mkdir()
        for index in range(first, first + mutants):
            mutant = make_mutant(seed, index)
            started = time.monotonic()
            failures = check_in_process(mutant, root / "scratch")
            report.timed(mutant, time.monotonic() - started)
            record(mutant, failures)
            drawn.append((index, mutant.kind))
        picks = [make_mutant(seed, i) for i in _cli_picks(drawn, cli)] if cli else []

        def through_cli(mutant: Mutant) -> list[Failure]:
            scratch = root / f"cli-{mutant.index}"
            scratch.mkdir()
            return check_cli(mutant, scratch, as_argument=mutant.index % 2 == 0)

        with ThreadPoolExecutor(max_workers=4) as pool:
            for mutant, failures in zip(picks, pool.map(through_cli, picks), strict=True):
                report.cli_runs += 1
                record(mutant, failures)
    report.seconds = time.monotonic() - t0
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutants", type=int, default=10_000)
    ap.add_argument("--first", type=int, default=0, help="index of the first mutant")
    ap.add_argument("--cli", type=int, default=0, help="how many also go through the CLI")
    ap.add_argument("--index", type=int, help="only this mutant (reproduce a failure)")
    ap.add_argument("--dump", type=Path, help="with --index: write the mutant's bytes here")
    args = ap.parse_args()
    if args.index is not None:
        mutant = make_mutant(args.seed, args.index)
        print(f"kind={mutant.kind} special={mutant.special} bytes={len(mutant.data)}")
        if args.dump:
            args.dump.write_bytes(mutant.data)
        args.first, args.mutants = args.index, 1
        args.cli = 1
    report = run(
        args.seed,
        args.mutants,
        cli=args.cli,
        first=args.first,
        on_failure=lambda f: print(f.describe(), flush=True),
    )
    print(report.summary())
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
