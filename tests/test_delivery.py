"""Delivery of run results (SPEC §2.3 ``delivery``): file lines and the channel outbox."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from palyrad.domain.runs import Run, new_ulid
from palyrad.journal import Journal
from palyrad.services.executor.delivery import deliver, should_deliver
from routines.model import Delivery


def _run(status: str) -> Run:
    run_id = new_ulid()
    return Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id="r",
        attempt=1,
        trigger_kind="manual",
        status=status,
        queued_at_ms=1_000,
        finished_at_ms=2_000,
        output_tail="out\n",
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def test_file_delivery_appends_one_json_line_per_run(journal: Journal, tmp_path: Path) -> None:
    target = tmp_path / "results.jsonl"
    for status in ("succeeded", "failed"):
        deliver(journal, _run(status), Delivery(mode="file", path=str(target)), 3_000)
    lines = [orjson.loads(x) for x in target.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["succeeded", "failed"]
    assert lines[0]["output_tail"] == "out\n" and lines[0]["finished_at_unix_ms"] == 2_000
    assert target.stat().st_mode & 0o777 == 0o600


def test_file_delivery_problems_never_raise(journal: Journal, tmp_path: Path) -> None:
    deliver(journal, _run("succeeded"), Delivery(mode="file", path=str(tmp_path / "no" / "x")), 1)


def test_channel_delivery_is_queued_in_the_outbox(journal: Journal) -> None:
    ok, bad = _run("succeeded"), _run("failed")
    spec = Delivery(mode="channel", channel="phone", failure_channel="pager")
    deliver(journal, ok, spec, 3_000)
    deliver(journal, bad, spec, 3_000)
    deliver(journal, replace(ok, status="running"), spec, 3_000)  # not finished: nothing
    assert [(i.channel, orjson.loads(i.payload)["run_id"]) for i in journal.outbox.pending()] == [
        ("phone", ok.run_id),
        ("pager", bad.run_id),
    ]


def test_a_channel_delivery_run_again_adds_no_second_outbox_entry(journal: Journal) -> None:
    """The ``delivery`` task is at-least-once (kill -9 before its batched success was
    recorded, a take-over of its lease): a second run must not deliver the result twice."""
    ok = _run("succeeded")
    spec = Delivery(mode="channel", channel="phone")
    assert deliver(journal, ok, spec, 3_000, raise_errors=True)
    assert not deliver(journal, ok, spec, 4_000, raise_errors=True)
    assert [orjson.loads(i.payload)["run_id"] for i in journal.outbox.pending()] == [ok.run_id]
    other = _run("succeeded")
    assert deliver(journal, other, spec, 5_000)  # another run is delivered, of course
    assert len(journal.outbox.pending()) == 2


@pytest.mark.parametrize(
    ("policy", "status", "expected"),
    [
        ("noisy", "succeeded", True),
        (None, "succeeded", True),
        ("failure_only", "succeeded", False),
        ("failure_only", "failed", True),
        ("audit_only", "failed", False),
    ],
)
def test_silent_policy(policy: str | None, status: str, expected: bool) -> None:
    assert should_deliver(policy, status) is expected
