"""``palyra doctor``'s ``memory`` check (SPEC §4.3): a broken command embedder fails, a
backlog of items without vectors warns with the last backfill's error, waiting learning
candidates are mentioned."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from palyrad.domain.tasks import EMBEDDINGS_BACKFILL
from palyrad.journal import Journal
from palyrad.ops import memory
from palyrad.ops.doctor import CheckStatus, run_doctor
from palyrad.runtime.clock import ManualClock
from palyrad.runtime.config import DaemonConfig
from palyrad.runtime.home import Home

pytestmark = pytest.mark.timeout(60)

T0 = 1_800_000_000_000
HOUR = 3_600_000


def _home(tmp_path: Path, config: str = "") -> Home:
    home = Home.at(tmp_path / "home").ensure()
    if config:
        home.config.write_text(config)
    return home


def _check(home: Home, now: int = T0) -> tuple[CheckStatus, str, str | None]:
    (result,) = run_doctor(home, only=["memory"], clock=ManualClock(now)).checks
    return result.status, result.message, result.hint


def test_builtin_embedder_and_no_journal_is_ok(tmp_path: Path) -> None:
    status, message, _ = _check(_home(tmp_path))
    assert status is CheckStatus.OK and "no journal yet" in message


def test_a_command_embedder_that_cannot_run_fails(tmp_path: Path) -> None:
    home = _home(tmp_path, '[memory]\nembedder = ["/nonexistent/embed", "--json"]\n')
    status, message, hint = _check(home)
    assert status is CheckStatus.FAIL and "/nonexistent/embed" in message
    assert hint is not None and "[memory] embedder" in hint
    not_exec = tmp_path / "embed.sh"
    not_exec.write_text("#!/bin/sh\n")
    home.config.write_text(f'[memory]\nembedder = ["{not_exec}"]\n')
    assert "is not executable" in _check(home)[1]
    home.config.write_text(f'[memory]\nembedder = ["{Path(sys.executable).name}", "x.py"]\n')
    assert _check(home)[0] is CheckStatus.OK or "no journal" in _check(home)[1]


def test_a_backlog_of_unembedded_items_warns_with_the_last_backfill_error(tmp_path: Path) -> None:
    home = _home(tmp_path, f'[memory]\nembedder = ["{sys.executable}", "embed.py"]\n')
    journal = Journal(home.journal)
    try:
        config = DaemonConfig(memory_embedder=(sys.executable, "embed.py"))
        memory.add(journal, None, config, "waiting for a vector", (), T0)
        status, message, _ = _check(home, T0 + 60_000)
        assert status is CheckStatus.OK and "1 items, 0 embedded" in message
        (task,) = journal.tasks.newest(kind=EMBEDDINGS_BACKFILL, limit=5)  # queued by add
        token = "t1"
        journal.tasks.claim("test", [token], T0, 60_000)
        journal.tasks.fail(task.task_id, token, T0, "EmbedderError: exited 3")
        status, message, hint = _check(home, T0 + 25 * 60_000)
        assert status is CheckStatus.WARN and "waiting for vectors" in message
        assert "exited 3" in message and hint is not None and "embeddings_backfill" in hint
    finally:
        journal.close()


def test_waiting_candidates_are_mentioned(tmp_path: Path) -> None:
    from tests.test_memory_store import _run_with_log

    home = _home(tmp_path)
    journal = Journal(home.journal)
    try:
        run_id = _run_with_log(
            journal, home, b'::palyra-learn {"kind": "fact", "text": "t", "confidence": 0.1}\n'
        )
        from palyrad.domain.memory_embedding import BuiltinEmbedder
        from palyrad.ops.learning import reflect

        reflect(journal, home, DaemonConfig(), BuiltinEmbedder(), run_id, T0)
        status, message, _ = _check(home, T0 + 1)
        assert status is CheckStatus.OK and "1 learning candidates waiting" in message
    finally:
        journal.close()
