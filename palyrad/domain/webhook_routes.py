"""What the webhook listener needs to know of each webhook routine, as the scheduler publishes it.

The scheduler holds the applied definitions; node_rpc, which serves ``POST /hooks/<id>``,
does not parse definitions.json (100 000 routines take seconds). On every apply the scheduler
writes this small document (``STATE_WEBHOOKS``) in the same transaction as the routines'
state, before it journals the applied file's hash. So a CLI edit, which returns once that hash
is journaled, is served by the listener at once (read-your-writes, SPEC §4.5), and the
document always matches ``routine_state``: each entry carries its definition hash, and the
listener trusts an entry only while that hash is the routine's current one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from routines.model import Routine, WebhookTrigger


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    """One webhook routine: its trigger and its definition hash."""

    routine_id: str
    definition_hash: str
    trigger: WebhookTrigger


def publish(routes: Iterable[tuple[Routine, str]]) -> str:
    """The document for ``(routine, definition hash)`` pairs; only webhook routines appear."""
    doc: dict[str, dict[str, object]] = {}
    for routine, definition_hash in routes:
        trig = routine.trigger
        if not isinstance(trig, WebhookTrigger):
            continue
        doc[routine.id] = {
            "hash": definition_hash,
            "secret_env": trig.secret_env,
            "secret_file": trig.secret_file,
            "require_timestamp": trig.require_timestamp,
        }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def parse(raw: str | None) -> dict[str, WebhookRoute]:
    """The published document read back; entries that do not have the published shape (a
    journal from another version) are left out rather than trusted."""
    if not raw:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    out: dict[str, WebhookRoute] = {}
    if not isinstance(doc, dict):
        return out
    for rid, entry in doc.items():
        if not isinstance(entry, dict):
            continue
        digest, env, path = entry.get("hash"), entry.get("secret_env"), entry.get("secret_file")
        if not isinstance(digest, str) or (env is None) == (path is None):
            continue
        if not isinstance(env, str | None) or not isinstance(path, str | None):
            continue
        trigger = WebhookTrigger(
            secret_env=env,
            secret_file=path,
            require_timestamp=entry.get("require_timestamp") is True,
        )
        out[str(rid)] = WebhookRoute(str(rid), digest, trigger)
    return out
