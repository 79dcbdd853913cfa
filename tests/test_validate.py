"""definitions.json validation (SPEC §2, §2.4): every error, with its path, line and column."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from routines import jsonpos
from routines.definitions_file import dumps
from routines.model import (
    Approval,
    AtSchedule,
    CommandAction,
    Concurrency,
    CronSchedule,
    Definitions,
    Delivery,
    EverySchedule,
    FileEvent,
    FileWatchTrigger,
    ManualTrigger,
    Misfire,
    MisfirePolicy,
    PromptAction,
    QuietHours,
    Retry,
    Routine,
    ScheduleTrigger,
    SilentPolicy,
    WebhookTrigger,
    trigger_to_json,
)
from routines.validate import Issue, ValidationResult, format_issue, parse_routine, validate_text
from routines.validate import document as validate  # the limits live there
from routines.validate.primitives import describe

NOW = 1_774_000_000_000  # 2026-03-20T09:46:40Z
ENV = {"HOOK_SECRET": "s3cret"}


def check(text: str | bytes, **kw: object) -> ValidationResult:
    args: dict[str, object] = {"filename": "definitions.json", "now_ms": NOW, "env": ENV}
    args.update(kw)
    return validate_text(text, **args)  # type: ignore[arg-type]


def at(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """(line, column) of the nth occurrence of ``needle``: positions computed independently
    of the code under test, in characters."""
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    return text.count("\n", 0, idx) + 1, idx - (text.rfind("\n", 0, idx) + 1) + 1


def where(issues: list[Issue]) -> list[tuple[str, int, int]]:
    return [(i.path, i.line, i.column) for i in issues]


def one_routine(body: str) -> str:
    """A document holding one routine object given as JSON text (kept as written)."""
    return '{\n  "schema_version": 1,\n  "routines": [\n    ' + body + "\n  ]\n}\n"


MINIMAL = (
    '{"id": "r1", "trigger": {"kind": "manual"}, "action": {"kind": "command", "argv": ["true"]}}'
)


def single_error(text: str | bytes, **kw: object) -> Issue:
    res = check(text, **kw)
    assert res.definitions is None
    assert len(res.errors) == 1, res.errors
    return res.errors[0]


# --- valid documents and defaults --------------------------------------------------------

SPEC_EXAMPLE = """{
  "schema_version": 1,
  "routines": [
    {
      "id": "morning-report",
      "name": "Morning report",
      "enabled": true,
      "trigger": {
        "kind": "schedule",
        "schedule": {"type": "cron", "expr": "0 9 * * 1-5", "timezone": "Europe/Prague"}
      },
      "action": {"kind": "command", "argv": ["python3", "report.py"], "cwd": "~/reports",
                 "env": {"REPORT_MODE": "short"}, "timeout_ms": 600000},
      "concurrency": "forbid",
      "misfire": {"policy": "catch_up", "grace_ms": 60000, "max_catch_up_runs": 1},
      "jitter_ms": 0,
      "retry": {"max_attempts": 3, "backoff_ms": 5000, "max_backoff_ms": 600000},
      "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Prague"},
      "approval": "none",
      "cooldown_ms": 0,
      "delivery": {"mode": "logs_only"},
      "tags": ["reports"]
    }
  ]
}
"""


def test_spec_example_is_valid() -> None:
    res = check(SPEC_EXAMPLE)
    assert res.ok and res.errors == [] and res.warnings == []
    assert res.definitions is not None
    (r,) = res.definitions.routines
    assert r == Routine(
        id="morning-report",
        name="Morning report",
        trigger=ScheduleTrigger(CronSchedule("0 9 * * 1-5", "Europe/Prague")),
        action=CommandAction(
            argv=("python3", "report.py"),
            cwd="~/reports",
            env=(("REPORT_MODE", "short"),),
            timeout_ms=600_000,
        ),
        misfire=Misfire(MisfirePolicy.CATCH_UP, 60_000, 1),
        retry=Retry(3, 5000, 600_000),
        quiet_hours=QuietHours("22:00", "07:00", "Europe/Prague"),
        tags=("reports",),
    )


def test_minimal_routine_gets_every_default() -> None:
    res = check(one_routine(MINIMAL))
    assert res.definitions == Definitions(
        (
            Routine(
                id="r1",
                trigger=ManualTrigger(),
                action=CommandAction(argv=("true",)),
            ),
        )
    )
    r = res.definitions.routines[0]
    assert r.enabled is True
    assert r.concurrency is Concurrency.FORBID
    assert r.misfire == Misfire(MisfirePolicy.SKIP, 60_000, 1)
    assert r.retry == Retry(1, 1_000, 3_600_000)
    assert r.jitter_ms == 0 and r.cooldown_ms == 0 and r.quiet_hours is None
    assert r.approval is Approval.NONE and r.delivery == Delivery("logs_only")
    assert r.action.timeout_ms == 3_600_000


def test_empty_document_and_missing_routines_key() -> None:
    res = check('{"schema_version": 1}')
    assert res.ok and res.definitions == Definitions()
    res = check('{"schema_version": 1, "routines": []}')
    assert res.ok and res.definitions == Definitions()


def test_nested_policy_objects_take_defaults_for_omitted_keys() -> None:
    body = MINIMAL[:-1] + ', "retry": {"max_attempts": 3}, "misfire": {"policy": "catch_up"}}'
    res = check(one_routine(body))
    assert res.definitions is not None
    r = res.definitions.routines[0]
    assert r.retry == Retry(3, 1_000, 3_600_000)
    assert r.misfire == Misfire(MisfirePolicy.CATCH_UP, 60_000, 1)


def test_cron_timezone_defaults_to_configured_zone() -> None:
    body = (
        '{"id": "c", "trigger": {"kind": "schedule", "schedule": {"type": "cron", '
        '"expr": "0 9 * * *"}}, "action": {"kind": "prompt", "prompt": "hi"}}'
    )
    res = check(one_routine(body))
    assert res.definitions is not None
    assert res.definitions.routines[0].trigger == ScheduleTrigger(CronSchedule("0 9 * * *", "UTC"))
    res = check(one_routine(body), default_timezone="Asia/Tokyo")
    assert res.definitions is not None
    sched = res.definitions.routines[0].schedule
    assert sched == CronSchedule("0 9 * * *", "Asia/Tokyo")
    err = single_error(one_routine(body), default_timezone="Mars/Base")
    assert (err.path, err.message) == (
        "routines[0].trigger.schedule.timezone",
        'missing required key "timezone" (the default time zone "Mars/Base" from palyra.toml '
        "is unknown)",
    )


@pytest.mark.parametrize(
    ("key", "spelling", "expected"),
    [
        ("concurrency", "queue(1)", Concurrency.QUEUE_ONE),
        ("concurrency", "queue-one", Concurrency.QUEUE_ONE),
        ("concurrency", "queue_one", Concurrency.QUEUE_ONE),
        ("concurrency", "replace", Concurrency.REPLACE),
        ("approval", "before-first-run", Approval.BEFORE_FIRST_RUN),
        ("approval", "before-enable", Approval.BEFORE_ENABLE),
    ],
)
def test_enum_aliases_are_accepted(key: str, spelling: str, expected: object) -> None:
    body = MINIMAL[:-1] + f', "{key}": "{spelling}"}}'
    res = check(one_routine(body))
    assert res.definitions is not None
    assert getattr(res.definitions.routines[0], key) is expected
    # writers emit the canonical spelling
    assert res.definitions.routines[0].to_json()[key] == getattr(expected, "value", None)


def test_kebab_case_aliases_in_nested_values_and_kinds() -> None:
    body = (
        '{"id": "w", "trigger": {"kind": "file-watch", "paths": ["/"], "events": ["created"]},'
        ' "action": {"kind": "command", "shell": "true"},'
        ' "misfire": {"policy": "catch-up"},'
        ' "delivery": {"mode": "channel", "channel": "phone", "silent_policy": "failure-only"}}'
    )
    res = check(one_routine(body))
    assert res.ok, res.errors
    assert res.definitions is not None
    r = res.definitions.routines[0]
    assert isinstance(r.trigger, FileWatchTrigger) and r.trigger.events == (FileEvent.CREATED,)
    assert r.misfire.policy is MisfirePolicy.CATCH_UP
    assert r.delivery == Delivery(
        "channel", channel="phone", silent_policy=SilentPolicy.FAILURE_ONLY
    )


def test_every_anchor_with_milliseconds_and_at_schedule() -> None:
    body = (
        '{"id": "e", "trigger": {"kind": "schedule", "schedule": {"type": "every", '
        '"interval_ms": 1000, "anchor": "2026-03-29T09:00:00.250+02:00"}},'
        ' "action": {"kind": "prompt", "prompt": "x"}}'
    )
    res = check(one_routine(body))
    assert res.definitions is not None
    s = res.definitions.routines[0].schedule
    assert s == EverySchedule(1000, "2026-03-29T09:00:00.250+02:00", 1_774_767_600_250)
    body = (
        '{"id": "a", "trigger": {"kind": "schedule", "schedule": {"type": "at", '
        '"at": "2027-01-01T00:00:00Z"}}, "action": {"kind": "prompt", "prompt": "x"}}'
    )
    res = check(one_routine(body))
    assert res.ok and res.warnings == []
    assert res.definitions is not None
    assert res.definitions.routines[0].schedule == AtSchedule(
        "2027-01-01T00:00:00Z", 1_798_761_600_000
    )


def test_all_trigger_and_action_kinds(tmp_path: Path) -> None:
    routines = [
        {"id": "m", "trigger": {"kind": "manual"}, "action": {"kind": "skill", "skill_id": "s"}},
        {
            "id": "w",
            "trigger": {"kind": "webhook", "secret_env": "HOOK_SECRET"},
            "action": {"kind": "command", "shell": "echo hi"},
        },
        {
            "id": "s",
            "trigger": {"kind": "system_event", "event": "run.failed"},
            "action": {"kind": "prompt", "prompt": "look"},
        },
        {
            "id": "h",
            "trigger": {"kind": "hook", "hook_id": "deploy", "event": "push"},
            "action": {"kind": "skill", "skill_id": "x", "args": ["-v"], "timeout_ms": 5},
        },
        {
            "id": "f",
            "trigger": {
                "kind": "file_watch",
                "paths": [str(tmp_path), "~"],
                "patterns": ["*.csv"],
                "ignore": ["*.tmp"],
                "recursive": True,
                "debounce_ms": 0,
            },
            "action": {"kind": "command", "argv": ["ls"]},
        },
    ]
    res = check(json.dumps({"schema_version": 1, "routines": routines}))
    assert res.ok and res.errors == [] and res.warnings == []
    assert res.definitions is not None
    assert [r.trigger.kind for r in res.definitions.routines] == [
        "manual",
        "webhook",
        "system_event",
        "hook",
        "file_watch",
    ]
    fw = res.definitions.routines[4].trigger
    assert isinstance(fw, FileWatchTrigger)
    assert fw.events == tuple(FileEvent) and fw.recursive and fw.debounce_ms == 0


# --- the example of SPEC §2.4, to the character -----------------------------------------


def test_spec_message_format_line_14_column_22() -> None:
    text = (
        "{\n"  # 1
        '  "schema_version": 1,\n'  # 2
        '  "routines": [\n'  # 3
        "    {\n"  # 4
        '      "id": "first",\n'  # 5
        '      "trigger": {"kind": "manual"},\n'  # 6
        '      "action": {"kind": "prompt", "prompt": "hi"}\n'  # 7
        "    },\n"  # 8
        "    {\n"  # 9
        '      "id": "second",\n'  # 10
        '      "action": {"kind": "prompt", "prompt": "hi"},\n'  # 11
        '      "trigger": {\n'  # 12
        '        "kind": "schedule", "schedule": {\n'  # 13
        '            "expr" : "0 25 * * *",\n'  # 14: the value starts in column 22
        '            "type": "cron"\n'
        "        }\n"
        "      }\n"
        "    }\n"
        "  ]\n"
        "}\n"
    )
    err = single_error(text)
    assert format_issue("routines/definitions.json", err) == (
        "routines/definitions.json:14:22: routines[1].trigger.schedule.expr: "
        'invalid cron expression "0 25 * * *": hour 25 is out of range 0-23'
    )


# --- each kind of error, with its position ----------------------------------------------


def test_unknown_key_points_at_the_key_with_a_hint() -> None:
    text = one_routine(MINIMAL[:-1] + ', "concurency": "forbid"}')
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("routines[0].concurency", *at(text, '"concurency"'))
    assert err.message == 'unknown key "concurency" (did you mean "concurrency"?)'


def test_unknown_keys_in_nested_objects_and_at_the_root() -> None:
    text = (
        '{"schema_version": 1, "routine": [], "routines": [{"id": "a", '
        '"trigger": {"kind": "schedule", "schedule": {"type": "cron", "expr": "* * * * *", '
        '"timezon": "UTC"}}, "action": {"kind": "command", "argv": ["x"], "paths": ["/"]}, '
        '"retry": {"max_attempt": 2}}]}'
    )
    res = check(text)
    assert where(res.errors) == [
        ("routine", *at(text, '"routine"')),
        ("routines[0].trigger.schedule.timezon", *at(text, '"timezon"')),
        ("routines[0].action.paths", *at(text, '"paths"')),
        ("routines[0].retry.max_attempt", *at(text, '"max_attempt"')),
    ]
    msgs = [e.message for e in res.errors]
    assert msgs[0] == 'unknown key "routine" (did you mean "routines"?)'
    assert msgs[1] == 'unknown key "timezon" (did you mean "timezone"?)'
    assert msgs[3] == 'unknown key "max_attempt" (did you mean "max_attempts"?)'


def test_key_of_another_kind_is_explained() -> None:
    text = one_routine(
        '{"id": "a", "trigger": {"kind": "manual", "paths": ["/"]}, '
        '"action": {"kind": "prompt", "prompt": "x", "argv": ["y"]}}'
    )
    res = check(text)
    assert [e.message for e in res.errors] == [
        'unknown key "paths" (not used by trigger kind "manual"; it belongs to file_watch)',
        'unknown key "argv" (not used by action kind "prompt"; it belongs to command)',
    ]


def test_schema_version() -> None:
    text = '{\n  "routines": []\n}'
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("schema_version", 1, 1)
    assert err.message == 'missing required key "schema_version" (add "schema_version": 1)'
    for bad, shown in (("2", "2"), ('"1"', '"1"'), ("1.0", "1.0"), ("true", "true")):
        text = '{"routines": [], "schema_version": ' + bad + "}"
        err = single_error(text)
        assert (err.path, err.line, err.column) == ("schema_version", 1, 36)
        assert err.message == f"must be 1, got {shown}"


def test_document_must_be_an_object() -> None:
    err = single_error("  [1, 2]")
    assert (err.path, err.line, err.column) == ("", 1, 3)
    assert err.message == "the document must be a JSON object, got an array"
    err = single_error('{"schema_version": 1, "routines": {"id": "x"}}')
    assert (err.path, err.column) == ("routines", 35)
    assert err.message == "must be an array of routines, got an object"
    err = single_error(one_routine('"just a string"'))
    assert (err.path, err.line, err.column) == ("routines[0]", 4, 5)
    assert err.message == 'must be an object, got "just a string"'


def test_missing_required_keys_point_at_the_object() -> None:
    text = one_routine('{"name": "no id, trigger or action"}')
    res = check(text)
    assert where(res.errors) == [
        ("routines[0].id", 4, 5),
        ("routines[0].trigger", 4, 5),
        ("routines[0].action", 4, 5),
    ]
    assert [e.message for e in res.errors] == [
        'missing required key "id"',
        'missing required key "trigger"',
        'missing required key "action"',
    ]
    text = one_routine(
        '{"id": "x", "trigger": {"kind": "schedule"}, "action": {"kind": "command"}}'
    )
    res = check(text)
    assert where(res.errors) == [
        ("routines[0].trigger.schedule", *at(text, '{"kind": "schedule"')),
        ("routines[0].action.argv", *at(text, '{"kind": "command"')),
    ]
    assert res.errors[1].message == (
        'missing required key "argv" (a command needs "argv" (a list) or "shell" (a string))'
    )


def test_invalid_ids() -> None:
    for bad in ("Morning Report", "-x", "", "a" * 129, "tab\there", "ÿ"):
        text = one_routine(MINIMAL.replace('"r1"', json.dumps(bad)))
        err = single_error(text)
        assert (err.path, err.line, err.column) == ("routines[0].id", 4, 12)
        assert err.message.startswith("invalid id ")
        assert "ids are 1-128 characters of a-z, 0-9, '.', '_', '-'" in err.message
    err = single_error(one_routine(MINIMAL.replace('"r1"', "42")))
    assert err.message == "must be a string, got 42"
    err = single_error(one_routine(MINIMAL.replace('"r1"', '"Morning Report"')))
    assert err.message.endswith('(try "morning-report")')


def test_duplicate_id_points_at_the_second_occurrence() -> None:
    text = one_routine(MINIMAL + ",\n    " + MINIMAL.replace("true", "false"))
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("routines[1].id", *at(text, '"r1"', 2))
    assert err.message == 'duplicate id "r1" (first defined at routines[0], line 4)'


def test_duplicate_id_of_an_invalid_routine_is_still_reported() -> None:
    text = one_routine(MINIMAL[:-1] + ', "jitter_ms": -1},\n    ' + MINIMAL)
    res = check(text)
    assert [e.path for e in res.errors] == ["routines[0].jitter_ms", "routines[1].id"]


def test_null_is_an_error_wherever_a_value_is_expected() -> None:
    text = one_routine(
        '{"id": "n", "name": null, "trigger": {"kind": "manual"}, '
        '"action": {"kind": "command", "argv": ["x"], "cwd": null, "env": {"A": null}}, '
        '"jitter_ms": null, "retry": null, "misfire": {"policy": null}, "tags": null}'
    )
    res = check(text)
    assert where(res.errors) == [
        ("routines[0].name", *at(text, "null", 1)),
        ("routines[0].action.cwd", *at(text, "null", 2)),
        ("routines[0].action.env.A", *at(text, "null", 3)),
        ("routines[0].jitter_ms", *at(text, "null", 4)),
        ("routines[0].retry", *at(text, "null", 5)),
        ("routines[0].misfire.policy", *at(text, "null", 6)),
        ("routines[0].tags", *at(text, "null", 7)),
    ]
    assert res.errors[0].message == 'null is not allowed (omit "name" to use the default)'
    assert res.errors[2].message == "must be a string, got null"
    err = single_error(
        one_routine('{"id": "n", "trigger": null, "action": {"kind": "skill", "skill_id": "s"}}')
    )
    assert (err.path, err.message) == ("routines[0].trigger", "must be an object, got null")


@pytest.mark.parametrize(
    ("value", "shown"),
    [("4.0", "4.0"), ("true", "true"), ("-1", "-1"), ('"100"', '"100"'), ("1e3", "1000.0")],
)
def test_ms_fields_are_non_negative_integers(value: str, shown: str) -> None:
    text = one_routine(MINIMAL[:-1] + f', "cooldown_ms": {value}}}')
    err = single_error(text)
    line, column = at(text, '"cooldown_ms": ')
    assert (err.path, err.line, err.column) == ("routines[0].cooldown_ms", line, column + 15)
    assert err.message == f"must be a non-negative integer (milliseconds), got {shown}"


def test_booleans_are_not_integers() -> None:
    text = one_routine(MINIMAL[:-1] + ', "retry": {"max_attempts": true, "backoff_ms": false}}')
    res = check(text)
    assert [(e.path, e.message) for e in res.errors] == [
        ("routines[0].retry.max_attempts", "must be an integer, got true"),
        (
            "routines[0].retry.backoff_ms",
            "must be a non-negative integer (milliseconds), got false",
        ),
    ]
    err = single_error(one_routine(MINIMAL[:-1] + ', "enabled": 1}'))
    assert err.message == "must be true or false, got 1"


@pytest.mark.parametrize(
    ("fragment", "path", "message"),
    [
        ('"retry": {"max_attempts": 0}', "retry.max_attempts", "must be between 1 and 16, got 0"),
        ('"retry": {"max_attempts": 17}', "retry.max_attempts", "must be between 1 and 16, got 17"),
        (
            '"misfire": {"max_catch_up_runs": 101}',
            "misfire.max_catch_up_runs",
            "must be between 1 and 100, got 101",
        ),
        ('"jitter_ms": 60001', "jitter_ms", "must be at most 60000 ms, got 60001"),
        (
            '"cooldown_ms": 315360000001',
            "cooldown_ms",
            "must be at most 315360000000 ms, got 315360000001",
        ),
        (
            '"concurrency": "sometimes"',
            "concurrency",
            'unknown value "sometimes" (expected one of forbid, replace, queue_one, allow)',
        ),
        (
            '"concurrency": "Forbid"',
            "concurrency",
            'unknown value "Forbid" (expected one of forbid, replace, queue_one, allow)'
            ' (did you mean "forbid"?)',
        ),
        (
            '"approval": "before_frist_run"',
            "approval",
            'unknown value "before_frist_run" (expected one of none, before_enable, '
            'before_first_run) (did you mean "before_first_run"?)',
        ),
        (
            '"misfire": {"policy": "catchup"}',
            "misfire.policy",
            'unknown value "catchup" (expected one of skip, catch_up) (did you mean "catch_up"?)',
        ),
        ('"tags": "reports"', "tags", 'must be an array of strings, got "reports"'),
        ('"tags": ["a", 5]', "tags[1]", "must be a string, got 5"),
        ('"name": ""', "name", "must not be empty"),
        ('"enabled": "yes"', "enabled", 'must be true or false, got "yes"'),
        ('"misfire": []', "misfire", "must be an object, got an array"),
    ],
)
def test_out_of_range_and_wrong_values(fragment: str, path: str, message: str) -> None:
    text = one_routine(MINIMAL[:-1] + ", " + fragment + "}")
    err = single_error(text)
    assert (err.path, err.message) == (f"routines[0].{path}", message)
    # the position is that of the offending value: the last value in the fragment
    value = fragment.rsplit(": ", 1)[1].rstrip("}")
    if path == "tags[1]":
        value = "5]"
    line, column = at(text, fragment)
    assert (err.line, err.column) == (line, column + fragment.rindex(value))


def test_quiet_hours() -> None:
    def qh(v: str) -> list[tuple[str, str]]:
        res = check(one_routine(MINIMAL[:-1] + f', "quiet_hours": {v}}}'))
        return [(e.path[len("routines[0].quiet_hours.") :], e.message) for e in res.errors]

    assert qh('{"start": "22:00", "end": "07:00"}') == []
    assert qh('{"start": "00:00", "end": "23:59", "timezone": "Asia/Tokyo"}') == []
    bad = 'must be "HH:MM" from 00:00 to 23:59, got '
    assert qh('{"start": "24:00", "end": "7:00"}') == [
        ("start", bad + '"24:00"'),
        ("end", bad + '"7:00"'),
    ]
    assert qh('{"start": "22:60", "end": 700}') == [
        ("start", bad + '"22:60"'),
        ("end", bad + "700"),
    ]
    assert qh('{"start": "22:00"}') == [("end", 'missing required key "end" ("HH:MM")')]
    assert qh('{"start": "22:00", "end": "06:00", "timezone": "Mars/Olympus"}') == [
        ("timezone", 'unknown time zone "Mars/Olympus"')
    ]


def test_unknown_timezones_with_hint() -> None:
    text = one_routine(
        '{"id": "c", "trigger": {"kind": "schedule", "schedule": {"type": "cron", '
        '"expr": "0 9 * * *", "timezone": "Europe/Prag"}}, "action": {"kind": "prompt", '
        '"prompt": "x"}, "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Nowhere"}}'
    )
    res = check(text)
    assert where(res.errors) == [
        ("routines[0].trigger.schedule.timezone", *at(text, '"Europe/Prag"')),
        ("routines[0].quiet_hours.timezone", *at(text, '"Nowhere"')),
    ]
    assert (
        res.errors[0].message == 'unknown time zone "Europe/Prag" (did you mean "Europe/Prague"?)'
    )
    assert res.errors[1].message == 'unknown time zone "Nowhere"'


def schedule_doc(schedule: str) -> str:
    return one_routine(
        '{"id": "s", "trigger": {"kind": "schedule", "schedule": '
        + schedule
        + '}, "action": {"kind": "prompt", "prompt": "x"}}'
    )


@pytest.mark.parametrize(
    ("schedule", "needle", "path", "message"),
    [
        (
            '{"type": "cron", "expr": "61 * * * *"}',
            '"61',
            "expr",
            'invalid cron expression "61 * * * *": minute 61 is out of range 0-59',
        ),
        ('{"type": "cron", "expr": ""}', '""', "expr", "must not be empty"),
        ('{"type": "cron"}', "{", "expr", 'missing required key "expr"'),
        (
            '{"expr": "* * * * *"}',
            "{",
            "type",
            'missing required key "type" (one of cron, every, at)',
        ),
        (
            '{"type": "cronn", "expr": "* * * * *"}',
            '"cronn"',
            "type",
            'unknown type "cronn" (expected one of cron, every, at) (did you mean "cron"?)',
        ),
        (
            '{"type": "every", "interval_ms": 999}',
            "999",
            "interval_ms",
            "must be at least 1000 ms, got 999",
        ),
        (
            '{"type": "every", "interval_ms": 1000.5}',
            "1000.5",
            "interval_ms",
            "must be a non-negative integer (milliseconds), got 1000.5",
        ),
        ('{"type": "every"}', "{", "interval_ms", 'missing required key "interval_ms"'),
        (
            '{"type": "every", "interval_ms": 60000, "anchor": "yesterday"}',
            '"yesterday"',
            "anchor",
            'invalid RFC 3339 timestamp "yesterday" (expected e.g. "2026-03-29T09:00:00+02:00")',
        ),
        (
            '{"type": "every", "interval_ms": 60000, "anchor": "2026-03-29T09:00:00"}',
            '"2026-03-29T09:00:00"',
            "anchor",
            'timestamp "2026-03-29T09:00:00" has no UTC offset '
            '(RFC 3339 needs one, e.g. "Z" or "+02:00")',
        ),
        (
            '{"type": "at", "at": "2026-13-01T00:00:00Z"}',
            '"2026-13',
            "at",
            'invalid RFC 3339 timestamp "2026-13-01T00:00:00Z"',
        ),
        (
            '{"type": "at", "at": "tomorrow"}',
            '"tomorrow"',
            "at",
            'invalid RFC 3339 timestamp "tomorrow" (expected e.g. "2026-03-29T09:00:00+02:00")',
        ),
        (
            '{"type": "at", "at": 1774000000000}',
            "1774000000000",
            "at",
            "must be a string, got 1774000000000",
        ),
        (
            '{"type": "at", "at": "2026-05-01T10:00:00Z", "timezone": "UTC"}',
            '"timezone"',
            "timezone",
            'unknown key "timezone" (not used by schedule type "at"; it belongs to cron)',
        ),
    ],
)
def test_schedule_errors(schedule: str, needle: str, path: str, message: str) -> None:
    text = schedule_doc(schedule)
    err = single_error(text)
    assert err.path == f"routines[0].trigger.schedule.{path}"
    assert err.message == message
    assert (err.line, err.column) == at(text, needle, 1 if needle != "{" else 4)


def test_at_in_the_past_is_a_warning_not_an_error() -> None:
    text = schedule_doc('{"type": "at", "at": "2020-01-01T00:00:00Z"}')
    res = check(text)
    assert res.ok and res.definitions is not None and res.errors == []
    assert where(res.warnings) == [
        ("routines[0].trigger.schedule.at", *at(text, '"2020-01-01T00:00:00Z"'))
    ]
    assert (
        res.warnings[0].message
        == '"2020-01-01T00:00:00Z" is in the past; this schedule will not fire'
    )


def test_webhook_secret_env() -> None:
    text = one_routine(
        '{"id": "w", "trigger": {"kind": "webhook", "secret_env": "MISSING_SECRET"}, '
        '"action": {"kind": "prompt", "prompt": "x"}}'
    )
    res = check(text)
    assert res.ok and res.definitions is not None
    assert where(res.warnings) == [
        ("routines[0].trigger.secret_env", *at(text, '"MISSING_SECRET"'))
    ]
    assert res.warnings[0].message == (
        'environment variable "MISSING_SECRET" is not set; webhook calls will be rejected '
        "until the daemon has it"
    )
    assert check(text, env={"MISSING_SECRET": "x"}).warnings == []
    err = single_error(text.replace("MISSING_SECRET", "NOT-A-NAME"))
    assert err.message == '"NOT-A-NAME" is not an environment variable name'
    res = check(text.replace('"secret_env": "MISSING_SECRET"', '"secret": "x"'))
    assert [e.message for e in res.errors] == [
        'missing required key "secret_env" (or "secret_file")',
        'unknown key "secret" (did you mean "secret_env"?)',
    ]


def _hook_doc(trigger: str) -> str:
    return one_routine(
        f'{{"id": "w", "trigger": {{"kind": "webhook", {trigger}}}, '
        '"action": {"kind": "prompt", "prompt": "x"}}'
    )


def test_webhook_secret_file_and_require_timestamp(tmp_path: Path) -> None:
    secret = tmp_path / "hook.secret"
    secret.write_bytes(b"0123456789abcdef\n")
    secret.chmod(0o600)
    text = _hook_doc(f'"secret_file": "{secret}", "require_timestamp": true')
    res = check(text)
    assert res.errors == [] and res.warnings == [] and res.definitions is not None
    trig = res.definitions.routines[0].trigger
    assert trig == WebhookTrigger(secret_file=str(secret), require_timestamp=True)
    assert trigger_to_json(trig) == {
        "kind": "webhook",
        "secret_file": str(secret),
        "require_timestamp": True,
    }
    # The default is not written, so a webhook routine's content hash survives the upgrade.
    env_trig = WebhookTrigger(secret_env="HOOK_SECRET")
    assert trigger_to_json(env_trig) == {"kind": "webhook", "secret_env": "HOOK_SECRET"}


@pytest.mark.parametrize(
    ("trigger", "message", "needle"),
    [
        (
            '"secret_env": "HOOK_SECRET", "secret_file": "/x"',
            'use exactly one of "secret_env" and "secret_file"',
            '"secret_file"',
        ),
        (
            '"secret_file": "rel/x"',
            '"rel/x" is relative; use an absolute path or one starting '
            "with ~ (the daemon's working directory is not yours)",
            '"rel/x"',
        ),
        ('"secret_file": ""', "must not be empty", '""'),
        ('"secret_file": 3', "must be a string, got 3", "3}"),
        (
            '"secret_env": "HOOK_SECRET", "require_timestamp": 1',
            "must be true or false, got 1",
            "1}",
        ),
    ],
)
def test_webhook_trigger_errors(trigger: str, message: str, needle: str) -> None:
    text = _hook_doc(trigger)
    err = single_error(text)
    assert err.message == message
    assert (err.line, err.column) == at(text, needle)


def test_webhook_secret_file_warnings(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"0123456789abcdef")
    good.chmod(0o600)
    loose = tmp_path / "loose"
    loose.write_bytes(b"0123456789abcdef")
    loose.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to(good)
    cases = {
        str(tmp_path / "missing"): "does not exist (yet)",
        str(loose): "is readable or writable by others (mode 0640; chmod 600 it)",
        str(link): "is a symbolic link, which the daemon does not follow",
        str(tmp_path): "is not a regular file",
    }
    for path, problem in cases.items():
        text = _hook_doc(f'"secret_file": "{path}"')
        res = check(text)
        assert res.ok and res.definitions is not None, path
        assert where(res.warnings) == [("routines[0].trigger.secret_file", *at(text, f'"{path}"'))]
        assert res.warnings[0].message == (
            f"{describe(path)} {problem}; webhook calls will be rejected"
        )


def test_webhook_secret_file_tilde_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "s").write_bytes(b"0123456789abcdef")
    (tmp_path / "s").chmod(0o600)
    assert check(_hook_doc('"secret_file": "~/s"')).warnings == []
    res = check(_hook_doc('"secret_file": "~/nope"'))
    assert [w.message for w in res.warnings] == [
        '"~/nope" does not exist (yet); webhook calls will be rejected'
    ]


def test_webhook_secret_envs_of_definitions() -> None:
    act = '"action": {"kind": "prompt", "prompt": "x"}'
    triggers = [
        '"kind": "webhook", "secret_env": "B_SECRET"',
        '"kind": "webhook", "secret_env": "A_SECRET"',
        '"kind": "webhook", "secret_file": "/nonexistent"',
        '"kind": "webhook", "secret_env": "A_SECRET"',
        '"kind": "manual"',
    ]
    routines = [f'{{"id": "r{i}", "trigger": {{{t}}}, {act}}}' for i, t in enumerate(triggers)]
    text = '{"schema_version": 1, "routines": [' + ",".join(routines) + "]}"
    res = check(text)
    assert res.definitions is not None
    assert res.definitions.webhook_secret_envs() == ("A_SECRET", "B_SECRET")


def test_file_watch(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    text = one_routine(
        '{"id": "f", "trigger": {"kind": "file_watch", "paths": ['
        + json.dumps(str(tmp_path))
        + ", "
        + json.dumps(str(missing))
        + ', "~/surely-not-there-palyra"]}, "action": {"kind": "prompt", "prompt": "x"}}'
    )
    res = check(text)
    assert res.ok
    assert where(res.warnings) == [
        ("routines[0].trigger.paths[1]", *at(text, json.dumps(str(missing)))),
        ("routines[0].trigger.paths[2]", *at(text, '"~/surely')),
    ]
    # the path as values are shown (cut at 60 characters: tmp_path's length varies)
    assert res.warnings[0].message == f"{describe(str(missing))} does not exist (yet)"

    def errors(trigger: str) -> list[tuple[str, str]]:
        doc = one_routine(
            '{"id": "f", "trigger": ' + trigger + ', "action": {"kind": "prompt", "prompt": "x"}}'
        )
        return [(e.path[len("routines[0].trigger.") :], e.message) for e in check(doc).errors]

    assert errors('{"kind": "file_watch"}') == [("paths", 'missing required key "paths"')]
    assert errors('{"kind": "file_watch", "paths": []}') == [("paths", "must not be empty")]
    assert errors('{"kind": "file_watch", "paths": ["relative/dir"]}') == [
        (
            "paths[0]",
            '"relative/dir" is relative; use an absolute path or one starting with ~ '
            "(the daemon's working directory is not yours)",
        )
    ]
    assert errors('{"kind": "file_watch", "paths": ["/"], "events": ["created", "modifed"]}') == [
        (
            "events[1]",
            'unknown event "modifed" (expected one of created, modified, deleted, moved)'
            ' (did you mean "modified"?)',
        )
    ]
    assert errors('{"kind": "file_watch", "paths": ["/"], "events": []}') == [
        ("events", "must not be empty")
    ]
    assert errors('{"kind": "file_watch", "paths": ["/"], "recursive": "yes"}') == [
        ("recursive", 'must be true or false, got "yes"')
    ]


def test_command_action_rules() -> None:
    def errors(action: str) -> list[tuple[str, str]]:
        doc = one_routine('{"id": "c", "trigger": {"kind": "manual"}, "action": ' + action + "}")
        return [(e.path[len("routines[0].action.") :], e.message) for e in check(doc).errors]

    assert errors('{"kind": "command", "argv": ["a"], "shell": "b"}') == [
        ("shell", 'give either "argv" or "shell", not both')
    ]
    assert errors('{"kind": "command", "argv": []}') == [("argv", "must not be empty")]
    assert errors('{"kind": "command", "argv": "ls -l"}') == [
        ("argv", 'must be an array of strings, got "ls -l"')
    ]
    assert errors('{"kind": "command", "argv": ["ls", 1]}') == [
        ("argv[1]", "must be a string, got 1")
    ]
    assert errors('{"kind": "command", "argv": [""]}') == [
        ("argv[0]", "the program name must not be empty")
    ]
    assert errors('{"kind": "command", "shell": ""}') == [("shell", "must not be empty")]
    assert errors('{"kind": "command", "shell": "x", "env": {"A": 1, "B": "ok"}}') == [
        ("env.A", "must be a string, got 1")
    ]
    assert errors('{"kind": "command", "shell": "x", "env": ["A=1"]}') == [
        ("env", "must be an object, got an array")
    ]
    assert errors('{"kind": "command", "shell": "x", "timeout_ms": 0}') == [
        ("timeout_ms", "must be at least 1 ms, got 0")
    ]
    assert errors('{"kind": "lambda"}') == [
        ("kind", 'unknown kind "lambda" (expected one of command, prompt, skill)')
    ]
    assert errors('{"argv": ["x"]}') == [
        ("kind", 'missing required key "kind" (one of command, prompt, skill)')
    ]


def test_env_is_sorted_and_values_kept() -> None:
    body = (
        '{"id": "c", "trigger": {"kind": "manual"}, '
        '"action": {"kind": "command", "shell": "x", "env": {"Z": "1", "A": ""}}}'
    )
    res = check(one_routine(body))
    assert res.definitions is not None
    action = res.definitions.routines[0].action
    assert isinstance(action, CommandAction) and action.env == (("A", ""), ("Z", "1"))


def test_prompt_limit_is_16_kib_of_utf8() -> None:
    ok = "é" * (16 * 1024 // 2)  # 2 bytes each: exactly 16 KiB
    body = (
        '{"id": "p", "trigger": {"kind": "manual"}, "action": {"kind": "prompt", "prompt": "%s"}}'
    )
    res = check(one_routine(body % ok))
    assert res.ok
    assert isinstance(res.definitions and res.definitions.routines[0].action, PromptAction)
    err = single_error(one_routine(body % (ok + "x")))
    assert err.path == "routines[0].action.prompt"
    assert err.message == "is 16385 bytes; the limit is 16384 bytes (16 KiB)"


def test_delivery_rules() -> None:
    def errors(delivery: str) -> list[tuple[str, str]]:
        doc = one_routine(MINIMAL[:-1] + ', "delivery": ' + delivery + "}")
        return [(e.path[len("routines[0].delivery.") :], e.message) for e in check(doc).errors]

    assert errors('{"mode": "logs_only"}') == []
    assert errors("{}") == []
    assert errors('{"mode": "file", "path": "~/out.log"}') == []
    assert errors('{"mode": "channel", "channel": "phone", "failure_channel": "pager"}') == []
    assert errors('{"mode": "file"}') == [
        ("path", 'missing required key "path" (delivery mode "file" writes results to it)')
    ]
    assert errors('{"mode": "channel"}') == [
        ("channel", 'missing required key "channel" (delivery mode "channel" needs a channel name)')
    ]
    assert errors('{"mode": "channel", "channel": "c", "silent_policy": "quiet"}') == [
        (
            "silent_policy",
            'unknown value "quiet" (expected one of noisy, failure_only, audit_only)',
        )
    ]
    assert errors('{"mode": "logs_only", "path": "/tmp/x"}') == [
        ("path", '"path" is not used by delivery mode "logs_only"')
    ]
    assert errors('{"mode": "email"}') == [
        ("mode", 'unknown mode "email" (expected one of logs_only, file, channel)')
    ]
    assert errors('{"mode": "file", "path": "/x", "pth": 1}') == [
        ("pth", 'unknown key "pth" (did you mean "path"?)')
    ]


def test_channel_delivery_defaults_to_noisy() -> None:
    res = check(one_routine(MINIMAL[:-1] + ', "delivery": {"mode": "channel", "channel": "c"}}'))
    assert res.definitions is not None
    assert res.definitions.routines[0].delivery.silent_policy is SilentPolicy.NOISY


def test_trigger_kind_errors() -> None:
    text = one_routine(
        '{"id": "t", "trigger": {"kind": "schedul"}, "action": {"kind": "prompt", "prompt": "x"}}'
    )
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("routines[0].trigger.kind", *at(text, '"schedul"'))
    assert err.message == (
        'unknown kind "schedul" (expected one of schedule, manual, file_watch, webhook, '
        'system_event, hook) (did you mean "schedule"?)'
    )
    err = single_error(text.replace('{"kind": "schedul"}', '"manual"'))
    assert err.message == 'must be an object, got "manual"'
    err = single_error(text.replace('"schedul"', '"system_event"'))
    assert err.message == 'missing required key "event"'
    err = single_error(text.replace('"schedul"', '"hook"'))
    assert err.message == 'missing required key "hook_id"'


def test_non_json_constants_are_errors() -> None:
    text = one_routine(MINIMAL[:-1] + ', "jitter_ms": NaN, "cooldown_ms": -Infinity}')
    res = check(text)
    assert where(res.errors) == [
        ("routines[0].jitter_ms", *at(text, "NaN")),
        ("routines[0].cooldown_ms", *at(text, "-Infinity")),
    ]
    assert res.errors[0].message == (
        "must be a non-negative integer (milliseconds), got NaN (not valid JSON)"
    )


def test_too_many_routines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_ROUTINES", 2)
    routines = [
        {"id": f"r{i}", "trigger": {"kind": "manual"}, "action": {"kind": "skill", "skill_id": "s"}}
        for i in range(3)
    ]
    text = json.dumps({"schema_version": 1, "routines": routines})
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("routines", 1, 35)
    assert err.message == "too many routines: 3 (the limit is 2)"


def test_file_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_FILE_BYTES", 100)
    text = one_routine(MINIMAL)
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("", 1, 1)
    assert err.message == f"file is {len(text)} bytes; the limit is 100 bytes (64 MiB)"
    assert single_error(text.encode()).message == err.message


# --- many errors at once -----------------------------------------------------------------


def test_every_error_is_reported_in_document_order() -> None:
    text = """{
  "schema_version": 2,
  "routines": [
    {"id": "ok", "trigger": {"kind": "manual"}, "action": {"kind": "prompt", "prompt": "x"}},
    {"id": "Bad Id", "trigger": {"kind": "schedule",
                                 "schedule": {"type": "cron", "expr": "0 25 * * *"}},
     "action": {"kind": "command"}, "jitter_ms": 4.0, "concurency": "forbid"},
    {"id": "ok", "trigger": {"kind": "webhook", "secret_env": "NOPE"},
     "action": {"kind": "prompt", "prompt": "x"}, "retry": {"max_attempts": 99}}
  ]
}"""
    res = check(text)
    assert res.definitions is None and not res.ok
    assert where(res.errors) == [
        ("schema_version", 2, 21),
        ("routines[1].id", *at(text, '"Bad Id"')),
        ("routines[1].trigger.schedule.expr", *at(text, '"0 25 * * *"')),
        ("routines[1].action.argv", *at(text, '{"kind": "command"}')),
        ("routines[1].jitter_ms", *at(text, "4.0")),
        ("routines[1].concurency", *at(text, '"concurency"')),
        ("routines[2].id", *at(text, '"ok"', 2)),
        ("routines[2].retry.max_attempts", *at(text, "99")),
    ]
    assert where(res.warnings) == [("routines[2].trigger.secret_env", *at(text, '"NOPE"'))]


# --- file-level and syntax errors --------------------------------------------------------


def test_invalid_utf8_is_a_file_level_error_at_1_1() -> None:
    data = one_routine(MINIMAL).encode().replace(b'"r1"', b'"r\xff1"')
    err = single_error(data)
    assert (err.path, err.line, err.column) == ("", 1, 1)
    assert err.message.startswith("file is not valid UTF-8 (invalid byte 0xff at byte offset ")
    assert format_issue("d.json", err).startswith("d.json:1:1: file is not valid UTF-8")


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        (
            '{\n  "schema_version": 1\n  "routines": []\n}',
            3,
            3,
            "expected ',' or '}' after an object member",
        ),
        ('{"schema_version": 1, "routines": [1, 2,]}', 1, 41, "a trailing comma is not allowed"),
        ('{"schema_version": 1,}', 1, 22, "a trailing comma is not allowed"),
        ('{"schema_version": 1, "routines": ["é", \'x\']}', 1, 41, "expected a JSON value"),
        ('{"schema_version": 1, "routines": [{"id": "abc}]}', 1, 43, "unterminated string"),
        ('{"schema_version": 1} {}', 1, 23, "unexpected data after the JSON document"),
        (
            '{"schema_version": 1, "routines": [{"tags": ["a",]}]}',
            1,
            50,
            "a trailing comma is not allowed",
        ),
        ("", 1, 1, "the document is empty (expected a JSON object)"),
        ("  \n ", 2, 2, "the document is empty (expected a JSON object)"),
        ('{"schema_version": 1, "routines": [', 1, 36, "expected a JSON value"),
        (
            '{"a": "tab\there"}',
            1,
            11,
            "control character inside a string (write it escaped, e.g. \\n or \\t)",
        ),
        ('{"schema_version": 1, "routines": [{"a": tru}]}', 1, 42, "expected a JSON value"),
        (
            '{"schema_version": 1, "routines": [{"a": 1,}]}',
            1,
            44,
            "expected a key in double quotes (a trailing comma is not allowed)",
        ),
        ('{"schema_version": 1, "routines": [{"a" 1}]}', 1, 41, "expected ':' after the key"),
        (
            '{"schema_version": 1, "routines": [{"a": 1]}',
            1,
            43,
            "expected ',' or a closing bracket",
        ),
        (
            '{"schema_version": 1, "routines": [{"a": "\\q"}]}',
            1,
            43,
            "invalid escape sequence in a string",
        ),
    ],
)
def test_syntax_errors_point_at_the_problem(
    text: str, line: int, column: int, message: str
) -> None:
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("", line, column)
    assert err.message == f"invalid JSON: {message}"


def test_columns_count_characters_not_bytes() -> None:
    text = one_routine(
        '{"id": "ü", "name": "Zprávy ☀️ 日本語", "trigger": {"kind": "manual"}, '
        '"action": {"kind": "prompt", "prompt": "😀😀"}, "jitter_ms": -5}'
    )
    for data in (text, text.encode("utf-8")):
        res = check(data)
        assert where(res.errors) == [
            ("routines[0].id", *at(text, '"ü"')),
            ("routines[0].jitter_ms", *at(text, "-5")),
        ]
    line, col = at(text, "-5")
    assert col == len(text.splitlines()[line - 1].split("-5")[0]) + 1
    assert col < len(text.splitlines()[line - 1].split("-5")[0].encode()) + 1  # bytes differ
    syntax = text.replace("-5}", "-5,}")
    err = single_error(syntax)
    assert (err.line, err.column) == at(syntax, "}\n  ]")


def test_byte_order_mark_is_accepted() -> None:
    data = b"\xef\xbb\xbf" + one_routine(MINIMAL[:-1] + ', "jitter_ms": -1}').encode()
    err = single_error(data)
    assert (err.line, err.column) == at(data[3:].decode(), "-1")


def test_duplicate_json_keys_are_errors() -> None:
    text = one_routine(
        '{"id": "a", "trigger": {"kind": "manual"}, "action": {"kind": "command", '
        '"argv": ["x"], "argv": ["y"]}, "enabled": true, "enabled": false}'
    )
    res = check(text)
    note = " (only the last value would count; remove the others)"
    assert [(e.path, e.line, e.column, e.message) for e in res.errors] == [
        ("routines[0].action.argv", *at(text, '"argv"', 2), 'duplicate key "argv"' + note),
        ("routines[0].enabled", *at(text, '"enabled"', 2), 'duplicate key "enabled"' + note),
    ]
    text = '{"schema_version": 1, "routines": [], "schema_version": 1}'
    err = single_error(text)
    assert (err.path, err.line, err.column) == ("schema_version", *at(text, '"schema_version"', 2))
    # also found when the same routine has another error
    text = one_routine('{"id": "a", "id": "b", "trigger": {"kind": "manual"}, "action": {}}')
    res = check(text)
    assert [e.path for e in res.errors] == ["routines[0].id", "routines[0].action.kind"]


def test_escaped_quotes_do_not_confuse_the_duplicate_key_check() -> None:
    body = (
        '{"id": "q", "trigger": {"kind": "manual"}, "action": {"kind": "command", '
        '"shell": "echo \\"a\\": \\\\\\"b\\\\\\": done \\\\"}, "tags": ["x\\\\", "\\"y\\" :"]}'
    )
    res = check(one_routine(body))
    assert res.ok, res.errors
    assert res.definitions is not None
    action = res.definitions.routines[0].action
    assert isinstance(action, CommandAction)
    assert action.shell == 'echo "a": \\"b\\": done \\'


# --- round trip and content hash ---------------------------------------------------------


def test_round_trip_validate_to_json_dumps_validate() -> None:
    first = check(SPEC_EXAMPLE)
    assert first.definitions is not None
    again = check(dumps(first.definitions))
    assert again.ok and again.definitions == first.definitions
    assert dumps(again.definitions) == dumps(first.definitions)
    # aliases become canonical spellings in the written file
    aliased = check(one_routine(MINIMAL[:-1] + ', "concurrency": "queue(1)"}'))
    assert aliased.definitions is not None
    assert b'"concurrency": "queue_one"' in dumps(aliased.definitions)
    assert check(dumps(aliased.definitions)).definitions == aliased.definitions


def test_content_hash_ignores_key_order_and_enabled_only() -> None:
    base = orjson.loads(SPEC_EXAMPLE)["routines"][0]

    def routine(obj: dict[str, object]) -> Routine:
        r, errors, _ = parse_routine(obj, now_ms=NOW, env=ENV)
        assert r is not None, errors
        return r

    h = routine(base).content_hash()
    reordered = dict(reversed(list(base.items())))
    reordered["trigger"] = {"schedule": base["trigger"]["schedule"], "kind": "schedule"}
    assert routine(reordered).content_hash() == h
    assert routine({**base, "enabled": False}).content_hash() == h
    edits: list[dict[str, object]] = [
        {**base, "name": "Other"},
        {**base, "jitter_ms": 1},
        {**base, "cooldown_ms": 5},
        {**base, "tags": []},
        {**base, "approval": "before_enable"},
        {**base, "concurrency": "allow"},
        {**base, "retry": {"max_attempts": 4}},
        {**base, "misfire": {"policy": "skip"}},
        {**base, "quiet_hours": {"start": "22:00", "end": "06:00"}},
        {**base, "delivery": {"mode": "file", "path": "/tmp/x"}},
        {**base, "action": {**base["action"], "timeout_ms": 1}},
        {**base, "action": {**base["action"], "env": {}}},
        {
            **base,
            "trigger": {"kind": "schedule", "schedule": {"type": "cron", "expr": "0 9 * * *"}},
        },
    ]
    hashes = {routine(e).content_hash() for e in edits}
    assert len(hashes) == len(edits) and h not in hashes


# --- parse_routine -----------------------------------------------------------------------


def test_parse_routine_paths_are_relative_to_the_routine() -> None:
    source = (
        '{\n  "id": "x",\n'
        '  "trigger": {"kind": "schedule", "schedule": {"type": "cron", "expr": "0 25 * * *"}},\n'
        '  "action": {"kind": "prompt", "prompt": "p"},\n  "jitter_ms": 4.0\n}'
    )
    r, errors, warnings = parse_routine(json.loads(source), now_ms=NOW, env=ENV, source_text=source)
    assert r is None and warnings == []
    assert where(errors) == [
        ("trigger.schedule.expr", *at(source, '"0 25')),
        ("jitter_ms", *at(source, "4.0")),
    ]
    r, errors, _ = parse_routine(json.loads(source), now_ms=NOW, env=ENV)
    assert [(e.path, e.line, e.column) for e in errors] == [
        ("trigger.schedule.expr", 0, 0),
        ("jitter_ms", 0, 0),
    ]
    assert format_issue("-", errors[1]) == (
        "-: jitter_ms: must be a non-negative integer (milliseconds), got 4.0"
    )


def test_parse_routine_valid_and_duplicate_keys_in_source() -> None:
    obj = json.loads(MINIMAL)
    r, errors, warnings = parse_routine(obj, now_ms=NOW, env=ENV)
    assert r is not None and r.id == "r1" and errors == warnings == []
    source = MINIMAL[:-1] + ', "id": "r2"}'
    r, errors, _ = parse_routine(json.loads(source), now_ms=NOW, env=ENV, source_text=source)
    assert r is None and where(errors) == [("id", *at(source, '"id"', 2))]
    r, errors, _ = parse_routine(["not", "an", "object"], now_ms=NOW, env=ENV)
    assert r is None and [(e.path, e.message) for e in errors] == [
        ("", "must be an object, got an array")
    ]


# --- jsonpos ------------------------------------------------------------------------------


def test_jsonpos_locate_values_keys_and_missing_paths() -> None:
    text = '{\n  "a": [10, {"b": "x"}],\n  "é": {"c": null}\n}'
    res = jsonpos.locate(
        text,
        [
            (("a",), False),
            (("a", 1, "b"), False),
            (("a", 1, "b"), True),
            (("é", "c"), False),
            (("é", "zzz"), False),  # missing: its deepest existing ancestor
            ((), False),
        ],
    )
    assert res.positions == [
        at(text, "[10"),
        at(text, '"x"'),
        at(text, '"b"'),
        at(text, "null"),
        at(text, '{"c"'),
        (1, 1),
    ]
    dups = jsonpos.locate(text.replace('"c"', '"c": 1, "c"'), [], find_duplicates=True)
    assert dups.duplicates == [(("é", "c"), 3, 17)]


def test_jsonpos_syntax_error() -> None:
    assert jsonpos.syntax_error('{"a": [1, 2]}') is None
    err = jsonpos.syntax_error('{"a": [1, 2}\n')
    assert err is not None and (err.line, err.column) == (1, 12)
    assert err.message == "expected ',' or a closing bracket"
    err = jsonpos.syntax_error('{"a" 1}')
    assert err is not None
    assert (err.line, err.column, err.message) == (1, 6, "expected ':' after the key")
    deep = "[" * 100_000 + "]" * 100_000
    err = jsonpos.syntax_error(deep)
    assert err is not None and err.message == "nesting too deep"


def test_jsonpos_line_columns() -> None:
    text = "ab\ncdé\n\nf"
    assert jsonpos.line_columns(text, [0, 1, 3, 5, 7, 8, 9]) == {
        0: (1, 1),
        1: (1, 2),
        3: (2, 1),
        5: (2, 3),
        7: (3, 1),
        8: (4, 1),
        9: (4, 2),
    }


def test_jsonpos_finds_every_value_of_random_documents() -> None:
    import random

    rng = random.Random(5)

    def value(depth: int) -> object:
        r = rng.random()
        if depth > 3 or r < 0.4:
            return rng.choice([1, -2.5, True, None, 'é"x\\', "日本", "", "a\nb"])
        if r < 0.7:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{i}é": value(depth + 1) for i in range(rng.randrange(4))}

    def leaves(v: object, path: jsonpos.Path) -> list[tuple[jsonpos.Path, object]]:
        out = [(path, v)]
        if isinstance(v, dict):
            for k, x in v.items():
                out += leaves(x, (*path, k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                out += leaves(x, (*path, i))
        return out

    for _ in range(200):
        doc = value(0)
        indent = rng.choice([None, 1, 2, "\t"])
        text = json.dumps(doc, indent=indent, ensure_ascii=rng.random() < 0.5)
        paths = leaves(doc, ())
        offsets, dups = jsonpos.locate_offsets(text, [(p, False) for p, _ in paths])
        assert dups == []
        lc = jsonpos.line_columns(text, offsets)
        for (path, v), off in zip(paths, offsets, strict=True):
            decoded, _ = json.JSONDecoder().raw_decode(text, off)
            assert decoded == v, (path, text)
            line, col = lc[off]
            assert text.splitlines()[line - 1][col - 1] == text[off]
