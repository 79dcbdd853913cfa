"""Quiet hours end without a burst, with a real daemon (issue 9 item 4, SPEC §2.3).

Quiet windows have minute resolution, so the test puts one over the current minute and waits
for it to end (at most a minute of wall time, mostly idle)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.daemon_harness import Daemon, every, routine, shell, wait_until

pytestmark = pytest.mark.timeout(150)


def test_ticks_inside_quiet_hours_are_misfires_when_the_window_ends(daemon: Daemon) -> None:
    """``skip`` runs none of the window's ticks (one skip record); ``catch_up`` runs at most
    ``max_catch_up_runs`` of them, when the window ends. Both in one daemon and one window."""
    now = datetime.now(UTC)
    if now.second >= 50:  # too little of the minute left to see ticks held: use the next one
        now = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=1)
    quiet = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": "UTC"}
    daemon.write_definitions(
        [
            routine(
                rid,
                every(2_000),
                shell("true"),
                concurrency="allow",
                misfire={"policy": policy, "grace_ms": 60_000, "max_catch_up_runs": 2},
                quiet_hours=quiet,
            )
            for rid, policy in (("skip", "skip"), ("catch", "catch_up"))
        ]
    )
    daemon.start()
    end_ms = int(end.timestamp() * 1000)
    start_ms = int(start.timestamp() * 1000)
    for rid in ("skip", "catch"):
        # the first tick after the window has run: everything about the window is decided
        wait_until(
            lambda rid=rid: any((r.scheduled_for_ms or 0) > end_ms for r in daemon.runs(rid)),
            timeout=120,
        )
        runs = daemon.runs(rid)
        inside = [
            r
            for r in runs
            if r.scheduled_for_ms is not None and start_ms <= r.scheduled_for_ms < end_ms
        ]
        skips = [r for r in runs if r.error_kind == "misfire_skipped"]
        assert len(skips) == 1 and (skips[0].missed_count or 0) >= 1, rid
        if rid == "skip":
            assert inside == []  # no tick of the window ran
        else:
            assert 1 <= len(inside) <= 2
            assert all((r.started_at_ms or 0) >= end_ms for r in inside)  # at the window's end
