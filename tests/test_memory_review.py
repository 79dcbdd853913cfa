"""Adversarial review of memory and learning (SPEC §4.8, §6 "Memory"/"Learning", §7).

Every ``xfail(strict=True)`` test here fails because of a confirmed problem and passes once
it is fixed (then its marker goes). The plain tests are regression tests for what held up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner, Result

from palyra_cli.app import cli as palyra_app
from palyrad.domain.learning import scan_output
from palyrad.domain.memory_embedding import BuiltinEmbedder
from palyrad.journal import Journal
from palyrad.ops import learning, memory
from palyrad.runtime.command_embedder import CommandEmbedder, EmbedderError
from palyrad.runtime.config import DaemonConfig
from palyrad.runtime.home import Home
from palyrad.services.executor.active_run import ActiveRun
from palyrad.services.executor.tasks.memory import PostRunReflection
from routines.errors import InvalidInput, PalyraError
from tests.test_memory_store import _run_with_log

pytestmark = pytest.mark.timeout(120)

T0 = 1_800_000_000_000
DAY_MS = 86_400_000
CONFIG = DaemonConfig()
BUILTIN = BuiltinEmbedder()


class TextOnly:
    """A command embedder that is down: search falls back to full text (SPEC §6: items not
    yet embedded are still found by text)."""

    name = "command:down"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise EmbedderError("embedder command `down` cannot be started")


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home.at(tmp_path / "home").ensure()


@pytest.fixture
def journal(home: Home) -> Iterator[Journal]:
    j = Journal(home.journal)
    yield j
    j.close()


def _cli(home: Home, *args: str) -> Result:
    return CliRunner().invoke(palyra_app, ["--home", str(home.root), *args])


def _clean_error(result: Result) -> None:
    """A CLI failure the project's way: an exit code and ``error: …``, never a traceback."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code != 0
    assert result.stderr.startswith("error:"), result.stderr


# --- CLI input -------------------------------------------------------------------------------


def test_ttl_days_zero_is_refused(journal: Journal) -> None:
    with pytest.raises(InvalidInput, match="ttl-days"):
        memory.add(journal, None, CONFIG, "remember me", (), T0, ttl_days=0)
    assert journal.memory.totals() == (0, 0)


def test_ttl_days_out_of_range_is_refused(journal: Journal) -> None:
    for days in (-1, 36_501, 10**30):
        with pytest.raises(InvalidInput, match="ttl-days"):
            memory.add(journal, None, CONFIG, "remember me", (), T0, ttl_days=days)
    assert journal.memory.totals() == (0, 0)


@pytest.mark.parametrize("command", ["delete", "accept", "reject"])
def test_an_undecodable_id_is_a_clear_error(home: Home, command: str) -> None:
    _clean_error(_cli(home, "memory", command, "01ABC\udcff"))


def test_undecodable_text_and_tags_are_clear_errors(home: Home, journal: Journal) -> None:
    _clean_error(_cli(home, "memory", "add", "bad \udcff text"))
    _clean_error(_cli(home, "memory", "add", "fine", "--tag", "\udcff"))
    assert journal.memory.totals() == (0, 0)
    # a query with one is searched for its other words
    assert _cli(home, "memory", "search", "q \udcff x", "--json").exit_code == 0


@pytest.mark.parametrize(
    ("setting", "args"),
    [('[""]', ("stats",)), ('["/bin/cat\\u0000x"]', ("search", "hello"))],
)
def test_an_unusable_embedder_command_is_a_config_error(
    home: Home, setting: str, args: tuple[str, ...]
) -> None:
    home.config.write_text(f"[memory]\nembedder = {setting}\n")
    _clean_error(_cli(home, "memory", *args))


# --- learning --------------------------------------------------------------------------------


def test_a_marker_split_across_three_reads_is_seen() -> None:
    active = ActiveRun(run=None, proc=None, log_path=Path("x"), started_ms=0, deadline_ms=0)  # type: ignore[arg-type]
    for chunk in (b"::pal", b"yra-", b'learn {"kind":"fact","text":"x","confidence":1}\n'):
        active.add_tail(chunk)
    assert active.learn_marker_seen


def test_a_marker_split_across_two_reads_is_seen() -> None:
    active = ActiveRun(run=None, proc=None, log_path=Path("x"), started_ms=0, deadline_ms=0)  # type: ignore[arg-type]
    for chunk in (b"noise ::palyra-le", b'arn {"kind":"fact","text":"x","confidence":1}\n'):
        active.add_tail(chunk)
    assert active.learn_marker_seen


LOG = (
    b'::palyra-learn {"kind": "fact", "text": "The NAS is at 10.0.0.5", "confidence": 0.95}\n'
    b"::palyra-learn not json\n"
)


def test_a_retried_reflection_still_reports_malformed_lines(journal: Journal, home: Home) -> None:
    run_id = _run_with_log(journal, home, LOG)
    task = SimpleNamespace(
        payload={"run_id": run_id},
        journal=journal,
        home=home,
        config=CONFIG,
        clock=SimpleNamespace(now_ms=lambda: T0 + 10),
    )
    first = PostRunReflection().run(task)  # type: ignore[arg-type]
    assert first is not None and "line 2:" in first
    # the executor is killed before the batch recorded the success: the task runs again
    again = PostRunReflection().run(task)  # type: ignore[arg-type]
    assert again is not None and "line 2:" in again
    assert memory.stats(journal, CONFIG, T0 + 20)["entries"] == 1  # nothing twice


def test_a_reflection_retried_after_it_committed_records_nothing_twice(
    journal: Journal, home: Home
) -> None:
    run_id = _run_with_log(journal, home, LOG * 3)
    first = learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0)
    # a second process that read before the first committed (the lease was taken over)
    again = learning._record(
        journal,
        CONFIG,
        BUILTIN,
        run_id,
        "teacher",
        scan_output(home.run_log(run_id), 8),
        T0 + 1,
    )
    assert (first.recorded, again.recorded) == (3, 0)
    assert len(journal.learning.of_run(run_id)) == 3
    assert journal.memory.totals()[0] == 3


# (Old reflections and candidates: memory maintenance forgets them, see
# test_memory_store.py::test_maintenance_forgets_old_reflections_and_undecided_candidates.)


def test_learned_text_cannot_send_terminal_escapes(journal: Journal, home: Home) -> None:
    evil = (
        b'::palyra-learn {"kind": "fact", "text": "ok\\u001b]0;pwned\\u0007\\u001b[2J",'
        b' "confidence": 0.5}\n'
        b'::palyra-learn {"kind": "fact", "text": "sure\\u001b[31m", "confidence": 0.99}\n'
    )
    run_id = _run_with_log(journal, home, evil)
    learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0)
    for args in (("candidates",), ("list",)):
        out = _cli(home, "memory", *args)
        assert out.exit_code == 0, out.output
        assert "\x1b" not in out.output and "\x07" not in out.output


# --- search ----------------------------------------------------------------------------------


def test_a_tag_filtered_search_is_not_quadratic(journal: Journal) -> None:
    words = [f"w{i}" for i in range(200)]
    texts = [" ".join(words[i % 200 : i % 200 + 5]) + " common" for i in range(1500)]
    journal.memory.insert(
        [memory.new_item(t, ("t",), "operator", T0 + i, 90, None) for i, t in enumerate(texts)]
    )
    query = " ".join(words)[:1000]
    # No timing assertion (figures live in bench/): the quadratic plan took 3.6 s here and
    # minutes at 20 000 items; the test's timeout is the backstop, the plan the fix.
    found = memory.search(journal, TextOnly(), query, T0 + 10_000, limit=10, tag="t")
    assert len(found.results) == 10 and all(r["tags"] == ["t"] for r in found.results)


@pytest.mark.parametrize(
    ("text", "query"),
    [("Die Hauptstraße ist gesperrt", "Hauptstraße"), ("İstanbul office", "İstanbul")],
)
def test_text_search_finds_the_exact_word(journal: Journal, text: str, query: str) -> None:
    journal.memory.insert([memory.new_item(text, (), "operator", T0, 90, None)])
    found = memory.search(journal, TextOnly(), query, T0 + 1)
    assert found.warnings  # text only: the embedder is down
    assert [r["text"] for r in found.results] == [text]


def test_search_words_are_never_fts5_syntax(journal: Journal) -> None:
    journal.memory.insert([memory.new_item("alpha beta gamma", (), "operator", T0, 90, BUILTIN)])
    for query in ('"', "text:alpha", "alpha NEAR(beta)", "al*", "NOT alpha", "^alpha", "(-)"):
        memory.search(journal, TextOnly(), query, T0 + 1)
        memory.search(journal, BUILTIN, query, T0 + 1)


# --- embedding -------------------------------------------------------------------------------


class PoisonSensitive:
    """A command embedder that fails a whole batch holding one text it cannot take (a text
    over a model's token limit, say)."""

    name = "command:poison"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if any("POISON" in t for t in texts):
            raise EmbedderError("embedder command `model` exited with status 1")
        return [[1.0, float(len(t))] for t in texts]


def test_one_refused_text_does_not_stall_the_backfill(journal: Journal) -> None:
    items = [memory.new_item("POISON " + "x" * 100, (), "operator", T0, 90, None)]
    items += [memory.new_item(f"item {i}", (), "operator", T0 + 1 + i, 90, None) for i in range(70)]
    journal.memory.insert(items)
    embedder = PoisonSensitive()
    for _ in range(3):  # the task and its retries
        with contextlib.suppress(EmbedderError):
            memory.backfill(journal, embedder, lambda: T0 + 100, lambda: True)
    assert journal.memory.stats(embedder.name, T0 + 100).embedded == 70


def test_vectors_are_never_stored_for_deleted_items(journal: Journal) -> None:
    stored = journal.memory.insert(
        [memory.new_item(f"item {i}", (), "operator", T0 + i, 90, None) for i in range(5)]
    )
    batch = journal.memory.unembedded(BUILTIN.name, T0, 64)
    journal.memory.delete(stored[2].item_id, T0 + 1)  # maintenance wins the race
    rows = [(seq, memory.stored_vector(BUILTIN, BUILTIN.embed([t])[0])) for seq, t in batch]
    assert journal.memory.store_vectors(rows) == 4
    s = memory.stats(journal, CONFIG, T0 + 2)
    assert (s["entries"], s["embedded"], s["not_embedded"]) == (4, 4, 0)


def test_an_embedder_that_leaves_a_helper_running_still_answers(tmp_path: Path) -> None:
    script = tmp_path / "embed.sh"
    script.write_text("#!/bin/sh\ncat >/dev/null\necho '[1.0, 0.5]'\nsleep 30 &\nexit 0\n")
    os.chmod(script, 0o755)
    embedder = CommandEmbedder([str(script)], timeout_s=20.0)  # answers ~0.5 s after exit
    assert embedder.embed(["hello"]) == [[1.0, 0.5]]


def test_an_embedder_change_re_embeds_and_stats_add_up(journal: Journal) -> None:
    journal.memory.insert(
        [memory.new_item(f"item {i}", (), "operator", T0 + i, 90, BUILTIN) for i in range(10)]
    )
    other = replace(CONFIG, memory_embedder=("/bin/false",))
    s = memory.stats(journal, other, T0 + 20)
    assert (s["entries"], s["embedded"], s["not_embedded"]) == (10, 0, 10)
    embedder = PoisonSensitive()
    assert memory.backfill(journal, embedder, lambda: T0 + 20, lambda: True).embedded == 10
    after = journal.memory.stats(embedder.name, T0 + 20)
    assert (after.entries, after.embedded) == (10, 10)
    assert journal.memory.stats(BUILTIN.name, T0 + 20).embedded == 0  # replaced, not doubled


def test_accept_racing_accept_stores_one_item(journal: Journal, home: Home) -> None:
    run_id = _run_with_log(
        journal, home, b'::palyra-learn {"kind": "fact", "text": "t", "confidence": 0.1}\n'
    )
    learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0)
    (cand,) = learning.candidates(journal)["candidates"]
    other = Journal(home.journal)
    try:
        # both read it as pending; the second decision must lose
        learning.accept(journal, CONFIG, BUILTIN, f"  {cand['candidate_id'].lower()} ", T0 + 1)
        with pytest.raises(PalyraError, match="already decided"):
            learning.accept(other, CONFIG, BUILTIN, cand["candidate_id"], T0 + 2)
        assert not other.learning.decide(cand["candidate_id"], "accepted", T0 + 3, "X")
    finally:
        other.close()
    assert journal.memory.totals()[0] == 1
