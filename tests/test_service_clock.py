"""The services read "now" only from the injected clock (ARCHITECTURE.md, invariant 6).

Two halves: the scheduler and executor built on a ``ManualClock`` decide from the manual
time (far from the real one, so a stray wall-clock read would show), and a scan of
``palyrad/services/`` that fails on any direct wall-clock read below the context's clock.
"""

from __future__ import annotations

import ast
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from palyrad.domain.run_spec import RunSpec
from palyrad.domain.runs import Run, RunStatus, new_ulid
from palyrad.journal import STATE_DEFINITIONS_APPLIED
from palyrad.runtime.clock import ManualClock
from palyrad.runtime.home import Home
from palyrad.services.context import ServiceContext
from palyrad.services.executor.service import Executor
from palyrad.services.scheduler.service import Scheduler
from routines.model import CommandAction, Retry

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "palyrad" / "services"

# 2031-03-04T05:06:07Z: years away from the machine's clock, on no minute boundary.
MANUAL_MS = 1_930_453_567_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MANUAL_MS)


@pytest.fixture
def ctx(tmp_path: Path, clock: ManualClock) -> Iterator[ServiceContext]:
    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    context = ServiceContext("test", home, child, "i1", 0, clock=clock)
    yield context
    parent.close()
    child.close()


def test_scheduler_schedules_and_decides_from_the_injected_clock(
    ctx: ServiceContext, clock: ManualClock
) -> None:
    routine = {
        "id": "r",
        "trigger": {
            "kind": "schedule",
            "schedule": {"type": "every", "interval_ms": 60_000, "anchor": "2026-01-01T00:00:00Z"},
        },
        "action": {"kind": "command", "argv": ["/bin/true"]},
    }
    ctx.home.definitions.write_bytes(orjson.dumps({"schema_version": 1, "routines": [routine]}))
    sched = Scheduler(ctx)
    sched.reload(startup=True)
    applied = ctx.journal.state.get(STATE_DEFINITIONS_APPLIED)
    assert applied is not None and orjson.loads(applied)["at_ms"] == MANUAL_MS
    # The first tick after the manual "now" on the anchor's minute grid: 05:07:00.
    st = ctx.journal.routines.get("r")
    assert st is not None and st.next_fire_ms == MANUAL_MS - 7_000 + 60_000
    clock.advance(60_000)
    sched.fire_due(clock.now_ms())
    (tick,) = ctx.journal.runs.for_routine("r", limit=10)
    assert tick.trigger_kind == "schedule" and tick.scheduled_for_ms == st.next_fire_ms
    assert tick.queued_at_ms == MANUAL_MS + 60_000
    # run-now through the request socket's handler is stamped with the manual time too.
    reply = sched.handle_request({"op": "run_now", "routine_id": "r"})
    assert reply["ok"] is True
    manual = ctx.journal.runs.get(reply["run_id"])
    assert manual is not None and manual.queued_at_ms == MANUAL_MS + 60_000


def test_executor_recovery_and_retry_backoff_follow_the_injected_clock(
    ctx: ServiceContext, clock: ManualClock
) -> None:
    spec = RunSpec(
        CommandAction(argv=("/bin/true",)),
        retry=Retry(max_attempts=3, backoff_ms=5_000),
    )
    run_id = new_ulid(MANUAL_MS - 60_000)
    ctx.journal.runs.insert(
        Run(
            run_id=run_id,
            chain_id=run_id,
            routine_id="r",
            attempt=1,
            trigger_kind="schedule",
            status="running",
            queued_at_ms=MANUAL_MS - 60_000,
            started_at_ms=MANUAL_MS - 59_000,
            lease_owner="executor:dead:1",
            spec=spec.to_json(),
        )
    )
    Executor(ctx).recover()
    crashed = ctx.journal.runs.get(run_id)
    assert crashed is not None and crashed.status == RunStatus.FAILED
    assert crashed.error_kind == "daemon_crashed" and crashed.finished_at_ms == MANUAL_MS
    follow = [r for r in ctx.journal.runs.for_routine("r", limit=10) if r.run_id != run_id]
    assert len(follow) == 1 and follow[0].attempt == 2
    assert follow[0].not_before_ms == MANUAL_MS + 5_000  # backoff counted from manual "now"


# --- no wall-clock reads below the loops ----------------------------------------------------

# Files under palyrad/services/ allowed to read the wall clock themselves, with the reason.
# Empty on purpose: the context's ``clock`` is the one source of "now" (the clocks live in
# palyrad/runtime/clock.py, outside this tree). Durations (time.monotonic) and real sleeps
# to a wall instant (routines.timefmt.seconds_until) are not decisions and are allowed.
ALLOWED: dict[str, str] = {}

_TIME_FUNCS = {"time", "time_ns"}
_DATETIME_FUNCS = {"now", "utcnow", "today"}


def _wall_clock_reads(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: what`` for every wall-clock read in one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    time_modules: set[str] = set()  # names bound to the time module
    timefmt_modules: set[str] = set()  # names bound to routines.timefmt
    datetime_types: set[str] = set()  # names bound to datetime.datetime / datetime.date
    banned_names: dict[str, str] = {}  # local name -> what it reads
    found: list[str] = []
    rel = path.relative_to(root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "time":
                    time_modules.add(a.asname or "time")
                elif a.name == "routines.timefmt" and a.asname:
                    timefmt_modules.add(a.asname)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                local = a.asname or a.name
                if node.module == "time" and a.name in _TIME_FUNCS:
                    banned_names[local] = f"time.{a.name}"
                elif node.module == "routines.timefmt" and a.name == "now_ms":
                    banned_names[local] = "routines.timefmt.now_ms"
                    found.append(f"{rel}:{node.lineno}: imports routines.timefmt.now_ms")
                elif node.module == "routines" and a.name == "timefmt":
                    timefmt_modules.add(local)
                elif node.module == "datetime" and a.name in ("datetime", "date"):
                    datetime_types.add(local)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in banned_names:
            found.append(f"{rel}:{node.lineno}: calls {banned_names[f.id]}")
        elif isinstance(f, ast.Name) and f.id == "new_ulid" and not node.args:
            found.append(f"{rel}:{node.lineno}: new_ulid() without now reads the clock")
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            owner, attr = f.value.id, f.attr
            if owner in time_modules and attr in _TIME_FUNCS:
                found.append(f"{rel}:{node.lineno}: calls time.{attr}")
            elif owner in timefmt_modules and attr == "now_ms":
                found.append(f"{rel}:{node.lineno}: calls routines.timefmt.now_ms")
            elif owner in datetime_types and attr in _DATETIME_FUNCS:
                found.append(f"{rel}:{node.lineno}: calls {owner}.{attr}")
    return found


def test_nothing_under_services_reads_the_wall_clock_itself() -> None:
    files = sorted(SERVICES.rglob("*.py"))
    assert len(files) > 10  # the scan really looks at the services
    found = [
        hit
        for path in files
        if str(path.relative_to(ROOT)) not in ALLOWED
        for hit in _wall_clock_reads(path)
    ]
    assert found == [], "read ctx.clock (or take `now`) instead:\n" + "\n".join(found)


def test_the_scan_catches_each_kind_of_read(tmp_path: Path) -> None:
    """The scan itself: every spelling it must catch is caught (it would pass vacuously)."""
    probe = tmp_path / "probe.py"
    src = (
        "import time\nimport time as t\nfrom time import time_ns as tns\n"
        "from routines.timefmt import now_ms\nfrom routines import timefmt\n"
        "from datetime import datetime\nfrom palyrad.domain.runs import new_ulid\n"
        "a = time.time()\nb = t.time_ns()\nc = tns()\nd = now_ms()\ne = timefmt.now_ms()\n"
        "f = datetime.now()\ng = new_ulid()\nh = time.monotonic()\n"
    )
    probe.write_text(src)
    hits = _wall_clock_reads(probe, tmp_path)
    assert len(hits) == 8, hits  # the import of now_ms + 7 calls; monotonic is fine
