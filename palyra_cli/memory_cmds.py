"""``palyra memory …``: the memory store and learning candidates (SPEC §4.8).

Works with the daemon stopped (memory is in the journal). Thin over ``palyrad.ops.memory``
and ``palyrad.ops.learning``, which check everything typed here; palyra.toml's ``[memory]``
and ``[learning]`` are read for the TTL default and the embedder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from palyra_cli.common import emit_json, home_option, json_option, with_journal
from palyra_cli.tables import clip, short_time, table

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.config import DaemonConfig
    from palyrad.runtime.home import Home


def _config(home: Home) -> DaemonConfig:
    from palyrad.runtime.config import load_config

    return load_config(home.config)


def _now() -> int:
    from routines.timefmt import now_ms

    return now_ms()


@click.group("memory")
@home_option
def memory_group() -> None:
    """Memory: items to remember and search, and what runs taught (learning)."""


def _item_line(item: dict[str, Any]) -> str:
    tags = f" [{', '.join(item['tags'])}]" if item["tags"] else ""
    return f"{item['item_id']}  {clip(item['text'], 70)}{tags}"


@memory_group.command("add")
@click.argument("text")
@click.option("--tag", "tags", multiple=True, metavar="T", help="A tag (repeatable).")
@click.option("--ttl-days", type=int, default=None, help="Keep it N days ([memory] ttl_days).")
@json_option
@home_option
@with_journal
def add_cmd(
    text: str,
    tags: tuple[str, ...],
    ttl_days: int | None,
    as_json: bool,
    home: Home,
    journal: Journal,
) -> None:
    """Store TEXT in memory at once (daemon running or not)."""
    from palyrad.ops.memory import add

    item = add(journal, home, _config(home), text, tags, _now(), ttl_days)
    if as_json:
        emit_json(item)
    else:
        click.echo(f"stored {item['item_id']} (expires {short_time(item['expires_at'])})")


@memory_group.command("search")
@click.argument("query")
@click.option("--limit", type=int, default=10, show_default=True, help="At most N (1-100).")
@click.option("--tag", default=None, metavar="T", help="Only items with this tag.")
@json_option
@home_option
@with_journal
def search_cmd(
    query: str, limit: int, tag: str | None, as_json: bool, home: Home, journal: Journal
) -> None:
    """Items sharing a word with QUERY or close to it in meaning, best first."""
    from palyrad.ops.memory import (
        QUERY_EMBED_TIMEOUT_S,
        embedder_of,
        search,
        search_via_daemon,
    )

    config = _config(home)
    found = None
    if config.memory_embedder == "builtin":  # the running daemon's index is warm
        found = search_via_daemon(home, query, limit=limit, tag=tag)
    if found is None:
        embedder = embedder_of(config, QUERY_EMBED_TIMEOUT_S)
        found = search(journal, embedder, query, _now(), limit=limit, tag=tag)
    if as_json:
        emit_json(found.to_json())
        return
    for warning in found.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not found.results:
        click.echo("nothing found")
        return
    table(
        ["SCORE", "ITEM ID", "TEXT", "TAGS"],
        [
            [f"{r['score']:.3f}", r["item_id"], clip(r["text"], 70), ",".join(r["tags"])]
            for r in found.results
        ],
    )


@memory_group.command("list")
@click.option("--limit", type=int, default=50, show_default=True, help="At most N (1-10000).")
@json_option
@home_option
@with_journal
def list_cmd(limit: int, as_json: bool, home: Home, journal: Journal) -> None:
    """Items, newest first."""
    from palyrad.ops.memory import list_items

    out = list_items(journal, _now(), limit)
    if as_json:
        emit_json(out)
        return
    if not out["items"]:
        click.echo("no memory items")
        return
    table(
        ["ITEM ID", "CREATED", "SOURCE", "TEXT", "TAGS"],
        [
            [
                i["item_id"],
                short_time(i["created_at"]),
                clip(i["source"], 26),
                clip(i["text"], 60),
                ",".join(i["tags"]),
            ]
            for i in out["items"]
        ],
    )


@memory_group.command("delete")
@click.argument("item_id")
@home_option
@with_journal
def delete_cmd(item_id: str, home: Home, journal: Journal) -> None:
    """Delete one item."""
    from palyrad.ops.memory import delete

    delete(journal, item_id, _now())
    click.echo(f"deleted {item_id}")


@memory_group.command("stats")
@json_option
@home_option
@with_journal
def stats_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """How much is stored, how much is embedded, and by which embedder."""
    from palyrad.ops.memory import stats

    out = stats(journal, _config(home), _now())
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"{out['entries']} items ({out['bytes']} bytes), {out['embedded']} embedded,"
        f" {out['not_embedded']} not embedded yet; embedder {out['embedder']};"
        f" oldest {short_time(out['oldest_at']) if out['oldest_at'] else '-'}"
    )


@memory_group.command("candidates")
@json_option
@home_option
@with_journal
def candidates_cmd(as_json: bool, home: Home, journal: Journal) -> None:
    """Learning candidates waiting for accept or reject, oldest first."""
    from palyrad.ops.learning import candidates

    out = candidates(journal)
    if as_json:
        emit_json(out)
        return
    if not out["candidates"]:
        click.echo("no learning candidates waiting")
        return
    table(
        ["CANDIDATE ID", "KIND", "CONF", "ROUTINE", "TEXT"],
        [
            [
                c["candidate_id"],
                c["kind"],
                f"{c['confidence']:.2f}",
                c["routine_id"],
                clip(c["text"], 60),
            ]
            for c in out["candidates"]
        ],
    )


@memory_group.command("accept")
@click.argument("candidate_id")
@json_option
@home_option
@with_journal
def accept_cmd(candidate_id: str, as_json: bool, home: Home, journal: Journal) -> None:
    """Store a candidate as a memory item."""
    from palyrad.ops.learning import accept
    from palyrad.ops.memory import embedder_of

    config = _config(home)
    item = accept(journal, config, embedder_of(config), candidate_id, _now(), home)
    if as_json:
        emit_json(item)
    else:
        click.echo(f"accepted: stored {item['item_id']}")


@memory_group.command("reject")
@click.argument("candidate_id")
@json_option
@home_option
@with_journal
def reject_cmd(candidate_id: str, as_json: bool, home: Home, journal: Journal) -> None:
    """Drop a candidate (it is kept as rejected, never stored)."""
    from palyrad.ops.learning import reject

    out = reject(journal, candidate_id, _now())
    if as_json:
        emit_json(out)
    else:
        click.echo(f"rejected {out['candidate_id']}")
