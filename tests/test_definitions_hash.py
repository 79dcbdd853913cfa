"""The journal memo of definitions.json's hash (palyrad.ops.definitions_hash): run-now must not
re-read and re-hash a large file the daemon has applied, and must never trust a stale memo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from palyrad.journal import STATE_DEFINITIONS_HASH_MEMO, Journal
from palyrad.ops import definitions_hash
from palyrad.ops.definitions_hash import current_file_hash, file_hash
from palyrad.runtime.home import Home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home.at(tmp_path / "home").ensure()
    h.definitions.write_bytes(b'{"schema_version": 1, "routines": []}')
    return h


def test_memo_answers_while_the_file_is_unchanged(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(definitions_hash, "RACY_NS", 0)
    journal = Journal(home.journal)
    try:
        want = file_hash(home)
        assert current_file_hash(home, journal) == want
        assert journal.state.get(STATE_DEFINITIONS_HASH_MEMO) is not None

        def no_hashing(_home: Home) -> str:
            raise AssertionError("hashed although the file did not change")

        monkeypatch.setattr(definitions_hash, "file_hash", no_hashing)
        assert current_file_hash(home, journal) == want
    finally:
        journal.close()


def test_memo_is_not_trusted_after_a_change(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(definitions_hash, "RACY_NS", 0)
    journal = Journal(home.journal)
    try:
        before = current_file_hash(home, journal)
        # Same size, rewritten in place: only the times tell. A real edit lands a timestamp
        # tick later (RACY_NS makes sure); here the next tick is made explicit.
        home.definitions.write_bytes(b'{"schema_version": 1, "routines":[ ]}')
        st = home.definitions.stat()
        os.utime(home.definitions, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert current_file_hash(home, journal) == file_hash(home) != before
        home.definitions.unlink()
        assert current_file_hash(home, journal) == ""
    finally:
        journal.close()


def test_a_fresh_file_is_hashed_but_not_remembered(home: Home) -> None:
    journal = Journal(home.journal)
    try:
        assert current_file_hash(home, journal) == file_hash(home)
        assert journal.state.get(STATE_DEFINITIONS_HASH_MEMO) is None  # written just now
    finally:
        journal.close()


def test_an_unreadable_memo_means_hashing(home: Home) -> None:
    journal = Journal(home.journal)
    try:
        journal.state.set(STATE_DEFINITIONS_HASH_MEMO, "not json", 0)
        assert current_file_hash(home, journal) == file_hash(home)
        journal.state.set(STATE_DEFINITIONS_HASH_MEMO, '{"signature": 1}', 0)
        assert current_file_hash(home, journal) == file_hash(home)
    finally:
        journal.close()
