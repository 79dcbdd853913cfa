"""Validation never raises, and what it reports is always printable (issue 9 items 2, 11).

A slice of the definitions fuzzer (``tests/fuzz_definitions.py``, run at 10 000+ mutants by
hand) in-process and through the real CLI; the two bugs it found, pinned; the validator's
backstop for the bugs it has not found; and the scheduler's reload path fed nasty files, in
process and in a real daemon whose scheduler must never restart.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyrad.journal import STATE_DEFINITIONS_ERROR
from palyrad.runtime.clock import ManualClock
from palyrad.runtime.daemon_log import JsonLineFormatter
from palyrad.runtime.home import Home
from palyrad.services.context import ServiceContext
from palyrad.services.scheduler import definitions as loader_module
from palyrad.services.scheduler.service import Scheduler
from routines.validate import format_issue, parse_routine, validate_text
from routines.validate import routine as routine_module
from tests import fuzz_definitions as fuzz
from tests.daemon_harness import Daemon, palyra, wait_until

NOW = fuzz.NOW_MS
ENV = fuzz.ENV


def check(data: bytes | str) -> Any:
    return validate_text(data, filename="definitions.json", now_ms=NOW, env=ENV)


def doc(tree: Any, *, ascii_only: bool = True) -> bytes:
    return json.dumps(tree, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def at(text: str, needle: str) -> tuple[int, int]:
    idx = text.index(needle)
    return text.count("\n", 0, idx) + 1, idx - (text.rfind("\n", 0, idx) + 1) + 1


def encodable(result: Any) -> None:
    for issue in [*result.errors, *result.warnings]:
        orjson.dumps(format_issue("definitions.json", issue))
        orjson.dumps(vars(issue))


# --- the fuzzer, a CI-sized slice ---------------------------------------------------------


def test_a_slice_of_the_fuzzer_finds_nothing() -> None:
    """300 mutants in-process, 20 of them (every kind first) through the real CLI."""
    report = fuzz.run(seed=20260320, mutants=300, cli=20)
    assert report.cli_runs == 20
    assert len(report.kinds) >= 15  # the slice draws on most kinds of mutation
    assert not report.failures, report.summary()


def test_the_fuzzer_is_reproducible() -> None:
    a, b = fuzz.make_mutant(7, 123), fuzz.make_mutant(7, 123)
    assert (a.kind, a.data, a.special) == (b.kind, b.data, b.special)
    assert fuzz.make_mutant(7, 124).data != a.data


def test_a_type_swap_at_every_path_of_the_seed_document() -> None:
    """Each JSON type in place of every value of the valid document, one at a time."""
    tree = fuzz.seed_document()
    n_slots = len(fuzz.slots(tree))
    swaps = [None, True, 0, 1.5, "x", [], {}, {"a": {"b": 1}}]
    done = 0
    for n in range(n_slots):
        for value in swaps:
            mutated = copy.deepcopy(tree)
            c, k = fuzz.slots(mutated)[n]
            if type(c[k]) is type(value):
                continue
            c[k] = copy.deepcopy(value)
            fuzz.check_result(check(doc(mutated)), "definitions.json")
            done += 1
    assert done > 6 * n_slots > 600


# --- item 2: an object where a string belongs ----------------------------------------------


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], ["x"]])
def test_an_env_value_that_is_an_object_or_array_is_an_error_not_a_crash(value: Any) -> None:
    text = json.dumps(
        {
            "schema_version": 1,
            "routines": [
                {
                    "id": "a",
                    "trigger": {"kind": "manual"},
                    "action": {"kind": "command", "shell": "env", "env": {"X": value, "Y": "y"}},
                }
            ],
        },
        indent=2,
    )
    result = check(text)
    assert result.definitions is None
    kind = "an object" if isinstance(value, dict) else "an array"
    ((path, line, col, msg),) = [(e.path, e.line, e.column, e.message) for e in result.errors]
    assert path == "routines[0].action.env.X" and msg == f"must be a string, got {kind}"
    value_at = at(text, '"X": ')
    assert (line, col) == (value_at[0], value_at[1] + len('"X": '))
    obj = json.loads(text)["routines"][0]
    routine_, errors, _ = parse_routine(obj, now_ms=NOW, env=ENV)
    assert routine_ is None and [e.path for e in errors] == ["action.env.X"]


# --- item 11: lone surrogates ---------------------------------------------------------------


def _routine_text(**fields: str) -> str:
    """One routine whose string fields are given as raw JSON text (escapes kept)."""
    body = {
        "id": '"a"',
        "name": '"A"',
        "trigger": '{"kind": "manual"}',
        "action": '{"kind": "command", "shell": "true"}',
    }
    body.update(fields)
    members = ",\n    ".join(f'"{k}": {v}' for k, v in body.items())
    return '{"schema_version": 1, "routines": [\n  {\n    ' + members + "\n  }\n]}\n"


@pytest.mark.parametrize(
    ("fields", "path", "needle"),
    [
        ({"name": '"x\\ud800y"'}, "routines[0].name", '"x\\ud800y"'),
        ({"name": '"\\udfff"'}, "routines[0].name", '"\\udfff"'),
        ({"name": '"\\ud83d\\u0041"'}, "routines[0].name", '"\\ud83d\\u0041"'),  # high, no low
        ({"name": '"\\ude00\\ud83d"'}, "routines[0].name", '"\\ude00\\ud83d"'),  # wrong order
        (
            {"action": '{"kind": "command", "argv": ["/bin/echo", "\\uDC00"]}'},
            "routines[0].action.argv[1]",
            '"\\uDC00"',
        ),
        (
            {"action": '{"kind": "command", "shell": "env", "env": {"K\\ud800": "v"}}'},
            'routines[0].action.env["K\\ud800"]',
            '"K\\ud800"',
        ),
        ({"tags": '["ok", "\\\\\\ud800"]'}, "routines[0].tags[1]", '"\\\\\\ud800"'),
    ],
)
def test_an_unpaired_surrogate_escape_is_an_error_that_prints(
    fields: dict[str, str], path: str, needle: str
) -> None:
    """Valid JSON, not Unicode: nothing downstream (journal, argv, JSON output) could take it,
    so it is an error at the string, and every message quoting it stays encodable."""
    text = _routine_text(**fields)
    result = check(text)
    encodable(result)
    assert result.definitions is None
    errors = [(e.path, e.line, e.column) for e in result.errors if "surrogate" in e.message]
    assert errors == [(path, *at(text, needle))]
    assert all("\\u" in e.message and e.message.isascii() for e in result.errors)
    # the same through parse_routine (upsert): the routine object as the CLI parsed it
    obj = json.loads(text)["routines"][0]
    routine_, errs, _ = parse_routine(obj, now_ms=NOW, env=ENV)
    assert routine_ is None and [e.path for e in errs if "surrogate" in e.message] == [
        path.removeprefix("routines[0].")
    ]


@pytest.mark.parametrize(
    "name",
    ['"\\ud83d\\ude00"', '"\\uD83D\\uDE00 ok"', '"\\\\ud800"', '"\\\\\\\\ud800"', '"caf\\u00e9"'],
)
def test_surrogate_pairs_and_escaped_backslashes_are_fine(name: str) -> None:
    result = check(_routine_text(name=name))
    assert result.ok and result.definitions is not None
    (r,) = result.definitions.routines
    r.content_hash()  # encodes: what the daemon does first when it applies it


def test_a_lone_surrogate_in_an_unknown_key_and_a_message_prints() -> None:
    text = '{"schema_version": 1, "\\ud800": 1, "routines": [{"id": "\\udfff", "\\ud800x": 2}]}'
    result = check(text)
    encodable(result)
    messages = [format_issue("definitions.json", e) for e in result.errors]
    assert any('unknown key "\\ud800"' in m for m in messages)
    assert any('invalid id "\\udfff"' in m for m in messages)
    assert all(m.isascii() for m in messages)


def test_a_file_name_that_is_not_utf8_prints() -> None:
    result = check(b'{"schema_version": 2}')
    line = format_issue(os.fsdecode(b"/tmp/\xff.json"), result.errors[0])
    assert line.startswith("/tmp/\\udcff.json:1:") and line.encode("utf-8")


# --- the backstop ---------------------------------------------------------------------------


def _explode(*_args: Any, **_kwargs: Any) -> Any:
    raise KeyError("boom")


def test_a_validator_bug_makes_that_routine_invalid_and_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tree = fuzz.seed_document()
    tree["routines"][3]["tags"] = [1]  # an ordinary error elsewhere is still reported
    text = json.dumps(tree, indent=2)
    monkeypatch.setattr(routine_module, "parse_delivery", _explode)
    result = check(text)
    assert result.definitions is None
    internal = [e for e in result.errors if "internal validator error" in e.message]
    # Every routine with a delivery hits the bug; each is reported at its own position.
    assert [e.path for e in internal] == [
        f"routines[{i}]" for i, r in enumerate(tree["routines"]) if "delivery" in r
    ]
    first = internal[0]
    assert (first.line, first.column) == at(text, '{\n      "id": "nightly-backup"')
    assert "KeyError: 'boom'" in first.message and "please report" in first.message
    assert "Traceback" not in first.message
    assert any(e.path == "routines[3].tags[0]" for e in result.errors)


def test_validate_text_and_parse_routine_never_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    from routines.validate import document

    monkeypatch.setattr(document, "positioned", _explode)
    result = check(b'{"schema_version": 2, "routines": []}')
    ((issue,),) = [result.errors]
    assert result.definitions is None and (issue.line, issue.column) == (1, 1)
    assert issue.message.startswith("internal validator error (KeyError: 'boom' at ")
    monkeypatch.setattr(document, "parse_routine_object", _explode)
    r, errors, _ = parse_routine({"id": "a"}, now_ms=NOW, env=ENV, source_text='{"id": "a"}')
    assert r is None and len(errors) == 1 and "internal validator error" in errors[0].message
    assert (errors[0].line, errors[0].column) == (1, 1)


def test_the_json_log_formatter_escapes_what_orjson_refuses() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad \ud800", None, None)
    record.errors = ["f:1:1: \udcff"]
    line = JsonLineFormatter("scheduler").format(record)
    assert json.loads(line)["errors"] == ["f:1:1: \udcff"] and line.isascii()


# --- the scheduler's reload path, in process ------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    context = ServiceContext("test", home, child, "i1", 0, clock=ManualClock(NOW))
    yield context
    parent.close()
    child.close()


def _replace_with(path: Path, make: Callable[[Path], None]) -> None:
    """Put something at ``path`` atomically (renamed over it, never missing in between)."""
    tmp = path.with_name("definitions.json.tmp-test")
    make(tmp)
    os.replace(tmp, path)


def nasty_files(base: str, tick_ms: int) -> list[tuple[str, Callable[[Path], None]]]:
    """Invalid files a daemon must survive, each as a way to put it at a path."""
    good = fuzz.seed_document(base, tick_ms)

    def tree_with(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        t = copy.deepcopy(good)
        edit(t)
        return t

    def env_object(t: dict[str, Any]) -> None:
        t["routines"][6]["action"]["env"]["DEPLOY_ENV"] = {"a": 1}

    def surrogate_key(t: dict[str, Any]) -> None:
        t["routines"][6]["action"]["env"]["K\ud800"] = "v"

    def surrogate_value(t: dict[str, Any]) -> None:
        t["routines"][0]["name"] = "x\udfff"

    def deep(t: dict[str, Any]) -> None:
        t["routines"][2]["tags"] = fuzz.Raw("[" * 100_000 + "]" * 100_000)

    def huge(t: dict[str, Any]) -> None:
        t["routines"][1]["jitter_ms"] = fuzz.Raw("9" * 5_000)

    def data(b: bytes) -> Callable[[Path], None]:
        return lambda p: p.write_bytes(b)

    good_bytes = doc(good)
    return [
        ("env object", data(doc(tree_with(env_object)))),
        ("lone surrogate key", data(doc(tree_with(surrogate_key)))),
        ("lone surrogate value", data(doc(tree_with(surrogate_value)))),
        ("raw surrogate", data(doc(tree_with(surrogate_value), ascii_only=False))),
        ("deep nesting", data(fuzz.to_json(tree_with(deep), True).encode())),
        ("huge number", data(fuzz.to_json(tree_with(huge), True).encode())),
        ("invalid UTF-8", data(good_bytes[:100] + b"\xff\xfe" + good_bytes[100:])),
        ("truncated", data(good_bytes[: len(good_bytes) // 2])),
        ("directory", lambda p: p.symlink_to(p.parent)),
        ("FIFO", lambda p: os.mkfifo(p)),
        ("device", lambda p: p.symlink_to("/dev/zero")),
    ]


def test_the_scheduler_survives_every_nasty_file_and_keeps_its_routines(
    ctx: ServiceContext,
) -> None:
    base = ctx.home.root / "watched"
    base.mkdir()
    good = doc(fuzz.seed_document(str(base)))
    path = ctx.home.definitions
    path.write_bytes(good)
    sched = Scheduler(ctx)
    sched.reload(startup=True)
    kept = dict(sched.routines)
    assert len(kept) == 9 and ctx.journal.state.get(STATE_DEFINITIONS_ERROR) is None
    for label, make in nasty_files(str(base), 60_000):
        _replace_with(path, make)
        t0 = time.monotonic()
        sched.reload()  # never raises, never blocks
        assert time.monotonic() - t0 < 5, label
        assert sched.routines == kept, label
        state = ctx.journal.state.get(STATE_DEFINITIONS_ERROR)
        assert state is not None, label
        errors = orjson.loads(state)["errors"]
        assert errors and all(e.startswith(str(path)) for e in errors), label
        assert not any("internal validator error" in e for e in errors), (label, errors)
    _replace_with(path, lambda p: p.write_bytes(good))
    sched.reload()
    assert ctx.journal.state.get(STATE_DEFINITIONS_ERROR) is None


def test_a_failure_while_reloading_is_recorded_and_the_last_good_kept(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx.home.definitions.write_bytes(doc(fuzz.seed_document()))
    sched = Scheduler(ctx)
    sched.reload(startup=True)
    kept = dict(sched.routines)
    monkeypatch.setattr(loader_module, "validate_text", _explode)  # as if it raised
    sched.reload()
    assert sched.routines == kept
    state = ctx.journal.state.get(STATE_DEFINITIONS_ERROR)
    assert state is not None and "internal validator error (KeyError" in state


# --- the real daemon ------------------------------------------------------------------------


def _succeeded(d: Daemon, rid: str) -> int:
    return sum(1 for r in d.runs(rid) if r.status == "succeeded")


def _error_at(d: Daemon) -> int | None:
    state = d.journal.state.get(STATE_DEFINITIONS_ERROR)
    return None if state is None else int(orjson.loads(state)["at_ms"])


def _scheduler_status(d: Daemon) -> dict[str, Any]:
    out = orjson.loads(palyra(d.root, "daemon", "status", "--json").stdout)
    (sched,) = [p for p in out["processes"] if p["name"] == "scheduler"]
    return dict(sched)


@pytest.mark.timeout(180)
def test_nasty_files_never_restart_a_real_daemons_scheduler(daemon: Daemon) -> None:
    """Hot reload of every nasty file in turn: each is recorded as invalid, the heartbeat
    routine keeps running, the scheduler never restarts, the log stays JSON lines."""
    base = daemon.root / "watched"
    base.mkdir()
    good = doc(fuzz.seed_document(str(base), tick_ms=1_000))
    daemon.write_raw(good)
    daemon.start()
    wait_until(lambda: _succeeded(daemon, "heartbeat") >= 1, timeout=30)
    path = daemon.home.definitions
    for label, make in nasty_files(str(base), 1_000):
        before = _error_at(daemon)
        _replace_with(path, make)
        wait_until(lambda b=before: _error_at(daemon) not in (None, b), timeout=20)
        state = orjson.loads(daemon.journal.state.get(STATE_DEFINITIONS_ERROR) or "{}")
        assert state["errors"], label
        assert _scheduler_status(daemon)["restarts"] == 0, label
    seen = _succeeded(daemon, "heartbeat")
    wait_until(lambda: _succeeded(daemon, "heartbeat") >= seen + 2, timeout=30)
    _replace_with(path, lambda p: p.write_bytes(good))
    wait_until(lambda: daemon.journal.state.get(STATE_DEFINITIONS_ERROR) is None, timeout=20)
    status = _scheduler_status(daemon)
    assert status["restarts"] == 0 and status["state"] == "running"
    logs = daemon.home.logs_dir
    for f in logs.iterdir():
        text = f.read_text("utf-8", "replace")
        assert "Traceback" not in text, f
        if f.name == "palyrad.log":
            lines = text.splitlines()
            for line in lines:
                json.loads(line)
            assert sum("definitions invalid" in line for line in lines) >= 11
