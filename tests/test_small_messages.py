"""Messages that must name the right culprit (issue 9 item 15): an unknown system event is
warned about, and a run whose cwd does not exist blames the cwd, not the program."""

from __future__ import annotations

import orjson
import pytest

from routines.validate import validate_text
from tests.daemon_harness import Daemon, palyra, routine, shell, wait_until

MANUAL = {"kind": "manual"}


def _warnings(event: str) -> list[str]:
    doc = {
        "schema_version": 1,
        "routines": [
            {
                "id": "r",
                "trigger": {"kind": "system_event", "event": event},
                "action": {"kind": "command", "argv": ["true"]},
            }
        ],
    }
    result = validate_text(orjson.dumps(doc), filename="d.json", now_ms=0, env={})
    assert result.ok
    return [w.message for w in result.warnings]


def test_an_unknown_system_event_is_a_warning_with_a_suggestion() -> None:
    (msg,) = _warnings("run.faild")
    assert 'no part of palyra emits the event "run.faild"' in msg
    assert 'did you mean "run.failed"' in msg
    assert _warnings("run.failed") == []
    assert _warnings("operator.deploy-done") == []
    assert _warnings("incident.opened") == []


@pytest.mark.timeout(60)
def test_a_missing_cwd_is_named_as_the_cwd(daemon: Daemon, tmp_path: object) -> None:
    daemon.write_definitions(
        [routine("job", MANUAL, shell("true", cwd="/nonexistent/palyra-test-dir"))]
    )
    daemon.start()
    out = orjson.loads(palyra(daemon.root, "routines", "run-now", "job", "--json").stdout)
    run = wait_until(
        lambda: (r := daemon.journal.runs.get(out["run_id"])) and not r.is_active and r
    )
    assert run.error_kind == "spawn_failed"
    assert run.error_message is not None
    assert "cannot enter its cwd '/nonexistent/palyra-test-dir'" in run.error_message
