"""Memory and learning in a real palyrad, through the real ``palyra`` CLI (SPEC §4.8, §6).

One daemon, configured with a *command* embedder (a script speaking the JSON-lines protocol
of SPEC §7), so an item is searchable by text before it is embedded and the backfill task is
what embeds it:

- ``memory add/list/delete/stats/search`` shapes, with the daemon running;
- search before embedding, then the backfill (queued by ``add``) completing;
- a run printing ``::palyra-learn`` lines: the confident one is written to memory with the
  run id as source, the other waits; malformed lines end up in the reflection task's error
  while the task succeeds; accept and reject from the CLI;
- a run printing no marker gets no reflection task.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from palyrad.domain.tasks import EMBEDDINGS_BACKFILL, POST_RUN_REFLECTION
from palyrad.journal import Task
from tests.daemon_harness import RPC_ANY_PORTS, Daemon, palyra, routine, shell, wait_until

pytestmark = pytest.mark.timeout(120)

EMBED_SCRIPT = """
import sys, orjson
from palyrad.domain.memory_embedding import builtin_vector
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(orjson.dumps(builtin_vector(orjson.loads(line))) + b"\\n")
"""

TEACH = (
    "printf '%s\\n' 'working...'"
    ' \'::palyra-learn {"kind": "fact", "text": "The backup NAS lives at 10.0.0.5",'
    ' "confidence": 0.97}\''
    ' \'::palyra-learn {"kind": "preference", "text": "Prefer rsync for big copies",'
    ' "confidence": 0.4}\''
    ' \'::palyra-learn {"kind": "opinion", "text": "x", "confidence": 0.5}\''
    " '::palyra-learn {oops'"
    " 'done'"
)


def _json(d: Daemon, *args: str) -> Any:
    return orjson.loads(palyra(d.root, *args, "--json").stdout)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("memory")
    script = root / "embed.py"
    script.write_text(EMBED_SCRIPT)
    d = Daemon(root / "home")
    d.home.config.write_text(
        RPC_ANY_PORTS
        + f'[memory]\nembedder = ["{sys.executable}", "{script}"]\n'
        + "[learning]\nauto_write_threshold = 0.9\n"
    )
    d.write_definitions(
        [
            routine("teacher", {"kind": "manual"}, shell(TEACH)),
            routine("quiet", {"kind": "manual"}, shell("echo nothing to learn here")),
        ]
    )
    try:
        d.start()
        yield d
    finally:
        d.close()


def _tasks(d: Daemon, kind: str) -> list[Task]:
    return d.journal.tasks.newest(kind=kind, limit=1_000)


def _reflection_of(d: Daemon, run_id: str) -> Task | None:
    for t in _tasks(d, POST_RUN_REFLECTION):
        if orjson.loads(t.payload).get("run_id") == run_id:
            return t
    return None


def _run(d: Daemon, rid: str) -> str:
    out = palyra(d.root, "routines", "run-now", rid, "--json")
    return str(orjson.loads(out.stdout)["run_id"])


def test_add_search_before_embedding_then_backfill(daemon: Daemon) -> None:
    item = _json(daemon, "memory", "add", "The garage door code is 4711", "--tag", "home")
    assert item["source"] == "operator" and item["tags"] == ["home"]
    assert set(item) >= {"item_id", "text", "tags", "source", "created_at", "expires_at"}
    # searchable by text at once, whether or not the backfill has run yet
    found = _json(daemon, "memory", "search", "garage code")["results"]
    assert found[0]["item_id"] == item["item_id"] and found[0]["score"] > 0
    # the add queued a backfill and poked the executor: the command embedder embeds it
    stats = wait_until(
        lambda: (s := _json(daemon, "memory", "stats")) and s["not_embedded"] == 0 and s,
        timeout=60,
    )
    assert stats["embedded"] == stats["entries"] >= 1
    assert stats["embedder"].startswith("command:")
    done = [t for t in _tasks(daemon, EMBEDDINGS_BACKFILL) if t.status == "succeeded"]
    assert done
    # now found by meaning too (before the backfill only the text half could find it)
    both = _json(daemon, "memory", "search", "garage door")["results"]
    assert both[0]["item_id"] == item["item_id"]
    assert both[0]["matched"]["text_rank"] == 1 and both[0]["matched"]["similarity"] > 0.3


def test_list_delete_and_errors(daemon: Daemon) -> None:
    a = _json(daemon, "memory", "add", "first note for listing")
    b = _json(daemon, "memory", "add", "second note for listing", "--ttl-days", "3")
    listed = _json(daemon, "memory", "list", "--limit", "2")["items"]
    assert [i["item_id"] for i in listed] == [b["item_id"], a["item_id"]]
    palyra(daemon.root, "memory", "delete", a["item_id"])
    again = palyra(daemon.root, "memory", "delete", a["item_id"], check=False)
    assert again.returncode == 1 and "no memory item" in again.stderr
    bad = palyra(daemon.root, "memory", "add", "x", "--tag", "no spaces", check=False)
    assert bad.returncode == 2 and "tag" in bad.stderr
    empty = palyra(daemon.root, "memory", "search", "  ", check=False)
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_a_run_teaches_and_the_operator_decides(daemon: Daemon) -> None:
    run_id = _run(daemon, "teacher")
    task = wait_until(
        lambda: (t := _reflection_of(daemon, run_id)) and t.status == "succeeded" and t,
        timeout=60,
    )
    # malformed lines are reported in the task's error; the task itself succeeded
    assert task.error is not None and "line 4:" in task.error and "line 5:" in task.error
    found = _json(daemon, "memory", "search", "backup NAS")["results"]
    assert found[0]["text"] == "The backup NAS lives at 10.0.0.5"
    assert found[0]["source"] == run_id and "learned" in found[0]["tags"]
    waiting = [
        c for c in _json(daemon, "memory", "candidates")["candidates"] if c["run_id"] == run_id
    ]
    assert [(c["kind"], c["text"], c["confidence"]) for c in waiting] == [
        ("preference", "Prefer rsync for big copies", 0.4)
    ]
    assert waiting[0]["routine_id"] == "teacher"
    accepted = _json(daemon, "memory", "accept", waiting[0]["candidate_id"])
    assert accepted["source"] == run_id and accepted["text"] == "Prefer rsync for big copies"
    twice = palyra(daemon.root, "memory", "accept", waiting[0]["candidate_id"], check=False)
    assert twice.returncode == 1 and "already decided" in twice.stderr
    # a second run: its candidate is rejected, and nothing of it is stored
    second = _run(daemon, "teacher")
    wait_until(lambda: (t := _reflection_of(daemon, second)) and t.status == "succeeded")
    pending = [
        c for c in _json(daemon, "memory", "candidates")["candidates"] if c["run_id"] == second
    ]
    assert len(pending) == 1
    palyra(daemon.root, "memory", "reject", pending[0]["candidate_id"])
    assert all(c["run_id"] != second for c in _json(daemon, "memory", "candidates")["candidates"])
    rsync = [
        r for r in _json(daemon, "memory", "search", "rsync")["results"] if r["source"] == second
    ]
    assert rsync == []


def test_a_run_without_markers_costs_no_reflection(daemon: Daemon) -> None:
    run_id = _run(daemon, "quiet")
    wait_until(lambda: (r := daemon.journal.runs.get(run_id)) and r.status == "succeeded")
    teach = _run(daemon, "teacher")  # a later run's reflection: the queue has caught up
    wait_until(lambda: (t := _reflection_of(daemon, teach)) and t.status == "succeeded", timeout=60)
    assert _reflection_of(daemon, run_id) is None


@pytest.fixture(scope="module")
def builtin_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("memory-builtin") / "home")
    d.home.config.write_text(RPC_ANY_PORTS)
    d.write_definitions([routine("idle", {"kind": "manual"}, shell("true"))])
    try:
        d.start()
        yield d
    finally:
        d.close()


def test_the_running_daemon_answers_searches_from_its_warm_index(builtin_daemon: Daemon) -> None:
    from palyrad.domain.memory_embedding import BuiltinEmbedder
    from palyrad.ops.memory import search, search_via_daemon

    d = builtin_daemon
    for text in ("The boiler is serviced every October", "Deploying needs a green build"):
        _json(d, "memory", "add", text, "--tag", "house")
    served = search_via_daemon(d.home, "deployment", limit=5)
    assert served is not None  # node_rpc answered
    local = search(d.journal, BuiltinEmbedder(), "deployment", _now_ms(), limit=5)
    assert [r["item_id"] for r in served.results] == [r["item_id"] for r in local.results]
    assert served.results[0]["text"] == "Deploying needs a green build"
    # the CLI gets the same answer (through the daemon), and a new item at once
    _json(d, "memory", "add", "Deployment freeze in December", "--tag", "house")
    cli = _json(d, "memory", "search", "deployment", "--tag", "house")["results"]
    assert cli[0]["text"] == "Deployment freeze in December"
    bad = search_via_daemon(d.home, "x", limit=5, tag=None)
    assert bad is not None and bad.results == []
    # invalid input is refused before anything is sent
    refused = palyra(d.root, "memory", "search", "ok", "--limit", "0", check=False)
    assert refused.returncode == 2
    d.stop()
    assert search_via_daemon(d.home, "deployment") is None  # no daemon: the CLI searches itself
    assert _json(d, "memory", "search", "deployment")["results"]


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000
