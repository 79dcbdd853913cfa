"""``palyra incidents list/show`` (SPEC §4.6): the self-healing process's incidents as their
JSON objects, newest first."""

from __future__ import annotations

from typing import Any

from palyrad.journal import Journal, incident_to_json
from routines.errors import PalyraError

MAX_LIST = 1_000


def list_incidents(
    journal: Journal, *, include_resolved: bool, limit: int = MAX_LIST
) -> list[dict[str, Any]]:
    """Open incidents (with ``include_resolved``, resolved ones too), newest first."""
    found = journal.incidents.all(limit) if include_resolved else journal.incidents.open_incidents()
    return [incident_to_json(i) for i in found]


def show_incident(journal: Journal, incident_id: str) -> dict[str, Any]:
    """One incident; an unknown (or pruned) id is exit 1 with a hint."""
    incident = journal.incidents.get(incident_id.strip().upper())  # ULIDs: any case
    if incident is None:
        raise PalyraError(f"no incident {incident_id!r}", "list them: palyra incidents list --all")
    return incident_to_json(incident)
