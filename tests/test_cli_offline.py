"""The ``palyra`` CLI with the daemon NOT running (SPEC §1, §2, §4, §4.2).

Every test gets a fresh home under ``tmp_path``. Most run the click app in-process
(CliRunner, fast); a few run the real console script next to ``sys.executable`` to pin exit
codes, stdout/stderr separation and the environment end to end.

Contract checked throughout: ``--json`` prints exactly one JSON document on stdout; errors
are one stderr line ``error: <what> (<hint>)``; notes go to stderr; exit codes 0/1/2; writes
while palyrad is stopped print ``note: palyrad is not running; the change applies when it
starts``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from click.testing import CliRunner

from palyra_cli.app import cli as palyra_app
from palyrad.journal import Journal

PALYRA = Path(sys.executable).parent / "palyra"
NOTE = "note: palyrad is not running; the change applies when it starts"
PRAGUE = ZoneInfo("Europe/Prague")

RUN_FIELDS = {
    "run_id",
    "chain_id",
    "routine_id",
    "attempt",
    "trigger_kind",
    "trigger_payload",
    "scheduled_for",
    "status",
    "queued_at",
    "started_at",
    "finished_at",
    "exit_code",
    "error_kind",
    "error_message",
    "output_tail",
    "log_path",
    "definition_hash",
    "scheduled_for_unix_ms",
    "queued_at_unix_ms",
    "started_at_unix_ms",
    "finished_at_unix_ms",
}
DEFINITION_KEYS = {
    "id",
    "enabled",
    "trigger",
    "action",
    "concurrency",
    "misfire",
    "jitter_ms",
    "retry",
    "approval",
    "cooldown_ms",
    "delivery",
    "tags",
}


# --- helpers ------------------------------------------------------------------------------


@dataclass
class Out:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout must be exactly one JSON document (orjson rejects trailing data)."""
        assert self.stdout.strip(), f"no stdout (exit {self.code}, stderr {self.stderr!r})"
        return orjson.loads(self.stdout)

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def ok(self) -> Out:
        assert self.code == 0, f"exit {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"
        return self


def run(home: Path | None, *args: str, input: str | bytes | None = None) -> Out:
    """The click app in-process, with ``--home`` first (when given)."""
    argv = (["--home", str(home)] if home is not None else []) + list(args)
    result = CliRunner().invoke(palyra_app, argv, input=input, catch_exceptions=False)
    return Out(result.exit_code, result.stdout, result.stderr)


def run_bin(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Out:
    """The real console script (separate process, real stdout/stderr and exit code)."""
    proc = subprocess.run(
        [str(PALYRA), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return Out(proc.returncode, proc.stdout, proc.stderr)


def assert_error(out: Out, code: int, *fragments: str) -> str:
    """Exit ``code``, nothing on stdout, exactly one ``error: <what> (<hint>)`` line; any
    other stderr line is a note or a warning. Returns the error line."""
    assert out.code == code, f"exit {out.code} != {code}\n{out.stdout}\n{out.stderr}"
    assert out.stdout == "", out.stdout
    errors = [line for line in out.err_lines if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    stray = [ln for ln in out.err_lines if not ln.startswith(("error: ", "note: ", "warning: "))]
    assert stray == [], out.stderr
    line = errors[0]
    assert re.fullmatch(r"error: \S.* \(\S[^\n]*\)", line), f"no (hint): {line!r}"
    for f in fragments:
        assert f in line, (f, line)
    return line


def defs_path(home: Path) -> Path:
    return home / "routines" / "definitions.json"


def read_defs(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(defs_path(home).read_bytes())
    return data


def write_defs(home: Path, routines: list[dict[str, Any]]) -> None:
    p = defs_path(home)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(orjson.dumps({"schema_version": 1, "routines": routines}))


def manual(rid: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "trigger": {"kind": "manual"},
        "action": {"kind": "command", "argv": ["true"]},
        **extra,
    }


def cron_routine(
    rid: str, expr: str = "0 3 * * *", tz: str = "UTC", **extra: Any
) -> dict[str, Any]:
    return {
        "id": rid,
        "trigger": {"kind": "schedule", "schedule": {"type": "cron", "expr": expr, "timezone": tz}},
        "action": {"kind": "command", "argv": ["true"]},
        **extra,
    }


def pos(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, column in characters) of the nth occurrence of ``needle``."""
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def ms_of(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


def fmt(ms: int, zone: Any) -> str:
    """RFC 3339 with offset; milliseconds only when non-zero (SPEC §4.2 preview)."""
    dt = datetime.fromtimestamp(ms // 1000, tz=zone)
    base = dt.isoformat(timespec="seconds")
    if ms % 1000:
        base = base[:19] + f".{ms % 1000:03d}" + base[19:]
    return base


def jitter(rid: str, nominal_ms: int, jitter_ms: int) -> int:
    digest = hashlib.sha256(f"{rid}:{nominal_ms}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (jitter_ms + 1)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PALYRA_HOME that tests passing --home must never touch; no stray secrets."""
    monkeypatch.setenv("PALYRA_HOME", str(tmp_path / "env-home"))
    monkeypatch.delenv("PALYRA_TEST_MISSING_SECRET", raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# --- home resolution (SPEC §1, §4) --------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["before", "after_group", "after_command"],
)
def test_home_option_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    h = tmp_path / "h"
    argv = {
        "before": ["--home", str(h), "routines", "list", "--json"],
        "after_group": ["routines", "--home", str(h), "list", "--json"],
        "after_command": ["routines", "list", "--json", "--home", str(h)],
    }[where]
    out = run(None, *argv).ok()
    assert out.json() == {"routines": []}
    assert stat.S_IMODE(h.stat().st_mode) == 0o700
    assert not (tmp_path / "env-home").exists()  # --home wins over $PALYRA_HOME


def test_home_after_command_is_used_for_writes(tmp_path: Path) -> None:
    h = tmp_path / "h"
    run(
        None, "cron", "add", "Job", "--schedule", "hourly", "--command", "true", "--home", str(h)
    ).ok()
    assert [r["id"] for r in read_defs(h)["routines"]] == ["job"]
    assert not (tmp_path / "env-home").exists()


def test_home_created_0700_even_with_a_permissive_umask(home: Path) -> None:
    old = os.umask(0o000)
    try:
        run(home, "routines", "list").ok()
    finally:
        os.umask(old)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "routines").stat().st_mode) & 0o077 == 0


def test_palyra_home_env_is_used_end_to_end(tmp_path: Path) -> None:
    h = tmp_path / "from-env"
    out = run_bin(
        "cron",
        "add",
        "Env job",
        "--schedule",
        "hourly",
        "--command",
        "true",
        "--json",
        env={"PALYRA_HOME": str(h)},
    ).ok()
    assert out.json()["id"] == "env-job"
    assert stat.S_IMODE(h.stat().st_mode) == 0o700
    assert [r["id"] for r in read_defs(h)["routines"]] == ["env-job"]


# --- routines validate (SPEC §2.4) --------------------------------------------------------


BAD_DOC = """{
  "schema_version": 1,
  "routines": [
    {"id": "a", "name": "Zálohování – noční ☕", "bogus": 1, "trigger": {"kind": "manual"},
     "action": {"kind": "command", "argv": ["true"]}},
    {
      "id": "b",
      "trigger": {"kind": "schedule",
                  "schedule": {"type": "cron", "expr": "0 25 * * *", "timezone": "UTC"}},
      "action": {"kind": "command", "argv": ["true"]}
    },
    {"id": "a", "trigger": {"kind": "manual"}, "action": {"kind": "command", "argv": ["true"]}}
  ]
}
"""


def test_validate_ok_file(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "ok.json"
    f.write_bytes(orjson.dumps({"schema_version": 1, "routines": [manual("a"), cron_routine("b")]}))
    out = run(home, "routines", "validate", str(f), "--json").ok()
    assert out.json() == {"ok": True, "errors": [], "warnings": []}
    text = run(home, "routines", "validate", str(f)).ok()
    assert "ok" in text.stdout and "2 routines" in text.stdout
    assert text.stderr == ""


def test_validate_reports_every_error_with_path_line_column(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text(BAD_DOC, encoding="utf-8")
    out = run(home, "routines", "validate", str(f), "--json")
    assert out.code == 2
    doc = out.json()
    assert doc["ok"] is False and doc["warnings"] == []
    got = sorted((e["path"], e["line"], e["column"]) for e in doc["errors"])
    want = sorted(
        [
            ("routines[0].bogus", *pos(BAD_DOC, '"bogus"')),  # the key, for unknown keys
            ("routines[1].trigger.schedule.expr", *pos(BAD_DOC, '"0 25 * * *"')),  # opening quote
            ("routines[2].id", *pos(BAD_DOC, '"a"', 2)),  # the second occurrence
        ]
    )
    assert got == want
    # columns count characters, not bytes: "bogus" follows non-ASCII text on its line
    assert want[0][2] == BAD_DOC.splitlines()[3].index('"bogus"') + 1
    by_path = {e["path"]: e["message"] for e in doc["errors"]}
    assert by_path["routines[1].trigger.schedule.expr"] == (
        'invalid cron expression "0 25 * * *": hour 25 is out of range 0-23'
    )
    assert "bogus" in by_path["routines[0].bogus"]
    assert '"a"' in by_path["routines[2].id"]


def test_validate_text_form_is_file_line_column_path_message(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text(BAD_DOC, encoding="utf-8")
    out = run(home, "routines", "validate", str(f))
    assert out.code == 2
    line, col = pos(BAD_DOC, '"0 25 * * *"')
    assert (
        f"{f}:{line}:{col}: routines[1].trigger.schedule.expr: invalid cron expression "
        f'"0 25 * * *": hour 25 is out of range 0-23'
    ) in out.err_lines
    assert len([ln for ln in out.err_lines if re.match(rf"{re.escape(str(f))}:\d+:\d+: ", ln)]) == 3
    assert out.err_lines[-1] == f"{f}: 3 error(s); nothing was applied"


def test_validate_warnings_do_not_fail(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "warn.json"
    doc = {
        "schema_version": 1,
        "routines": [
            {
                "id": "past",
                "trigger": {
                    "kind": "schedule",
                    "schedule": {"type": "at", "at": "2020-01-01T00:00:00Z"},
                },
                "action": {"kind": "command", "argv": ["true"]},
            },
            {
                "id": "hook",
                "trigger": {"kind": "webhook", "secret_env": "PALYRA_TEST_MISSING_SECRET"},
                "action": {"kind": "command", "argv": ["true"]},
            },
        ],
    }
    f.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    out = run(home, "routines", "validate", str(f), "--json").ok()
    body = out.json()
    assert body["ok"] is True and body["errors"] == []
    assert sorted(w["path"] for w in body["warnings"]) == [
        "routines[0].trigger.schedule.at",
        "routines[1].trigger.secret_env",
    ]
    text = f.read_text()
    for w in body["warnings"]:
        assert w["line"] >= 1 and w["column"] >= 1
    at_warning = next(w for w in body["warnings"] if w["path"].endswith(".at"))
    assert (at_warning["line"], at_warning["column"]) == pos(text, '"2020-01-01T00:00:00Z"')
    plain = run(home, "routines", "validate", str(f)).ok()
    assert sum(ln.startswith("warning: ") for ln in plain.err_lines) == 2


def test_validate_invalid_utf8_is_a_file_level_error_at_1_1(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "latin1.json"
    f.write_bytes(b'{"schema_version": 1, "routines": [{"id": "caf\xe9"}]}')
    out = run(home, "routines", "validate", str(f), "--json")
    assert out.code == 2
    errors = out.json()["errors"]
    assert len(errors) == 1
    assert (errors[0]["line"], errors[0]["column"]) == (1, 1)
    assert "UTF-8" in errors[0]["message"]


def test_validate_invalid_json_points_at_the_problem(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "syntax.json"
    f.write_text('{"schema_version": 1,\n "routines": [}\n')
    out = run(home, "routines", "validate", str(f), "--json")
    assert out.code == 2
    (err,) = out.json()["errors"]
    assert (err["line"], err["column"]) == (2, 15)


def test_validate_defaults_to_the_home_file(home: Path) -> None:
    out = run(home, "routines", "validate", "--json").ok()  # no file yet: empty and valid
    assert out.json()["ok"] is True
    defs_path(home).write_text('{"schema_version": 2, "routines": []}')
    out = run(home, "routines", "validate", "--json")
    assert out.code == 2
    assert out.json()["errors"][0]["path"] == "schema_version"


def test_validate_missing_file_is_an_error(tmp_path: Path, home: Path) -> None:
    assert_error(run(home, "routines", "validate", str(tmp_path / "nope.json")), 2, "nope.json")


# --- routines schedule-preview (SPEC §4.2) ------------------------------------------------


def preview(home: Path, *args: str) -> dict[str, Any]:
    doc: dict[str, Any] = run(home, "routines", "schedule-preview", *args, "--json").ok().json()
    assert set(doc) == {"input", "schedule", "explanation", "fires"}
    return doc


def test_preview_cron_with_tz_and_from(home: Path) -> None:
    doc = preview(
        home,
        "0 9 * * 1-5",
        "--tz",
        "Europe/Prague",
        "--from",
        "2026-03-27T08:59:30+01:00",
        "--count",
        "3",
    )
    assert doc == {
        "input": "0 9 * * 1-5",
        "schedule": {"type": "cron", "expr": "0 9 * * 1-5", "timezone": "Europe/Prague"},
        "explanation": "at 09:00 on Monday through Friday (Europe/Prague)",
        "fires": [
            "2026-03-27T09:00:00+01:00",
            "2026-03-30T09:00:00+02:00",  # across the spring-forward weekend
            "2026-03-31T09:00:00+02:00",
        ],
    }


def test_preview_from_without_offset_is_read_in_tz(home: Path) -> None:
    # 08:59:30 Prague is 07:59:30Z; read as UTC it would be 09:59:30 local (next fire Monday).
    doc = preview(
        home,
        "0 9 * * 1-5",
        "--tz",
        "Europe/Prague",
        "--from",
        "2026-03-27T08:59:30",
        "--count",
        "1",
    )
    assert doc["fires"] == ["2026-03-27T09:00:00+01:00"]


def test_preview_fires_are_strictly_after_from(home: Path) -> None:
    doc = preview(
        home, "0 9 * * *", "--tz", "UTC", "--from", "2026-03-27T09:00:00Z", "--count", "1"
    )
    assert doc["fires"] == ["2026-03-28T09:00:00+00:00"]


def test_preview_default_count_is_5_and_from_defaults_to_now(home: Path) -> None:
    before = now_ms()
    doc = preview(home, "every 1h", "--tz", "UTC")
    assert len(doc["fires"]) == 5
    first = ms_of(doc["fires"][0])
    assert before + 3_600_000 <= first <= now_ms() + 3_600_000


def test_preview_every_is_anchored_at_from(home: Path) -> None:
    doc = preview(
        home,
        "every 5 minutes",
        "--tz",
        "Europe/Prague",
        "--from",
        "2026-03-27T07:59:30Z",
        "--count",
        "3",
    )
    assert doc["schedule"] == {
        "type": "every",
        "interval_ms": 300_000,
        "anchor": "2026-03-27T08:59:30+01:00",  # --from, shown in --tz
    }
    assert doc["fires"] == [
        "2026-03-27T09:04:30+01:00",
        "2026-03-27T09:09:30+01:00",
        "2026-03-27T09:14:30+01:00",
    ]


def test_preview_every_keeps_milliseconds_of_from(home: Path) -> None:
    doc = preview(
        home, "every 30s", "--tz", "UTC", "--from", "2026-03-27T08:00:00.250Z", "--count", "2"
    )
    assert doc["fires"] == ["2026-03-27T08:00:30.250+00:00", "2026-03-27T08:01:00.250+00:00"]


def test_preview_in_20_minutes_is_relative_to_from(home: Path) -> None:
    doc = preview(
        home, "in 20 minutes", "--tz", "Europe/Prague", "--from", "2026-03-27T08:59:30+01:00"
    )
    assert doc["schedule"] == {"type": "at", "at": "2026-03-27T09:19:30+01:00"}
    assert doc["fires"] == ["2026-03-27T09:19:30+01:00"]


@pytest.mark.parametrize(
    ("tz", "from_", "at"),
    [
        ("Europe/Prague", "2026-03-27T22:30:00", "2026-03-28T07:00:00+01:00"),
        # local date differs from the UTC date: "tomorrow" is the zone's tomorrow
        ("Asia/Tokyo", "2026-03-27T23:30:00Z", "2026-03-29T07:00:00+09:00"),
    ],
)
def test_preview_tomorrow_at_7(home: Path, tz: str, from_: str, at: str) -> None:
    doc = preview(home, "tomorrow at 7", "--tz", tz, "--from", from_)
    assert doc["schedule"] == {"type": "at", "at": at}
    assert doc["fires"] == [at]


def test_preview_tomorrow_inside_a_dst_gap_fires_when_the_gap_ends(home: Path) -> None:
    doc = preview(
        home, "tomorrow at 2:30", "--tz", "Europe/Prague", "--from", "2026-03-28T12:00:00"
    )
    assert doc["fires"] == ["2026-03-29T03:00:00+02:00"]


def test_preview_hourly_is_top_of_every_hour(home: Path) -> None:
    doc = preview(home, "hourly", "--tz", "UTC", "--from", "2026-03-27T08:59:59Z", "--count", "2")
    assert doc["schedule"] == {"type": "cron", "expr": "0 * * * *", "timezone": "UTC"}
    assert doc["fires"] == ["2026-03-27T09:00:00+00:00", "2026-03-27T10:00:00+00:00"]


def test_preview_daily_at_1800(home: Path) -> None:
    doc = preview(
        home,
        "daily at 18:00",
        "--tz",
        "Europe/Prague",
        "--from",
        "2026-03-28T19:00:00",
        "--count",
        "2",
    )
    assert doc["schedule"] == {"type": "cron", "expr": "0 18 * * *", "timezone": "Europe/Prague"}
    assert doc["fires"] == ["2026-03-29T18:00:00+02:00", "2026-03-30T18:00:00+02:00"]


def test_preview_timestamp_in_tz_and_in_the_past(home: Path) -> None:
    doc = preview(
        home, "2026-03-30T09:00:00", "--tz", "Europe/Prague", "--from", "2026-03-01T00:00:00Z"
    )
    assert doc["schedule"] == {"type": "at", "at": "2026-03-30T09:00:00+02:00"}
    past = preview(home, "2020-01-01T00:00:00Z", "--from", "2026-01-01T00:00:00Z")
    assert past["fires"] == []


@pytest.mark.parametrize(("count", "code"), [("0", 2), ("1001", 2), ("-1", 2), ("1", 0)])
def test_preview_count_bounds(home: Path, count: str, code: int) -> None:
    out = run(home, "routines", "schedule-preview", "hourly", "--count", count, "--json")
    if code:
        assert_error(out, code, "--count")
    else:
        assert len(out.ok().json()["fires"]) == 1


def test_preview_count_1000_is_allowed(home: Path) -> None:
    doc = preview(home, "every 1s", "--count", "1000", "--from", "2026-01-01T00:00:00Z")
    assert len(doc["fires"]) == 1000
    assert doc["fires"][-1] == "2026-01-01T00:16:40+00:00"


def test_preview_jitter_with_id(home: Path) -> None:
    doc = preview(
        home,
        "0 9 * * *",
        "--tz",
        "UTC",
        "--from",
        "2026-03-27T08:00:00Z",
        "--count",
        "3",
        "--jitter-ms",
        "60000",
        "--id",
        "backup",
    )
    nominal = [ms_of(f"2026-03-{d}T09:00:00+00:00") for d in (27, 28, 29)]
    want = [fmt(n + jitter("backup", n, 60_000), UTC) for n in nominal]
    assert doc["fires"] == want
    assert any("." in f for f in want)  # milliseconds appear exactly when non-zero
    assert doc["schedule"]["expr"] == "0 9 * * *"  # jitter does not change the schedule


@pytest.mark.parametrize(
    "args",
    [
        ["--jitter-ms", "5000"],  # without --id
        ["--jitter-ms", "60001", "--id", "x"],
        ["--jitter-ms", "-1", "--id", "x"],
    ],
)
def test_preview_bad_jitter(home: Path, args: list[str]) -> None:
    assert_error(
        run(home, "routines", "schedule-preview", "hourly", *args, "--json"), 2, "--jitter-ms"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["blah"], "blah"),
        (["0 25 * * *"], "hour 25"),
        (["every 0 minutes"], "at least 1"),
        (["hourly", "--tz", "Mars/Olympus"], "Mars/Olympus"),
        (["hourly", "--from", "yesterday"], "yesterday"),
    ],
)
def test_preview_invalid_input_is_exit_2_with_one_hint(
    home: Path, args: list[str], fragment: str
) -> None:
    line = assert_error(run(home, "routines", "schedule-preview", *args), 2, fragment)
    assert not re.search(r"\)\s*\(", line), f"two hints: {line}"


def test_preview_text_output(home: Path) -> None:
    out = run(
        home,
        "routines",
        "schedule-preview",
        "hourly",
        "--tz",
        "UTC",
        "--from",
        "2026-03-27T08:30:00Z",
        "--count",
        "1",
    ).ok()
    assert "at the start of every hour (UTC)" in out.stdout
    assert "2026-03-27T09:00:00+00:00" in out.stdout


# --- cron add (SPEC §4.2) -----------------------------------------------------------------


def cron_add(home: Path, name: str, *args: str) -> Out:
    return run(home, "cron", "add", name, *args)


def test_cron_add_slug_ids_then_suffixes(home: Path) -> None:
    ids = []
    for _ in range(3):
        out = cron_add(
            home, "Nightly backup", "--schedule", "0 3 * * *", "--command", "true", "--json"
        ).ok()
        ids.append(out.json()["id"])
        assert out.err_lines == [NOTE]
    assert ids == ["nightly-backup", "nightly-backup-2", "nightly-backup-3"]
    assert [r["id"] for r in read_defs(home)["routines"]] == ids
    assert read_defs(home)["routines"][0]["name"] == "Nightly backup"


def test_cron_add_explicit_existing_id_is_refused(home: Path) -> None:
    cron_add(home, "First", "--id", "job", "--schedule", "hourly", "--command", "true").ok()
    before = defs_path(home).read_bytes()
    out = cron_add(
        home, "Second", "--id", "job", "--schedule", "hourly", "--command", "false", "--json"
    )
    assert_error(out, 1, "job", "upsert")
    assert defs_path(home).read_bytes() == before


def test_cron_add_explicit_new_id_is_used(home: Path) -> None:
    out = cron_add(
        home,
        "Whatever Name",
        "--id",
        "my.job_1",
        "--schedule",
        "hourly",
        "--command",
        "true",
        "--json",
    ).ok()
    assert out.json()["id"] == "my.job_1"


def test_cron_add_every_option_written_canonically(home: Path) -> None:
    out = cron_add(
        home,
        "All options",
        "--schedule",
        "0 9 * * 1-5",
        "--tz",
        "Europe/Prague",
        "--argv",
        "python3",
        "--argv",
        "report.py",
        "--concurrency",
        "queue-one",
        "--misfire",
        "catch-up",
        "--grace-ms",
        "1000",
        "--jitter-ms",
        "500",
        "--max-attempts",
        "3",
        "--backoff-ms",
        "2000",
        "--quiet-hours",
        "22:00-07:00",
        "--approval",
        "before-first-run",
        "--disabled",
        "--json",
    ).ok()
    r = out.json()
    assert r["id"] == "all-options"
    assert r["trigger"] == {
        "kind": "schedule",
        "schedule": {"type": "cron", "expr": "0 9 * * 1-5", "timezone": "Europe/Prague"},
    }
    assert r["action"]["argv"] == ["python3", "report.py"]
    assert r["concurrency"] == "queue_one"
    assert r["misfire"] == {"policy": "catch_up", "grace_ms": 1000, "max_catch_up_runs": 1}
    assert r["jitter_ms"] == 500
    assert r["retry"] == {"max_attempts": 3, "backoff_ms": 2000, "max_backoff_ms": 3_600_000}
    assert r["quiet_hours"]["start"] == "22:00" and r["quiet_hours"]["end"] == "07:00"
    assert r["approval"] == "before_first_run"
    assert r["enabled"] is False and r["state"] == "disabled" and r["next_run_at"] is None
    raw = defs_path(home).read_text()
    assert '"queue_one"' in raw and '"catch_up"' in raw and '"before_first_run"' in raw
    assert "queue-one" not in raw and "catch-up" not in raw and "before-first-run" not in raw
    (stored,) = read_defs(home)["routines"]
    assert stored["concurrency"] == "queue_one" and stored["misfire"]["policy"] == "catch_up"
    assert stored["quiet_hours"]["start"] == "22:00" and stored["quiet_hours"]["end"] == "07:00"


def test_cron_add_queue_1_alias(home: Path) -> None:
    r = (
        cron_add(
            home,
            "Q",
            "--schedule",
            "hourly",
            "--command",
            "true",
            "--concurrency",
            "queue(1)",
            "--json",
        )
        .ok()
        .json()
    )
    assert r["concurrency"] == "queue_one"
    assert read_defs(home)["routines"][0]["concurrency"] == "queue_one"


@pytest.mark.parametrize(
    ("flag", "want"),
    [
        (["--command", "echo hi"], {"kind": "command", "shell": "echo hi"}),
        (
            ["--argv", "echo", "--argv", "hi there"],
            {"kind": "command", "argv": ["echo", "hi there"]},
        ),
        (["--prompt", "summarize"], {"kind": "prompt", "prompt": "summarize"}),
    ],
)
def test_cron_add_action_kinds(home: Path, flag: list[str], want: dict[str, Any]) -> None:
    r = cron_add(home, "A", "--schedule", "hourly", *flag, "--json").ok().json()
    for k, v in want.items():
        assert r["action"][k] == v
    assert r["action"]["timeout_ms"] == 3_600_000


def test_cron_add_json_is_the_routine_plus_next_run_at(home: Path) -> None:
    before = datetime.now(UTC)
    r = (
        cron_add(
            home,
            "Nightly",
            "--schedule",
            "0 3 * * *",
            "--tz",
            "Europe/Prague",
            "--command",
            "true",
            "--json",
        )
        .ok()
        .json()
    )
    assert set(r) >= DEFINITION_KEYS
    assert {"next_run_at", "last_run", "state"} <= set(r)
    assert r["last_run"] is None and r["state"] == "enabled"
    # the next 03:00 in Prague after now, with Prague's offset at that instant
    day = before.astimezone(PRAGUE).date()
    want = None
    for i in range(3):
        d = day + timedelta(days=i)
        cand = datetime(d.year, d.month, d.day, 3, 0, tzinfo=PRAGUE)
        if cand > before:
            want = cand
            break
    assert want is not None
    assert r["next_run_at"] == want.isoformat(timespec="seconds")
    assert r["next_run_at_unix_ms"] == int(want.timestamp() * 1000)
    stored = read_defs(home)["routines"][0]
    assert {k: v for k, v in r.items() if k in stored} == stored
    assert "next_run_at" not in stored and "state" not in stored


def test_cron_add_every_writes_its_anchor_and_next_run(home: Path) -> None:
    before = now_ms()
    r = (
        cron_add(home, "Poll", "--schedule", "every 5 minutes", "--command", "true", "--json")
        .ok()
        .json()
    )
    after = now_ms()
    sched = r["trigger"]["schedule"]
    assert sched["type"] == "every" and sched["interval_ms"] == 300_000
    anchor = ms_of(sched["anchor"])
    assert before <= anchor <= after
    assert ms_of(r["next_run_at"]) == anchor + 300_000
    assert read_defs(home)["routines"][0]["trigger"]["schedule"]["anchor"] == sched["anchor"]
    # the stopped-daemon list sees the same next run (the anchor is in the file)
    (entry,) = run(home, "routines", "list", "--json").ok().json()["routines"]
    assert entry["next_run_at"] == r["next_run_at"]


def test_cron_add_in_20_minutes_is_a_one_shot(home: Path) -> None:
    before = now_ms()
    r = (
        cron_add(home, "Once", "--schedule", "in 20 minutes", "--command", "true", "--json")
        .ok()
        .json()
    )
    assert r["trigger"]["schedule"]["type"] == "at"
    at = ms_of(r["trigger"]["schedule"]["at"])
    assert before + 1_200_000 <= at <= now_ms() + 1_200_000
    assert ms_of(r["next_run_at"]) == at


def test_cron_add_invalid_schedule_is_exit_2_and_writes_nothing(home: Path) -> None:
    out = cron_add(home, "Bad", "--schedule", "0 25 * * *", "--command", "true", "--json")
    assert_error(out, 2, "hour 25 is out of range 0-23")
    assert not defs_path(home).exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--misfire", "bogus"], "bogus"),
        (["--concurrency", "bogus"], "bogus"),
        (["--approval", "bogus"], "bogus"),
        (["--quiet-hours", "22-07"], "quiet_hours"),
        (["--quiet-hours", "2200"], "22:00-07:00"),
        (["--jitter-ms", "70000"], "jitter_ms"),
        (["--grace-ms", "-1"], "grace_ms"),
        (["--max-attempts", "17"], "max_attempts"),
        (["--tz", "Nope/Nope"], "Nope/Nope"),
        (["--argv", "true"], "exactly one"),  # --command and --argv both
        (["--backoff-ms", "1.5"], "--backoff-ms"),  # click's own parsing: still one line
    ],
)
def test_cron_add_invalid_options(home: Path, args: list[str], fragment: str) -> None:
    out = cron_add(home, "Z", "--schedule", "hourly", "--command", "true", *args, "--json")
    assert_error(out, 2, fragment)
    assert not defs_path(home).exists()


def test_cron_add_without_schedule_or_action(home: Path) -> None:
    assert_error(cron_add(home, "Z", "--command", "true"), 2, "--schedule")
    assert_error(cron_add(home, "Z", "--schedule", "hourly"), 2, "exactly one")


def test_cron_add_concurrent_writers_get_distinct_ids(home: Path) -> None:
    home.mkdir(mode=0o700)
    procs = [
        subprocess.Popen(
            [
                str(PALYRA),
                "--home",
                str(home),
                "cron",
                "add",
                "Same",
                "--schedule",
                "hourly",
                "--command",
                "true",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    ids = sorted(r["id"] for r in read_defs(home)["routines"])
    assert ids == ["same", "same-2", "same-3", "same-4"]


# --- routines upsert ----------------------------------------------------------------------


def test_upsert_from_file_adds_then_replaces(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "r.json"
    f.write_bytes(orjson.dumps(manual("man", tags=["x"])))
    out = run(home, "routines", "upsert", "--file", str(f), "--json").ok()
    assert out.err_lines == [NOTE]
    r = out.json()
    assert r["id"] == "man" and r["tags"] == ["x"] and r["state"] == "enabled"
    assert r["next_run_at"] is None and r["last_run"] is None
    f.write_bytes(orjson.dumps(manual("man", enabled=False)))
    text = run(home, "routines", "upsert", "--file", str(f)).ok()
    assert "replaced man" in text.stdout
    (stored,) = read_defs(home)["routines"]
    assert stored["enabled"] is False and stored["tags"] == []


@pytest.mark.parametrize("argv", [["-"], ["--file", "-"]])
def test_upsert_from_stdin(home: Path, argv: list[str]) -> None:
    body = orjson.dumps(manual("from-stdin")).decode()
    out = run(home, "routines", "upsert", *argv, "--json", input=body).ok()
    assert out.json()["id"] == "from-stdin"
    assert [r["id"] for r in read_defs(home)["routines"]] == ["from-stdin"]


def test_upsert_nested_policy_keeps_defaults_and_aliases_are_canonical(home: Path) -> None:
    body = orjson.dumps(
        manual(
            "p", retry={"max_attempts": 3}, concurrency="queue(1)", misfire={"policy": "catch-up"}
        )
    ).decode()
    r = run(home, "routines", "upsert", "-", "--json", input=body).ok().json()
    assert r["retry"] == {"max_attempts": 3, "backoff_ms": 1000, "max_backoff_ms": 3_600_000}
    assert r["concurrency"] == "queue_one" and r["misfire"]["policy"] == "catch_up"
    raw = defs_path(home).read_text()
    assert "queue(1)" not in raw and "catch-up" not in raw


def test_upsert_any_trigger_kind(home: Path) -> None:
    body = orjson.dumps(
        {
            "id": "hooked",
            "trigger": {"kind": "hook", "hook_id": "deploy"},
            "action": {"kind": "command", "shell": "echo deployed"},
        }
    ).decode()
    r = run(home, "routines", "upsert", "-", "--json", input=body).ok().json()
    assert r["trigger"]["kind"] == "hook"


def test_upsert_invalid_routine_is_exit_2_and_writes_nothing(home: Path) -> None:
    body = '{"id": "bad", "trigger": {"kind": "manual"},\n "action": {"kind": "command"}, "x": 1}'
    out = run(home, "routines", "upsert", "-", input=body)
    line = assert_error(out, 2, "<stdin>:")
    assert re.search(r"<stdin>:\d+:\d+: ", line)
    assert not defs_path(home).exists()


def test_upsert_invalid_json(home: Path) -> None:
    out = run(home, "routines", "upsert", "-", input='{"id": "bad",\n')
    assert_error(out, 2, "invalid JSON", "<stdin>:2:")
    assert not defs_path(home).exists()


def test_upsert_needs_a_source(tmp_path: Path, home: Path) -> None:
    assert_error(run(home, "routines", "upsert"), 2, "--file")
    assert_error(run(home, "routines", "upsert", "--file", str(tmp_path / "nope.json")), 2)


# --- routines list / show / cron list -----------------------------------------------------


def test_list_and_show_shapes(home: Path) -> None:
    write_defs(
        home,
        [
            manual("man"),
            cron_routine("cr", "0 9 * * *", "Europe/Prague"),
            manual("off", enabled=False),
            manual("gated", approval="before_enable"),
        ],
    )
    doc = run(home, "routines", "list", "--json").ok().json()
    assert set(doc) == {"routines"}
    entries = {e["id"]: e for e in doc["routines"]}
    assert list(entries) == ["man", "cr", "off", "gated"]  # file order
    for e in entries.values():
        assert set(e) >= DEFINITION_KEYS
        assert {"next_run_at", "last_run", "state"} <= set(e)
        assert e["last_run"] is None
    assert entries["man"]["state"] == "enabled" and entries["man"]["next_run_at"] is None
    assert entries["off"]["state"] == "disabled"
    assert entries["gated"]["state"] == "awaiting_approval"
    nxt = datetime.fromisoformat(entries["cr"]["next_run_at"])
    assert (
        nxt.astimezone(PRAGUE).hour == 9 and nxt.utcoffset() == nxt.astimezone(PRAGUE).utcoffset()
    )
    for rid, e in entries.items():
        assert run(home, "routines", "show", rid, "--json").ok().json() == e
    cron_only = run(home, "cron", "list", "--json").ok().json()
    assert [e["id"] for e in cron_only["routines"]] == ["cr"]
    assert cron_only["routines"][0] == entries["cr"]


def test_list_text_and_show_text_say_why(home: Path) -> None:
    write_defs(home, [cron_routine("cr", "0 9 * * *", "Europe/Prague")])
    listing = run(home, "routines", "list").ok()
    assert "cr" in listing.stdout and "enabled" in listing.stdout
    shown = run(home, "routines", "show", "cr").ok()
    assert "why:" in shown.stdout
    assert "at 09:00 every day (Europe/Prague)" in shown.stdout
    empty = run(home / "other", "routines", "list").ok()
    assert "no routines" in empty.stdout


def test_show_unknown_is_exit_1(home: Path) -> None:
    write_defs(home, [manual("man")])
    assert_error(run(home, "routines", "show", "nope", "--json"), 1, "nope")


# --- enable / disable / delete / pause / resume -------------------------------------------


@pytest.mark.parametrize(
    ("off", "on"),
    [(("routines", "disable"), ("routines", "enable")), (("cron", "pause"), ("cron", "resume"))],
)
def test_disable_and_enable(home: Path, off: tuple[str, str], on: tuple[str, str]) -> None:
    write_defs(home, [cron_routine("cr", "0 9 * * *")])
    out = run(home, *off, "cr").ok()
    assert out.err_lines == [NOTE]
    assert read_defs(home)["routines"][0]["enabled"] is False
    e = run(home, "routines", "show", "cr", "--json").ok().json()
    assert e["state"] == "disabled" and e["next_run_at"] is None
    run(home, *on, "cr").ok()
    assert read_defs(home)["routines"][0]["enabled"] is True
    e = run(home, "routines", "show", "cr", "--json").ok().json()
    assert e["state"] == "enabled" and e["next_run_at"] is not None


@pytest.mark.parametrize("group", ["routines", "cron"])
def test_delete(home: Path, group: str) -> None:
    write_defs(home, [cron_routine("a"), cron_routine("b")])
    out = run(home, group, "delete", "a").ok()
    assert out.err_lines == [NOTE]
    assert [r["id"] for r in read_defs(home)["routines"]] == ["b"]
    assert_error(run(home, group, "delete", "a"), 1, "'a'")


@pytest.mark.parametrize(
    "argv",
    [
        ["routines", "enable", "nope"],
        ["routines", "disable", "nope"],
        ["routines", "delete", "nope"],
        ["cron", "pause", "nope"],
        ["cron", "resume", "nope"],
        ["cron", "delete", "nope"],
        ["routines", "show", "nope"],
        ["routines", "run-now", "nope"],
        ["cron", "run-now", "nope"],
        ["routines", "logs", "nope"],
        ["cron", "logs", "nope"],
        ["runs", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    ],
)
def test_unknown_id_is_exit_1(home: Path, argv: list[str]) -> None:
    write_defs(home, [cron_routine("cr")])
    before = defs_path(home).read_bytes()
    assert_error(run(home, *argv), 1)
    assert defs_path(home).read_bytes() == before


# --- run-now / logs / runs show -----------------------------------------------------------


def journal_runs(home: Path) -> list[Any]:
    j = Journal(home / "journal.sqlite3")
    try:
        return [
            r for rid in ("man", "off", "nope", "gated") for r in j.runs.for_routine(rid, limit=100)
        ]
    finally:
        j.close()


@pytest.mark.parametrize("group", ["routines", "cron"])
def test_run_now_with_the_daemon_stopped_stays_pending(home: Path, group: str) -> None:
    write_defs(home, [manual("man")])
    out = run(home, group, "run-now", "man", "--json").ok()
    body = out.json()
    assert set(body) == {"run_id", "status", "error_kind"}
    assert body["status"] == "pending" and body["error_kind"] is None
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", body["run_id"])  # a ULID
    assert out.err_lines == [NOTE]
    (logged,) = run(home, "routines", "logs", "man", "--json").ok().json()["runs"]
    assert logged["run_id"] == body["run_id"] and logged["status"] == "pending"
    assert logged["trigger_kind"] == "manual" and logged["attempt"] == 1
    assert logged["chain_id"] == body["run_id"]


def test_run_now_payload_is_recorded(home: Path) -> None:
    write_defs(home, [manual("man")])
    rid = run(home, "routines", "run-now", "man", "--payload", '{"k": 1}', "--json").ok().json()
    shown = run(home, "runs", "show", rid["run_id"], "--json").ok().json()
    assert shown["trigger_payload"] == {"k": 1}


def test_run_now_bad_payload_is_exit_2_and_no_record(home: Path) -> None:
    write_defs(home, [manual("man")])
    assert_error(run(home, "routines", "run-now", "man", "--payload", "{nope"), 2, "--payload")
    assert journal_runs(home) == []


def test_run_now_disabled_or_unknown_is_refused_without_a_record(home: Path) -> None:
    write_defs(home, [manual("off", enabled=False)])
    assert_error(run(home, "routines", "run-now", "off", "--json"), 1, "disabled")
    assert_error(run(home, "routines", "run-now", "nope", "--json"), 1, "nope")
    assert journal_runs(home) == []


def test_run_now_awaiting_approval_is_refused_without_a_record(home: Path) -> None:
    write_defs(home, [manual("gated", approval="before_enable")])
    assert run(home, "routines", "show", "gated", "--json").json()["state"] == "awaiting_approval"
    out = run(home, "routines", "run-now", "gated", "--json")
    assert out.code == 1
    assert journal_runs(home) == []


def _three_runs(home: Path) -> list[str]:
    write_defs(home, [manual("man")])
    return [
        run(home, "routines", "run-now", "man", "--json").ok().json()["run_id"] for _ in range(3)
    ]


def test_logs_json_shape_newest_first(home: Path) -> None:
    ids = _three_runs(home)
    doc = run(home, "routines", "logs", "man", "--json").ok().json()
    assert set(doc) == {"runs"}
    assert [r["run_id"] for r in doc["runs"]] == ids[::-1]
    for r in doc["runs"]:
        assert set(r) >= RUN_FIELDS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", r["queued_at"])
        assert r["queued_at_unix_ms"] == ms_of(r["queued_at"])
    assert run(home, "cron", "logs", "man", "--json").ok().json() == doc


@pytest.mark.parametrize(
    ("limit", "code"), [("0", 2), ("1001", 2), ("abc", 2), ("1", 0), ("1000", 0)]
)
def test_logs_limit_bounds(home: Path, limit: str, code: int) -> None:
    ids = _three_runs(home)
    out = run(home, "routines", "logs", "man", "--limit", limit, "--json")
    if code:
        assert_error(out, code, "--limit")
    else:
        got = [r["run_id"] for r in out.ok().json()["runs"]]
        assert got == ids[::-1][: int(limit)]


def test_logs_before_and_status_filters(home: Path) -> None:
    ids = _three_runs(home)
    older = run(home, "routines", "logs", "man", "--before", ids[2], "--json").ok().json()
    assert [r["run_id"] for r in older["runs"]] == [ids[1], ids[0]]
    failed = run(home, "routines", "logs", "man", "--status", "failed", "--json").ok().json()
    assert failed == {"runs": []}
    assert_error(run(home, "routines", "logs", "man", "--status", "bogus"), 2, "--status")


def test_logs_of_a_defined_routine_without_runs_is_empty(home: Path) -> None:
    write_defs(home, [manual("man")])
    assert run(home, "routines", "logs", "man", "--json").ok().json() == {"runs": []}
    assert "no runs" in run(home, "routines", "logs", "man").ok().stdout


def test_logs_of_a_deleted_routine_keep_its_history(home: Path) -> None:
    ids = _three_runs(home)
    run(home, "routines", "delete", "man").ok()
    doc = run(home, "routines", "logs", "man", "--json").ok().json()
    assert [r["run_id"] for r in doc["runs"]] == ids[::-1]


def test_runs_show(home: Path) -> None:
    (rid, *_) = _three_runs(home)
    logged = {r["run_id"]: r for r in run(home, "routines", "logs", "man", "--json").json()["runs"]}
    shown = run(home, "runs", "show", rid, "--json").ok().json()
    assert shown == logged[rid]
    text = run(home, "runs", "show", rid).ok().stdout
    assert rid in text and "pending" in text
    assert run(home, "runs", "show", rid, "--output").ok().stdout == ""  # nothing captured yet
    assert_error(run(home, "runs", "show", "NOPE", "--json"), 1, "NOPE")


# --- cron status --------------------------------------------------------------------------


def test_cron_status_json(home: Path) -> None:
    cron_add(home, "Soon", "--schedule", "in 10 minutes", "--command", "true").ok()
    cron_add(home, "Later", "--schedule", "in 2 hours", "--command", "true").ok()
    cron_add(home, "Off", "--schedule", "hourly", "--command", "true", "--disabled").ok()
    write_defs(home, [*read_defs(home)["routines"], manual("man")])
    doc = run(home, "cron", "status", "--json").ok().json()
    assert doc["counts"] == {
        "total": 3,
        "enabled": 2,
        "disabled": 1,
        "overdue": 0,
        "due_within_15m": 1,
    }
    assert [n["routine_id"] for n in doc["next_runs"]] == ["soon", "later"]
    assert doc["overdue"] == []
    assert {r["routine_id"]: r["last_status"] for r in doc["routines"]} == {
        "soon": None,
        "later": None,
        "off": None,
    }
    text = run(home, "cron", "status").ok().stdout
    assert "enabled 2" in text and "disabled 1" in text


def test_cron_status_empty(home: Path) -> None:
    doc = run(home, "cron", "status", "--json").ok().json()
    assert doc["counts"]["total"] == 0 and doc["next_runs"] == []


# --- definitions.json on disk (SPEC §1, §2) -----------------------------------------------


def test_definitions_file_mode_and_backup(home: Path) -> None:
    cron_add(home, "One", "--schedule", "hourly", "--command", "true").ok()
    p = defs_path(home)
    bak = p.with_name("definitions.json.bak")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert not bak.exists()
    first = p.read_bytes()
    cron_add(home, "Two", "--schedule", "hourly", "--command", "true").ok()
    assert bak.read_bytes() == first
    assert stat.S_IMODE(bak.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [r["id"] for r in read_defs(home)["routines"]] == ["one", "two"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    leftovers = [x.name for x in p.parent.iterdir() if x.name.endswith(".tmp")]
    assert leftovers == []


def test_cli_write_canonicalizes_hand_written_aliases(home: Path) -> None:
    write_defs(home, [manual("hand", concurrency="queue(1)", misfire={"policy": "catch-up"})])
    run(home, "routines", "disable", "hand").ok()
    raw = defs_path(home).read_text()
    assert "queue(1)" not in raw and "catch-up" not in raw
    (r,) = read_defs(home)["routines"]
    assert r["concurrency"] == "queue_one" and r["misfire"]["policy"] == "catch_up"


BROKEN = {
    "unknown key": b'{"schema_version": 1, "routines": [\n'
    b'  {"id": "a", "trigger": {"kind": "manual"}, "action": {"kind": "command", "argv": ["true"]},'
    b' "oops": 1}\n]}\n',
    "syntax": b'{"schema_version": 1, "routines": [\n  {"id": "a",\n',
    "invalid utf-8": b'{"schema_version": 1, "routines": [], "x": "\xff"}',
}
WRITES = [
    ["cron", "add", "New", "--schedule", "hourly", "--command", "true"],
    ["routines", "upsert", "-"],
    ["routines", "enable", "a"],
    ["routines", "disable", "a"],
    ["routines", "delete", "a"],
    ["cron", "pause", "a"],
    ["cron", "resume", "a"],
    ["cron", "delete", "a"],
]


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("argv", WRITES, ids=lambda a: " ".join(a[:2]))
def test_hand_broken_definitions_are_never_overwritten(
    home: Path, kind: str, argv: list[str]
) -> None:
    p = defs_path(home)
    p.parent.mkdir(parents=True)
    p.write_bytes(BROKEN[kind])
    out = run(home, *argv, input=orjson.dumps(manual("b")).decode())
    line = assert_error(out, 2, "definitions.json")
    assert re.search(r"definitions\.json:\d+:\d+: ", line), line
    assert p.read_bytes() == BROKEN[kind]
    assert not p.with_name("definitions.json.bak").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["routines", "list"],
        ["cron", "list"],
        ["routines", "show", "a"],
        ["cron", "status"],
        ["routines", "run-now", "a"],
    ],
)
def test_reads_of_a_broken_file_report_it(home: Path, argv: list[str]) -> None:
    p = defs_path(home)
    p.parent.mkdir(parents=True)
    p.write_bytes(BROKEN["unknown key"])
    assert_error(run(home, *argv, "--json"), 2, "oops", "palyra routines validate")
    assert p.read_bytes() == BROKEN["unknown key"]


# --- end to end through the console script ------------------------------------------------


def test_e2e_cron_add_json_stdout_and_note_on_stderr(home: Path) -> None:
    out = run_bin(
        "--home",
        str(home),
        "cron",
        "add",
        "Nightly backup",
        "--schedule",
        "0 3 * * *",
        "--command",
        "true",
        "--json",
    ).ok()
    assert out.json()["id"] == "nightly-backup"
    assert out.stderr == NOTE + "\n"


def test_e2e_refusal_is_exit_1_with_one_error_line(home: Path) -> None:
    run_bin(
        "--home",
        str(home),
        "cron",
        "add",
        "J",
        "--id",
        "job",
        "--schedule",
        "hourly",
        "--command",
        "true",
    ).ok()
    out = run_bin(
        "cron",
        "add",
        "J",
        "--id",
        "job",
        "--schedule",
        "hourly",
        "--command",
        "true",
        "--home",
        str(home),
    )
    assert out.code == 1
    assert out.stdout == ""
    assert out.stderr == (
        "error: routine 'job' already exists (use: palyra routines upsert to replace it)\n"
    )


def test_e2e_invalid_input_and_usage_are_exit_2(tmp_path: Path, home: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text(BAD_DOC, encoding="utf-8")
    out = run_bin("--home", str(home), "routines", "validate", str(f), "--json")
    assert out.code == 2
    assert out.json()["ok"] is False
    usage = run_bin("--home", str(home), "routines", "logs")
    assert usage.code == 2
    assert usage.stdout == ""
    assert usage.err_lines == [
        "error: missing argument 'ROUTINE_ID' (see: palyra routines logs --help)"
    ]


def test_e2e_run_now_and_logs(home: Path) -> None:
    write_defs(home, [manual("man")])
    out = run_bin("--home", str(home), "routines", "run-now", "man", "--json").ok()
    body = out.json()
    assert body["status"] == "pending"
    assert out.stderr == NOTE + "\n"
    logs = run_bin("routines", "logs", "man", "--json", "--home", str(home)).ok().json()
    assert [r["run_id"] for r in logs["runs"]] == [body["run_id"]]


# --- cancel and daemon commands with the daemon stopped -----------------------------------


def test_cancel_a_pending_run_offline(home: Path) -> None:
    (rid, *_) = _three_runs(home)
    out = run(home, "routines", "cancel", rid).ok()
    assert rid in out.stdout and "cancelled" in out.stdout
    shown = run(home, "runs", "show", rid, "--json").ok().json()
    assert shown["status"] == "cancelled"
    assert run(home, "routines", "cancel", rid).ok()  # idempotent
    assert_error(run(home, "routines", "cancel", "NOPE"), 1, "NOPE")


@pytest.mark.parametrize("stale_pid_file", [False, True])
def test_daemon_status_when_stopped(home: Path, stale_pid_file: bool) -> None:
    if stale_pid_file:  # left behind by a crash: must read as stopped
        (home / "run").mkdir(parents=True)
        (home / "run" / "palyrad.pid").write_text("999999\n")
    out = run(home, "daemon", "status", "--json").ok()
    assert out.json() == {
        "running": False,
        "pid": None,
        "started_at": None,
        "processes": [],
        "endpoints": {"pairing": None, "node": None, "webhook": None},
    }
    assert "not running" in run(home, "daemon", "status").ok().stdout


def test_daemon_stop_when_stopped_is_a_note(home: Path) -> None:
    out = run(home, "daemon", "stop").ok()
    assert out.stdout == ""
    assert out.err_lines == ["note: palyrad is not running"]


def test_install_service_print_writes_nothing(home: Path) -> None:
    out = run(home, "daemon", "install-service", "--print").ok()
    assert "palyrad" in out.stdout and str(home) in out.stdout
    assert out.stderr == ""


# --- palyra.toml ([scheduler] timezone is the default zone) -------------------------------


def write_config(home: Path, text: str) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "palyra.toml").write_text(text)


def test_config_timezone_is_the_default_zone(home: Path) -> None:
    write_config(home, '[scheduler]\ntimezone = "Asia/Tokyo"\n')
    doc = preview(home, "daily at 7", "--from", "2026-03-27T23:30:00Z", "--count", "1")
    assert doc["schedule"]["timezone"] == "Asia/Tokyo"
    assert doc["fires"] == ["2026-03-29T07:00:00+09:00"]
    r = cron_add(home, "T", "--schedule", "daily at 7", "--command", "true", "--json").ok().json()
    assert r["trigger"]["schedule"]["timezone"] == "Asia/Tokyo"
    assert r["next_run_at"].endswith("T07:00:00+09:00")


@pytest.mark.parametrize(
    "argv",
    [
        ["routines", "list", "--json"],
        ["routines", "validate", "--json"],
        ["routines", "schedule-preview", "hourly", "--json"],
        ["cron", "add", "X", "--schedule", "hourly", "--command", "true", "--json"],
        ["cron", "status", "--json"],
    ],
)
@pytest.mark.parametrize(
    "config",
    ["[scheduler\n", "[scheduler]\nbogus = 1\n", '[executor]\nmax_concurrent_runs = "x"\n'],
)
def test_broken_config_is_one_error_line_exit_2(home: Path, argv: list[str], config: str) -> None:
    write_config(home, config)
    assert_error(run(home, *argv), 2, "palyra.toml")
    assert not defs_path(home).exists()


def test_config_with_an_unknown_zone_names_the_config(home: Path) -> None:
    write_config(home, '[scheduler]\ntimezone = "Nope/Zone"\n')
    assert_error(run(home, "routines", "schedule-preview", "hourly"), 2, "Nope/Zone", "palyra.toml")
    assert_error(
        run(home, "cron", "add", "X", "--schedule", "hourly", "--command", "true"),
        2,
        "Nope/Zone",
        "palyra.toml",
    )
    # an explicit --tz wins over the broken default
    assert preview(home, "hourly", "--tz", "UTC", "--count", "1")["schedule"]["timezone"] == "UTC"
