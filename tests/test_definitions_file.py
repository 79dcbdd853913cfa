"""The definitions store: atomic writes that survive SIGKILL, locked edits, refusal to
overwrite a broken hand edit."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from routines import definitions_file
from routines.definitions_file import (
    DefinitionsError,
    atomic_write,
    definitions_path,
    dumps,
    load,
    locked_edit,
)
from routines.model import Definitions, Routine
from routines.validate import parse_routine

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_774_000_000_000


def routine(rid: str, **extra: object) -> Routine:
    obj: dict[str, object] = {
        "id": rid,
        "trigger": {"kind": "manual"},
        "action": {"kind": "command", "argv": ["true"]},
    }
    obj.update(extra)
    r, errors, _ = parse_routine(obj, now_ms=NOW, env={})
    assert r is not None, errors
    return r


def defs_of(*ids: str) -> Definitions:
    return Definitions(tuple(routine(i) for i in ids))


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# --- load / dumps ------------------------------------------------------------------------


def test_definitions_path() -> None:
    assert definitions_path(Path("/h")) == Path("/h/routines/definitions.json")


def test_missing_file_is_an_empty_valid_document(tmp_path: Path) -> None:
    res = load(tmp_path / "nope.json", now_ms=NOW, env={})
    assert res.ok and res.definitions == Definitions() and res.warnings == []


def test_file_over_64_mib_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "definitions.json"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)  # sparse: no disk, and reading it would be slow
    t0 = time.monotonic()
    res = load(path, now_ms=NOW, env={})
    assert time.monotonic() - t0 < 0.5
    assert res.definitions is None
    assert [(e.path, e.line, e.column, e.message) for e in res.errors] == [
        ("", 1, 1, "file is 67108865 bytes; the limit is 67108864 bytes (64 MiB)")
    ]


def test_load_reports_invalid_utf8_and_positions(tmp_path: Path) -> None:
    path = tmp_path / "definitions.json"
    path.write_bytes(b'{"schema_version": 1, "routines": [\xc3]}')
    res = load(path, now_ms=NOW, env={})
    assert [(e.line, e.column) for e in res.errors] == [(1, 1)]
    assert res.errors[0].message.startswith("file is not valid UTF-8")
    path.write_text('{\n  "schema_version": 1,\n  "routines": [{"id": "x"}]\n}\n')
    res = load(path, now_ms=NOW, env={})
    assert [(e.path, e.line, e.column) for e in res.errors] == [
        ("routines[0].trigger", 3, 16),
        ("routines[0].action", 3, 16),
    ]


def test_dumps_is_canonical_indented_json_with_a_trailing_newline() -> None:
    defs = Definitions((routine("b", tags=["x", "y"], name="B"), routine("a")))
    data = dumps(defs)
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert data == orjson.dumps(defs.to_json(), option=orjson.OPT_INDENT_2) + b"\n"
    assert data.startswith(b'{\n  "schema_version": 1,\n  "routines": [\n    {\n      "id": "b",')
    keys = list(orjson.loads(data)["routines"][0])
    assert keys == list(defs.routines[0].to_json())


def test_dumps_of_an_empty_document_and_of_a_document_too_big_to_indent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = Definitions()
    assert dumps(empty) == orjson.dumps(empty.to_json(), option=orjson.OPT_INDENT_2) + b"\n"
    defs = defs_of("a", "b", "c")
    indented = dumps(defs)
    monkeypatch.setattr(definitions_file, "MAX_FILE_BYTES", len(indented) - 1)
    compact = dumps(defs)
    assert len(compact) < len(indented) * 0.6
    assert compact.count(b"\n") == 4 + len(defs.routines)  # one routine per line
    assert compact.splitlines()[3] == orjson.dumps(defs.routines[0].to_json()) + b","
    assert orjson.loads(compact) == defs.to_json()


def test_locked_edit_refuses_to_write_a_file_over_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = definitions_path(tmp_path)
    atomic_write(path, dumps(defs_of("a")))
    before = path.read_bytes()
    monkeypatch.setattr(definitions_file, "MAX_FILE_BYTES", len(before) + 10)
    with pytest.raises(DefinitionsError) as info, locked_edit(path, now_ms=NOW, env={}) as ed:
        ed.upsert(routine("b"))
    assert path.read_bytes() == before
    assert info.value.issues[0].message.startswith("the file would be ")


# --- atomic_write -------------------------------------------------------------------------


def test_atomic_write_modes_backup_and_no_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "home" / "routines" / "definitions.json"
    atomic_write(path, b"one\n")
    assert path.read_bytes() == b"one\n"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    assert not path.with_name("definitions.json.bak").exists()  # nothing to back up yet
    atomic_write(path, b"two\n")
    bak = path.with_name("definitions.json.bak")
    assert path.read_bytes() == b"two\n" and bak.read_bytes() == b"one\n"
    assert mode(path) == 0o600 and mode(bak) == 0o600
    atomic_write(path, b"three\n", keep_backup=False)
    assert path.read_bytes() == b"three\n" and bak.read_bytes() == b"one\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["definitions.json", bak.name]


def test_atomic_write_keeps_an_existing_directory_mode(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    atomic_write(d / "f.json", b"{}")
    assert mode(d) == 0o755 and mode(d / "f.json") == 0o600


def test_atomic_write_failure_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "definitions.json"
    atomic_write(path, b"old")

    def boom(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["definitions.json"]


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from routines.definitions_file import atomic_write
    target = Path(sys.argv[1])
    versions = [Path(p).read_bytes() for p in sys.argv[2:]]
    print("ready", flush=True)
    i = 0
    while True:
        atomic_write(target, versions[i % len(versions)])
        i += 1
    """
)


def big_definitions(version: int, count: int = 6000) -> bytes:
    """A few MB of valid definitions; every version differs in every routine."""
    objs = [
        {
            "id": f"v{version}-routine-{i:05d}",
            "name": f"version {version} routine {i} " + "x" * 40,
            "trigger": {
                "kind": "schedule",
                "schedule": {"type": "cron", "expr": f"{i % 60} * * * *"},
            },
            "action": {"kind": "command", "argv": ["echo", str(version), str(i)]},
        }
        for i in range(count)
    ]
    return orjson.dumps({"schema_version": 1, "routines": objs}, option=orjson.OPT_INDENT_2)


def test_killed_writer_never_leaves_a_truncated_file(tmp_path: Path) -> None:
    versions = [big_definitions(v) for v in range(3)]
    files = []
    for v, data in enumerate(versions):
        f = tmp_path / f"version{v}.json"
        f.write_bytes(data)
        files.append(str(f))
    target = tmp_path / "home" / "routines" / "definitions.json"
    atomic_write(target, versions[0])
    rng = random.Random(1234)
    seen_versions: set[int] = set()
    kills = 25
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target), *files],
            stdout=subprocess.PIPE,
            env=python_env(),
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        data = target.read_bytes()
        assert data in versions, f"torn file of {len(data)} bytes"
        seen_versions.add(versions.index(data))
        res = load(target, now_ms=NOW, env={})
        assert res.ok and res.definitions is not None and len(res.definitions.routines) == 6000
        bak = target.with_name("definitions.json.bak")
        if bak.exists():
            assert bak.read_bytes() in versions
        assert mode(target) == 0o600
    assert len(seen_versions) >= 2  # the kills did land between different writes
    # and some landed in the middle of a write: their temp files are what is left of them
    torn = list(target.parent.glob(".definitions.json.*.tmp"))
    assert torn, "no kill interrupted a write; the test proved nothing"


# --- locked_edit ---------------------------------------------------------------------------


def test_locked_edit_upsert_remove_and_write_only_on_change(tmp_path: Path) -> None:
    path = definitions_path(tmp_path)
    with locked_edit(path, now_ms=NOW, env={}) as ed:
        assert ed.definitions == Definitions() and not ed.changed
        assert ed.upsert(routine("a")) is True
        assert ed.upsert(routine("b")) is True
        assert ed.changed
    assert path.exists() and mode(path) == 0o600
    assert path.with_name(".definitions.json.lock").exists()
    res = load(path, now_ms=NOW, env={})
    assert res.definitions == defs_of("a", "b")

    with locked_edit(path, now_ms=NOW, env={}) as ed:
        assert ed.upsert(routine("a", name="renamed")) is False  # replaced in place
        assert ed.remove("b") is True
        assert ed.remove("zzz") is False
        assert ed.get("a") is not None and ed.get("b") is None
    res = load(path, now_ms=NOW, env={})
    assert res.definitions is not None
    assert [(r.id, r.name) for r in res.definitions.routines] == [("a", "renamed")]
    bak = path.with_name("definitions.json.bak")
    assert load(bak, now_ms=NOW, env={}).definitions == defs_of("a", "b")

    before = path.stat()
    with locked_edit(path, now_ms=NOW, env={}) as ed:
        ed.upsert(routine("a", name="renamed"))  # the same routine: no change
        assert not ed.changed
    after = path.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_exception_inside_the_edit_writes_nothing(tmp_path: Path) -> None:
    path = definitions_path(tmp_path)
    atomic_write(path, dumps(defs_of("a")))
    with pytest.raises(RuntimeError), locked_edit(path, now_ms=NOW, env={}) as ed:
        ed.upsert(routine("b"))
        raise RuntimeError("caller changed its mind")
    assert load(path, now_ms=NOW, env={}).definitions == defs_of("a")


def test_refuses_to_edit_an_invalid_file(tmp_path: Path) -> None:
    path = definitions_path(tmp_path)
    path.parent.mkdir(parents=True)
    broken = (
        b'{\n  "schema_version": 1,\n  "routines": [\n    {"id": "a", "jitter_ms": 4.0}\n  ]\n}\n'
    )
    path.write_bytes(broken)
    with pytest.raises(DefinitionsError) as info, locked_edit(path, now_ms=NOW, env={}) as ed:
        ed.upsert(routine("b"))
    exc = info.value
    assert path.read_bytes() == broken  # the hand edit is untouched
    assert not path.with_name("definitions.json.bak").exists()
    assert [i.path for i in exc.issues] == [
        "routines[0].trigger",
        "routines[0].action",
        "routines[0].jitter_ms",
    ]
    assert exc.lines[2] == (
        f"{path}:4:30: routines[0].jitter_ms: "
        "must be a non-negative integer (milliseconds), got 4.0"
    )
    assert "fix them" in str(exc) and exc.lines[0] in str(exc)


def test_refuses_to_write_invalid_definitions(tmp_path: Path) -> None:
    path = definitions_path(tmp_path)
    atomic_write(path, dumps(defs_of("a")))
    before = path.read_bytes()
    with pytest.raises(DefinitionsError) as info, locked_edit(path, now_ms=NOW, env={}) as ed:
        ed.definitions = Definitions((routine("a"), routine("a")))
    assert path.read_bytes() == before
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("routines[1].id", 'duplicate id "a" (first defined at routines[0])')
    ]
    bad = Routine(id="Not Valid", trigger=routine("x").trigger, action=routine("x").action)
    with pytest.raises(DefinitionsError) as info, locked_edit(path, now_ms=NOW, env={}) as ed:
        ed.upsert(bad)
    assert [i.path for i in info.value.issues] == ["routines[1].id"]
    assert path.read_bytes() == before


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    path = definitions_path(tmp_path)
    atomic_write(path, dumps(defs_of("a")))
    stale = path.with_name(".definitions.json.abc123.tmp")
    stale.write_bytes(b'{"schema_version": 1, "rout')
    with locked_edit(path, now_ms=NOW, env={}) as ed:
        ed.upsert(routine("b"))
    assert not stale.exists()


_EDITOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from routines.definitions_file import locked_edit
    from routines.validate import parse_routine
    path, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(count):
        obj = {"id": f"w{worker}-{i}", "trigger": {"kind": "manual"},
               "action": {"kind": "command", "argv": ["true"]}}
        r, errors, _ = parse_routine(obj, now_ms=0, env={})
        assert r is not None, errors
        with locked_edit(path, now_ms=0, env={}) as ed:
            ed.upsert(r)
            time.sleep(0.002)  # widen the read-modify-write window
    """
)


def test_concurrent_locked_edits_lose_no_update(tmp_path: Path) -> None:
    path = definitions_path(tmp_path)
    workers, per_worker = 4, 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EDITOR, str(path), str(w), str(per_worker)],
            env=python_env(),
            cwd=ROOT,
        )
        for w in range(workers)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    res = load(path, now_ms=NOW, env={})
    assert res.definitions is not None
    ids = sorted(r.id for r in res.definitions.routines)
    assert ids == sorted(f"w{w}-{i}" for w in range(workers) for i in range(per_worker))


def test_load_benchmark_runs_on_a_small_document() -> None:
    from bench import definitions_load

    figures = definitions_load.run(rounds=1, routines=300)
    assert figures["loaded_routines"] == 300 and figures["errors_on_valid"] == 0
    assert figures["error_path_errors"] == 100
    assert figures["rss_peak_mb"] > 0 and figures["load_median_s"] > 0
