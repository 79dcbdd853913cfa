"""Checks of what the machine gives the routines: inotify limits for file watches
(``inotify``), the agent runner for prompt routines (``agent_runner``), and free disk space
(``disk``)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from palyrad.ops.doctor.check import DoctorCheck, listed, plural
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.definitions_facts import WatchedPath
from palyrad.ops.doctor.report import CheckResult, CheckStatus, fail, ok, warn
from palyrad.runtime.disk import DiskSpace

MIN_WATCHES = 8192
MIN_INSTANCES = 16  # the usual default is 128; the daemon itself needs one or two
WALK_BUDGET_S = 0.2  # counting the folders under recursive watches stops after this
INOTIFY_HINT = (
    "sudo sysctl fs.inotify.max_user_watches=524288 (and add it to /etc/sysctl.d/ to keep it)"
)


def watch_points(watched: Iterable[WatchedPath]) -> set[tuple[str, bool]]:
    """Where the scheduler watches each path from (``file_watch._watch_point``'s rule): a
    folder itself, a file's folder, a missing path's nearest existing ancestor."""
    points = set()
    for w in watched:
        path = os.path.abspath(w.path)
        if os.path.isdir(path):
            points.add((path, w.recursive))
            continue
        parent = os.path.dirname(path)
        while parent and not os.path.isdir(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        points.add((parent, False))
    return points


def count_watched_dirs(points: set[tuple[str, bool]], limit: int) -> tuple[int, bool]:
    """How many inotify watches the points need (one per folder; every folder below a
    recursive one). Stops at ``limit`` or after ``WALK_BUDGET_S``; returns (count, exact)."""
    seen: set[str] = set()
    deadline = time.monotonic() + WALK_BUDGET_S
    stack = []
    for path, recursive in sorted(points):
        seen.add(path)
        if recursive:
            stack.append(path)
    while stack:
        if len(seen) >= limit or time.monotonic() > deadline:
            return len(seen), False
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False) and e.path not in seen:
                        seen.add(e.path)
                        stack.append(e.path)
        except OSError:
            continue
    return len(seen), True


class InotifyCheck(DoctorCheck):
    """Linux: ``fs.inotify.max_user_watches`` / ``max_user_instances`` are not too low, in
    absolute terms and for the folders file_watch routines watch."""

    check_id = "inotify"

    def __init__(
        self, proc_dir: Path = Path("/proc/sys/fs/inotify"), platform: str = sys.platform
    ) -> None:
        self.proc_dir = proc_dir
        self.platform = platform

    def _read(self, name: str) -> int | None:
        try:
            return int((self.proc_dir / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def run(self, ctx: DoctorContext) -> CheckResult:
        if not self.platform.startswith("linux"):
            return ok(self.check_id, "not applicable (not Linux)")
        watches, instances = self._read("max_user_watches"), self._read("max_user_instances")
        if watches is None or instances is None:
            return ok(self.check_id, f"not checked: cannot read {self.proc_dir}")
        points = watch_points(ctx.routines.watched)
        need, exact = count_watched_dirs(points, watches)
        needs = f"{'' if exact else 'at least '}{plural(need, 'folder')} watched"
        limits = f"max_user_watches {watches}, max_user_instances {instances}"
        problems = []
        if need >= watches:
            problems.append(f"{needs} by file_watch routines, but {limits}: watches fail")
        elif need > watches // 2:
            problems.append(f"{needs} uses over half of max_user_watches ({watches})")
        if watches < MIN_WATCHES:
            problems.append(f"max_user_watches is {watches} (below {MIN_WATCHES})")
        if instances < MIN_INSTANCES:
            problems.append(f"max_user_instances is {instances} (below {MIN_INSTANCES})")
        if problems:
            hint = INOTIFY_HINT
            if instances < MIN_INSTANCES:
                hint += "; sudo sysctl fs.inotify.max_user_instances=512"
            return warn(self.check_id, "; ".join(problems), hint)
        return ok(self.check_id, f"{limits}; {needs} by file_watch routines")


class AgentRunnerCheck(DoctorCheck):
    """Prompt routines have an agent runner: ``[agent] command`` is set and its program is
    found (without one, every prompt run fails ``agent_runner_not_configured``)."""

    check_id = "agent_runner"

    def run(self, ctx: DoctorContext) -> CheckResult:
        prompts = ctx.routines.prompt_ids
        command = ctx.config.agent_command
        if not prompts:
            note = f" ([agent] command: {command[0]})" if command else ""
            return ok(self.check_id, f"no prompt routines{note}")
        who = f"{plural(len(prompts), 'prompt routine')} ({listed(list(prompts))})"
        if not command:
            return fail(
                self.check_id,
                f"{who} but no [agent] command in palyra.toml: their runs fail"
                " agent_runner_not_configured",
                f"add an [agent] section to {ctx.home.config} with"
                ' command = ["your-agent", "--arg"] (it gets the prompt on stdin), then:'
                " palyra daemon restart",
            )
        program = command[0]
        found = shutil.which(os.path.expanduser(program))
        if found is None:
            return fail(
                self.check_id,
                f"{who}: [agent] command runs {program!r}, which is not found or not executable",
                f"install it, or fix [agent] command in {ctx.home.config} (an absolute path"
                " is safest: palyrad's PATH may differ from your shell's)",
            )
        return ok(self.check_id, f"{who} run by {found}")


WARN_FRACTION, WARN_BYTES = 0.10, 1000**3


def disk_status(free: int, total: int) -> CheckStatus:
    """SPEC §6's disk incident threshold (``palyrad.runtime.disk``: under 5 % or 500 MB
    free, the one rule self-healing uses too) fails; under 10 % or 1 GB warns."""
    space = DiskSpace(free, total)
    if space.low():
        return CheckStatus.FAIL
    if space.low(WARN_FRACTION, WARN_BYTES):
        return CheckStatus.WARN
    return CheckStatus.OK


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


class DiskCheck(DoctorCheck):
    """Free space on the home's file system (the journal, run logs and output live there)."""

    check_id = "disk"

    def run(self, ctx: DoctorContext) -> CheckResult:
        where = _existing(ctx.home.root)
        st = os.statvfs(where)
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        status = disk_status(free, total)
        share = f"{free / total:.0%}" if total else "?"
        message = f"{free / 1000**3:.1f} GB free ({share}) on the file system of {where}"
        if status is CheckStatus.OK:
            return ok(self.check_id, message)
        hint = (
            f"free some space on the file system of {where} (run output: {ctx.home.runs_dir};"
            " keep less history with [history] max_runs_per_routine / max_age_days)"
        )
        if status is CheckStatus.FAIL:
            return fail(self.check_id, message + ": writes may fail", hint)
        return warn(self.check_id, message, hint)
