"""A directory that appears between choosing a watch point and scheduling it (``mkdir -p``
is that fast) is not lost: the reconcile looks again and asks for another round, instead of
waiting for a creation event that went to no watch (seen as a flaky integration test under
load: test_policies_integration.py::test_file_watch_picks_up_a_directory_created_later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from watchdog.observers import Observer

from palyrad.services.scheduler.file_watch import FileWatchManager
from routines.model import FileWatchTrigger

pytestmark = pytest.mark.timeout(30)


def test_a_directory_created_while_the_watch_is_scheduled_is_looked_at_again(
    tmp_path: Path,
) -> None:
    target = tmp_path / "later" / "deep"
    observer = Observer()
    real_schedule = observer.schedule

    def racing_schedule(handler: Any, path: str, recursive: bool = False) -> Any:
        target.mkdir(parents=True, exist_ok=True)  # appears in the window
        return real_schedule(handler, path, recursive=recursive)

    observer.schedule = racing_schedule  # type: ignore[method-assign]
    woke: list[int] = []
    manager = FileWatchManager(observer, lambda: woke.append(1))
    observer.start()
    try:
        manager.reconcile({"fw": FileWatchTrigger(paths=(str(target),))})
        assert manager.dirty and woke  # another round, at once
        manager.reconcile()
        assert (str(target), False) in manager.watches  # the path itself is watched now
        assert not manager.dirty
    finally:
        observer.stop()
        observer.join(timeout=5)
