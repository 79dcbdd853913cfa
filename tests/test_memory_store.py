"""The memory store as a library (SPEC §4.8, §6): items, hybrid search, backfill,
maintenance and learning, on a real journal with an injected clock.

The CLI and a real daemon are exercised by ``test_memory_daemon.py``; here every branch is
reached in milliseconds: TTL after 91 simulated days, capacity limits oldest-first, a
reflection retried after it committed, sampling 0, a routine's cooldown.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from palyrad.domain.memory import DAY_MS, MAX_TAGS, MAX_TEXT_BYTES
from palyrad.domain.memory_embedding import BUILTIN_NAME, BuiltinEmbedder
from palyrad.domain.runs import Run, new_ulid
from palyrad.journal import Journal
from palyrad.ops import learning, memory
from palyrad.runtime.command_embedder import EmbedderError
from palyrad.runtime.config import DaemonConfig
from palyrad.runtime.home import Home
from routines.errors import InvalidInput, PalyraError

pytestmark = pytest.mark.timeout(60)

T0 = 1_800_000_000_000
_RUN_SEQ = itertools.count()
CONFIG = DaemonConfig()
BUILTIN = BuiltinEmbedder()

CORPUS = [
    ("The NAS backup share is mounted at //nas/backup every night", ("infra",)),
    ("Deploying the web servers needs the staging checklist first", ("infra", "deploy")),
    ("Grandma's chocolate cake: 200 g dark chocolate, 4 eggs, 100 g butter", ("recipes",)),
    ("The dentist appointment is on the first Tuesday of each month", ("personal",)),
    ("Kubernetes cluster upgrades happen on Sunday mornings", ("infra",)),
    ("Water the tomato plants when the soil is dry", ("garden",)),
    ("Invoices go to accounting@example.com before the 5th", ("work",)),
    ("The wifi password for the guest network is on the fridge", ("home",)),
    ("Run the database migrations before restarting the application", ("deploy",)),
    ("Bake the bread at 230 degrees for 35 minutes", ("recipes",)),
]


class Unavailable:
    """An embedder whose command is broken (what a search falls back from)."""

    name = "command:broken"

    def embed(self, texts: object) -> list[list[float]]:
        raise EmbedderError("embedder command ['broken'] cannot be started (not found)")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home.at(tmp_path / "home").ensure()


def _fill(journal: Journal, embedder: object | None = BUILTIN, now: int = T0) -> list[str]:
    ids = []
    for i, (text, tags) in enumerate(CORPUS):
        item = memory.new_item(text, tags, "operator", now + i, 90, embedder)  # type: ignore[arg-type]
        ids.append(journal.memory.insert([item])[0].item_id)
    return ids


def _texts(found: memory.SearchResults) -> list[str]:
    return [r["text"] for r in found.results]


# --- add / list / delete / stats -----------------------------------------------------------


def test_add_list_delete_stats_shapes(journal: Journal) -> None:
    item = memory.add(journal, None, CONFIG, "  remember the milk  ", ("home", "home", "todo"), T0)
    assert set(item) >= {"item_id", "text", "tags", "source", "created_at", "expires_at"}
    assert item["text"] == "remember the milk" and item["tags"] == ["home", "todo"]
    assert item["source"] == "operator"
    assert item["expires_at_unix_ms"] - item["created_at_unix_ms"] == 90 * DAY_MS
    short = memory.add(journal, None, CONFIG, "short lived", (), T0 + 1, ttl_days=2)
    assert short["expires_at_unix_ms"] == T0 + 1 + 2 * DAY_MS
    listed = memory.list_items(journal, T0 + 2)["items"]
    assert [i["item_id"] for i in listed] == [short["item_id"], item["item_id"]]  # newest first
    s = memory.stats(journal, CONFIG, T0 + 2)
    assert s["entries"] == 2 and s["embedded"] + s["not_embedded"] == s["entries"]
    assert s["embedded"] == 2 and s["embedder"] == BUILTIN_NAME
    assert s["bytes"] == len("remember the milk") + len("short lived")
    assert s["oldest_at_unix_ms"] == T0
    memory.delete(journal, item["item_id"], T0 + 3)
    with pytest.raises(PalyraError, match="no memory item"):
        memory.delete(journal, item["item_id"], T0 + 3)
    assert [i["item_id"] for i in memory.list_items(journal, T0 + 3)["items"]] == [short["item_id"]]
    assert memory.search(journal, BUILTIN, "milk", T0 + 3).results == []  # gone from the index


@pytest.mark.parametrize(
    ("text", "tags", "message"),
    [
        ("   ", (), "text is empty"),
        ("x" * (MAX_TEXT_BYTES + 1), (), "the limit is"),
        ("nul\0byte", (), "NUL"),
        ("ok", ("has space",), "is not valid"),
        ("ok", ("",), "is not valid"),
        ("ok", tuple(f"t{i}" for i in range(MAX_TAGS + 1)), "the limit is"),
    ],
)
def test_invalid_items_are_refused_and_store_nothing(
    journal: Journal, text: str, tags: tuple[str, ...], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        memory.add(journal, None, CONFIG, text, tags, T0)
    assert memory.stats(journal, CONFIG, T0)["entries"] == 0


def test_search_arguments_are_checked(journal: Journal) -> None:
    for query, limit, tag in (("", 10, None), ("x" * 2000, 10, None), ("ok", 0, None),
                              ("ok", 101, None), ("ok", 10, "bad tag")):  # fmt: skip
        with pytest.raises(InvalidInput):
            memory.search(journal, BUILTIN, query, T0, limit=limit, tag=tag)


# --- search --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("NAS backup", 0),
        ("chocolate cake recipe", 2),
        ("dentist", 3),
        ("kubernetes upgrade", 4),
        ("tomato", 5),
        ("invoice accounting", 6),
        ("wifi password", 7),
        ("database migration", 8),
    ],
)
def test_distinctive_queries_put_the_right_item_first(
    journal: Journal, query: str, expected: int
) -> None:
    _fill(journal)
    found = memory.search(journal, BUILTIN, query, T0 + 100)
    assert _texts(found)[0] == CORPUS[expected][0]
    assert found.results[0]["score"] > found.results[-1]["score"] or len(found.results) == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("deployment", 1),  # deploying
        ("backups", 0),  # backup
        ("migrating databases", 8),  # migrations, database
        ("baking", 9),  # bake
        ("kubernets", 4),  # a typo
        ("restart", 8),  # restarting
    ],
)
def test_stemming_like_variants_are_in_the_top_three(
    journal: Journal, query: str, expected: int
) -> None:
    _fill(journal)
    found = memory.search(journal, BUILTIN, query, T0 + 100)
    assert CORPUS[expected][0] in _texts(found)[:3], _texts(found)


def test_scores_are_normalized_best_first_with_their_sources(journal: Journal) -> None:
    _fill(journal)
    found = memory.search(journal, BUILTIN, "NAS backup share", T0 + 100)
    scores = [r["score"] for r in found.results]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    top = found.results[0]
    assert top["matched"]["text_rank"] == 1 and top["matched"]["similarity"] > 0.3
    assert top["score"] == 1.0  # first by text and by meaning


def test_tag_filter(journal: Journal) -> None:
    _fill(journal)
    found = memory.search(journal, BUILTIN, "the", T0 + 100, tag="recipes", limit=100)
    assert found.results and all("recipes" in r["tags"] for r in found.results)
    assert memory.search(journal, BUILTIN, "chocolate", T0 + 100, tag="garden").results == []


def test_items_without_embeddings_are_found_by_text(journal: Journal) -> None:
    _fill(journal, embedder=None)
    s = memory.stats(journal, CONFIG, T0 + 100)
    assert s["embedded"] == 0 and s["not_embedded"] == len(CORPUS)
    found = memory.search(journal, BUILTIN, "dentist appointment", T0 + 100)
    assert _texts(found)[0] == CORPUS[3][0]
    assert found.results[0]["matched"]["similarity"] is None
    # "deployment" shares no stemmed word with "Deploying ..." (porter: deploy vs deploi):
    # only a vector finds it, and there is none yet
    assert memory.search(journal, BUILTIN, "deployment", T0 + 100).results == []


def test_a_failing_embedder_leaves_text_search_working(journal: Journal) -> None:
    _fill(journal, embedder=None)
    found = memory.search(journal, Unavailable(), "wifi password", T0 + 100)  # type: ignore[arg-type]
    assert _texts(found)[0] == CORPUS[7][0]
    assert found.warnings and "searched by text only" in found.warnings[0]
    assert found.to_json()["warnings"] == found.warnings


def test_query_syntax_is_never_fts_syntax(journal: Journal) -> None:
    _fill(journal)
    for query in ('"unbalanced', "NEAR(a b)", "a AND OR NOT", "col:x", "*", "-x", "^start", "()"):
        memory.search(journal, BUILTIN, query, T0 + 100)  # no exception


def test_expired_items_are_not_found_before_maintenance_deletes_them(journal: Journal) -> None:
    _fill(journal)
    later = T0 + 91 * DAY_MS
    assert memory.search(journal, BUILTIN, "dentist", later).results == []
    assert memory.list_items(journal, later)["items"] == []
    assert memory.stats(journal, CONFIG, later)["entries"] == 0


# --- backfill ------------------------------------------------------------------------------


def test_backfill_embeds_everything_in_batches_and_search_finds_by_meaning(
    journal: Journal,
) -> None:
    for i in range(150):
        journal.memory.insert(
            [memory.new_item(f"note number {i}", (), "operator", T0 + i, 90, None)]
        )
    _fill(journal, embedder=None, now=T0 + 1000)
    beats: list[int] = []

    def keep_going() -> bool:
        beats.append(1)
        return True

    done = memory.backfill(journal, BUILTIN, lambda: T0 + 2000, keep_going).embedded
    assert done == 150 + len(CORPUS)
    assert len(beats) == 3  # 160 items: batches of 64, 64, 32
    s = memory.stats(journal, CONFIG, T0 + 2000)
    assert s["embedded"] == s["entries"] == 160 and s["not_embedded"] == 0
    assert CORPUS[1][0] in _texts(memory.search(journal, BUILTIN, "deployment", T0 + 2000))
    assert memory.backfill(journal, BUILTIN, lambda: T0 + 2000, keep_going).embedded == 0


def test_backfill_stops_when_the_lease_is_lost(journal: Journal) -> None:
    for i in range(200):
        journal.memory.insert([memory.new_item(f"item {i}", (), "operator", T0 + i, 90, None)])
    assert memory.backfill(journal, BUILTIN, lambda: T0, lambda: False).embedded == 64


def test_a_new_embedder_re_embeds_everything(journal: Journal) -> None:
    _fill(journal)

    class Other(BuiltinEmbedder):
        name = "builtin-hash-v0"  # type: ignore[misc]

    other = Other()
    assert memory.stats(journal, replace(CONFIG), T0 + 100)["embedded"] == len(CORPUS)
    assert memory.backfill(journal, other, lambda: T0 + 100, lambda: True).embedded == len(CORPUS)
    assert journal.memory.stats(other.name, T0 + 100).embedded == len(CORPUS)
    assert journal.memory.stats(BUILTIN_NAME, T0 + 100).embedded == 0


def test_the_vector_cache_sees_additions_and_deletions(journal: Journal) -> None:
    ids = _fill(journal)
    index = memory.VectorIndex()
    first = memory.search(journal, BUILTIN, "deployment", T0 + 100, index=index)
    assert _texts(first) == [CORPUS[1][0]] and len(index) == len(CORPUS)  # by vector only
    journal.memory.delete(ids[1], T0 + 101)
    assert memory.search(journal, BUILTIN, "deployment", T0 + 102, index=index).results == []
    assert len(index) == len(CORPUS) - 1
    memory.add(journal, None, CONFIG, "Deploying needs a green build", (), T0 + 103)
    again = memory.search(journal, BUILTIN, "deployment", T0 + 104, index=index)
    assert _texts(again) == ["Deploying needs a green build"] and len(index) == len(CORPUS)


# --- maintenance ---------------------------------------------------------------------------


def _maintain(journal: Journal, config: DaemonConfig, now: int) -> memory.MaintenanceResult:
    return memory.maintain(journal, config, lambda: now, lambda: True)


def test_ttl_expiry_deletes_expired_items_only(journal: Journal) -> None:
    old = [memory.add(journal, None, CONFIG, f"old {i}", (), T0 + i, ttl_days=1) for i in range(3)]
    keep = memory.add(journal, None, CONFIG, "kept", (), T0 + 10, ttl_days=30)
    result = _maintain(journal, CONFIG, T0 + 2 * DAY_MS)
    assert result.expired == 3 and result.over_entries == result.over_bytes == 0
    assert [i["item_id"] for i in memory.list_items(journal, T0 + 2 * DAY_MS)["items"]] == [
        keep["item_id"]
    ]
    assert all(journal.memory.get(o["item_id"]) is None for o in old)
    assert journal.memory.totals() == (1, len("kept"))


def test_max_entries_keeps_the_newest(journal: Journal) -> None:
    for i in range(1_200):
        journal.memory.insert([memory.new_item(f"entry {i}", (), "operator", T0 + i, 90, BUILTIN)])
    result = _maintain(journal, replace(CONFIG, memory_max_entries=100), T0 + 5_000)
    assert result.over_entries == 1_100
    items = memory.list_items(journal, T0 + 5_000, limit=1_000)["items"]
    assert [i["text"] for i in items] == [f"entry {i}" for i in range(1_199, 1_099, -1)]
    assert memory.stats(journal, CONFIG, T0 + 5_000)["embedded"] == 100


def test_max_bytes_keeps_the_newest(journal: Journal) -> None:
    for i in range(50):
        journal.memory.insert(
            [memory.new_item(f"{i:04d}" + "x" * 96, (), "operator", T0 + i, 90, None)]
        )
    result = _maintain(journal, replace(CONFIG, memory_max_bytes=2_000), T0 + 100)
    assert result.over_bytes == 30
    count, size = journal.memory.totals()
    assert (count, size) == (20, 2_000)
    assert memory.list_items(journal, T0 + 100)["items"][-1]["text"].startswith("0030")


def test_maintenance_with_nothing_to_do(journal: Journal) -> None:
    _fill(journal)
    result = _maintain(journal, CONFIG, T0 + 100)
    assert (result.expired, result.over_entries, result.over_bytes) == (0, 0, 0)
    assert "deleted 0 expired" in result.note()


# --- learning ------------------------------------------------------------------------------


LOG = b"""starting
::palyra-learn {"kind": "fact", "text": "The NAS is at 10.0.0.5", "confidence": 0.95}
  ::palyra-learn {"kind": "preference", "text": "Prefer rsync for big copies", "confidence": 0.5}
::palyra-learn {"kind": "fact", "text": 12, "confidence": 0.5}
::palyra-learn not json
echo '::palyra-learn {"kind": "fact", "text": "mid-line is ignored", "confidence": 1}'
::palyra-learn {"kind": "procedure", "text": "Restart nginx after cert renewal", "confidence": 0.9}
done
"""


def _run_with_log(journal: Journal, home: Home, log: bytes, routine_id: str = "teacher") -> str:
    run_id = new_ulid(T0)
    at = T0 + next(_RUN_SEQ)
    journal.runs.insert(
        Run(
            run_id=run_id,
            chain_id=run_id,
            routine_id=routine_id,
            attempt=1,
            trigger_kind="manual",
            status="succeeded",
            queued_at_ms=at,
            scheduled_for_ms=at,
            fire_at_ms=at,
            not_before_ms=at,
            decided=True,
        )
    )
    home.run_log(run_id).write_bytes(log)
    return run_id


def test_reflection_writes_confident_lines_and_keeps_the_rest_as_candidates(
    journal: Journal, home: Home
) -> None:
    run_id = _run_with_log(journal, home, LOG)
    done = learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0 + 10)
    assert (done.recorded, done.written) == (3, 2)
    assert len(done.problems) == 2 and done.problems[0].startswith("line 4:")
    assert done.problems[1].startswith("line 5:")
    pending = learning.candidates(journal)["candidates"]
    assert [(c["kind"], c["text"], c["confidence"]) for c in pending] == [
        ("preference", "Prefer rsync for big copies", 0.5)
    ]
    assert pending[0]["run_id"] == run_id and pending[0]["routine_id"] == "teacher"
    assert set(pending[0]) >= {"candidate_id", "kind", "text", "confidence", "run_id",
                               "routine_id", "created_at"}  # fmt: skip
    found = memory.search(journal, BUILTIN, "NAS", T0 + 20).results
    assert found[0]["text"] == "The NAS is at 10.0.0.5" and found[0]["source"] == run_id
    assert found[0]["tags"] == ["learned", "fact", "routine:teacher"]
    assert memory.search(journal, BUILTIN, "nginx", T0 + 20).results[0]["tags"][1] == "procedure"
    assert memory.search(journal, BUILTIN, "mid-line", T0 + 20).results == []
    # a retried reflection (the task ran again after it committed) records nothing twice
    again = learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0 + 30)
    assert again.outcome == "already reflected" and again.recorded == 0
    assert memory.stats(journal, CONFIG, T0 + 30)["entries"] == 2
    assert len(journal.learning.of_run(run_id)) == 3


def test_accept_stores_the_candidate_and_reject_drops_it(journal: Journal, home: Home) -> None:
    log = b"".join(
        b'::palyra-learn {"kind": "fact", "text": "fact %d", "confidence": 0.2}\n' % i
        for i in range(3)
    )
    run_id = _run_with_log(journal, home, log)
    learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0 + 10)
    first, second, third = learning.candidates(journal)["candidates"]
    item = learning.accept(journal, CONFIG, BUILTIN, first["candidate_id"].lower(), T0 + 20)
    assert item["text"] == "fact 0" and item["source"] == run_id
    assert journal.memory.get(item["item_id"]) is not None
    rejected = learning.reject(journal, second["candidate_id"], T0 + 21)
    assert rejected["status"] == "rejected" and rejected["item_id"] is None
    assert [c["candidate_id"] for c in learning.candidates(journal)["candidates"]] == [
        third["candidate_id"]
    ]
    for decided in (first, second):
        with pytest.raises(PalyraError, match="already decided"):
            learning.accept(journal, CONFIG, BUILTIN, decided["candidate_id"], T0 + 22)
    with pytest.raises(PalyraError, match="no learning candidate"):
        learning.reject(journal, "01ARZ3NDEKTSV4RRFFQ69G5FAV", T0 + 22)
    assert memory.stats(journal, CONFIG, T0 + 22)["entries"] == 1


def test_sampling_zero_learns_nothing(journal: Journal, home: Home) -> None:
    run_id = _run_with_log(journal, home, LOG)
    config = replace(CONFIG, learning_sampling_percent=0)
    done = learning.reflect(journal, home, config, BUILTIN, run_id, T0 + 10)
    assert done.outcome.startswith("not sampled") and done.recorded == 0
    assert journal.learning.of_run(run_id) == [] and journal.memory.totals() == (0, 0)
    # decided once: a later reflection of the same run does not change its mind
    assert learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0 + 20).recorded == 0


def test_cooldown_is_per_routine(journal: Journal, home: Home) -> None:
    config = replace(CONFIG, learning_cooldown_ms=60_000)
    first = _run_with_log(journal, home, LOG)
    assert learning.reflect(journal, home, config, BUILTIN, first, T0).recorded == 3
    soon = _run_with_log(journal, home, LOG)
    assert learning.reflect(journal, home, config, BUILTIN, soon, T0 + 30_000).outcome.startswith(
        "in cooldown"
    )
    other = _run_with_log(journal, home, LOG, routine_id="other")
    assert learning.reflect(journal, home, config, BUILTIN, other, T0 + 30_000).recorded == 3
    later = _run_with_log(journal, home, LOG)
    assert learning.reflect(journal, home, config, BUILTIN, later, T0 + 61_000).recorded == 3


def test_max_candidates_per_run(journal: Journal, home: Home) -> None:
    log = b"".join(
        b'::palyra-learn {"kind": "fact", "text": "f%d", "confidence": 0.1}\n' % i
        for i in range(12)
    )
    run_id = _run_with_log(journal, home, log)
    done = learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0)
    assert done.recorded == 8
    assert any("4 lines beyond [learning] max_candidates" in p for p in done.problems)


def test_a_run_without_a_log_or_record_learns_nothing(journal: Journal, home: Home) -> None:
    run_id = _run_with_log(journal, home, b"")
    home.run_log(run_id).unlink()
    assert learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0).recorded == 0
    gone = learning.reflect(journal, home, CONFIG, BUILTIN, "01UNKNOWNRUN", T0)
    assert "run is gone" in gone.outcome


def test_maintenance_forgets_old_reflections_and_undecided_candidates(
    journal: Journal, home: Home
) -> None:
    run_id = _run_with_log(journal, home, LOG)
    learning.reflect(journal, home, CONFIG, BUILTIN, run_id, T0)
    assert _maintain(journal, CONFIG, T0 + 29 * DAY_MS).forgotten == 0
    assert journal.learning.reflected(run_id)
    result = _maintain(journal, CONFIG, T0 + 31 * DAY_MS)
    assert result.forgotten == 1 and not journal.learning.reflected(run_id)
    assert len(learning.candidates(journal)["candidates"]) == 1  # younger than ttl_days
    result = _maintain(journal, CONFIG, T0 + 91 * DAY_MS)
    assert result.forgotten == 3  # the candidates (pending and written) lived as long as items
    assert (
        learning.candidates(journal)["candidates"] == [] and journal.learning.of_run(run_id) == []
    )


def test_items_stored_without_a_vector_queue_one_backfill(journal: Journal, home: Home) -> None:
    """A command embedder is not run where an item is stored: ``add``, an auto-written
    lesson and an accepted candidate each queue the backfill (one at a time)."""
    from palyrad.domain.tasks import EMBEDDINGS_BACKFILL

    command = replace(CONFIG, memory_embedder=("/nonexistent/embed",))
    cmd_embedder = memory.embedder_of(command)
    memory.add(journal, None, command, "added", (), T0)
    run_id = _run_with_log(journal, home, LOG)
    learning.reflect(journal, home, command, cmd_embedder, run_id, T0 + 1)
    (pending,) = learning.candidates(journal)["candidates"]
    learning.accept(journal, command, cmd_embedder, pending["candidate_id"], T0 + 2)
    assert memory.stats(journal, command, T0 + 3)["not_embedded"] == 4
    queued = journal.tasks.newest(kind=EMBEDDINGS_BACKFILL, limit=10)
    assert [t.status for t in queued] == ["pending"]  # one backfill, whoever queued it


def test_maintenance_gives_freed_pages_back(journal: Journal) -> None:
    for i in range(400):
        journal.memory.insert(
            [memory.new_item(f"{i} " + "y" * 4_000, (), "operator", T0 + i, 90, None)]
        )
    before = journal.memory.free_pages(0)
    first = _maintain(journal, replace(CONFIG, memory_max_entries=10), T0 + 1_000)
    assert first.over_entries == 390 and first.free_pages > before  # freed by the deletions
    second = _maintain(journal, replace(CONFIG, memory_max_entries=10), T0 + 1_001)
    assert second.free_pages < first.free_pages  # the incremental vacuum gave them back
