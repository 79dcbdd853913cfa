"""Learning (SPEC §4.8, §6): a finished run's ``::palyra-learn`` lines become candidates,
confident ones memory items at once, the others wait for an operator.

``reflect`` is the ``post_run_reflection`` task's work. It is idempotent per run: the
reflection row, the candidates and the items they wrote commit in one transaction, so a
task retried after a crash (or after its lease was taken over) records nothing twice. The
decisions before reading the log — sampling (deterministic per run id, so a retry decides
the same), the routine's cooldown — are recorded as a reflection with nothing learnt.
Malformed lines never fail anything: they come back as a ``TaskReport`` the queue keeps in
the task's ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from palyrad.domain.learning import MAX_LINE_BYTES, LearnScan, sampled, scan_output
from palyrad.domain.memory import (
    candidate_to_json,
    check_id,
    check_limit,
    check_tag,
    item_to_json,
)
from palyrad.domain.memory_embedding import Embedder
from palyrad.domain.runs import new_ulid
from palyrad.journal import LearningCandidate
from palyrad.ops.memory import new_item, queue_backfill
from routines.errors import InvalidInput, PalyraError

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.config import DaemonConfig
    from palyrad.runtime.home import Home

LEARNED_TAG = "learned"
CANDIDATES_HINT = "list them: palyra memory candidates"


@dataclass(frozen=True, slots=True)
class Reflection:
    """What a reflection did: ``outcome`` in one line for the task's log, the candidates it
    recorded, and problems (malformed lines) for the task's report."""

    outcome: str
    recorded: int
    written: int
    problems: tuple[str, ...] = ()


def _already(journal: Journal, run_id: str) -> Reflection:
    """A retry of a reflection that committed: nothing new, the same report."""
    reported = journal.learning.reported(run_id)
    problems = tuple(reported.split("\n")) if reported else ()
    return Reflection("already reflected", 0, 0, problems)


def learned_tags(kind: str, routine_id: str) -> tuple[str, ...]:
    """A learned item's tags: ``learned``, its kind, and ``routine:<id>`` (so ``--tag``
    finds what a routine taught), each kept only if it is a valid tag."""
    tags = [LEARNED_TAG, kind]
    candidate = f"routine:{routine_id}"
    try:
        check_tag(candidate)
    except InvalidInput:
        pass
    else:
        tags.append(candidate)
    return tuple(tags)


def reflect(
    journal: Journal,
    home: Home,
    config: DaemonConfig,
    embedder: Embedder,
    run_id: str,
    now_ms: int,
) -> Reflection:
    """Read ``run_id``'s output for ``::palyra-learn`` lines (see the module docstring)."""
    run = journal.runs.get(run_id)
    if run is None:
        return Reflection("nothing to read: the run is gone (pruned)", 0, 0)
    if journal.learning.reflected(run_id):
        return _already(journal, run_id)
    routine_id = run.routine_id
    skip: str | None = None
    if not sampled(run_id, config.learning_sampling_percent):
        skip = f"not sampled ([learning] sampling_percent = {config.learning_sampling_percent})"
    elif config.learning_cooldown_ms > 0:
        last = journal.learning.last_learned_ms(routine_id)
        if last is not None and now_ms - last < config.learning_cooldown_ms:
            skip = f"in cooldown (routine {routine_id} taught something {now_ms - last} ms ago)"
    if skip is not None:
        journal.learning.begin_reflection(run_id, routine_id, now_ms, 0)
        return Reflection(skip, 0, 0)
    # The executor writes at most max_output_bytes of a run's output to its log.
    limit = config.max_output_bytes + MAX_LINE_BYTES
    scan = scan_output(home.run_log(run_id), config.learning_max_candidates, max_bytes=limit)
    return _record(journal, config, embedder, run_id, routine_id, scan, now_ms)


def _record(
    journal: Journal,
    config: DaemonConfig,
    embedder: Embedder,
    run_id: str,
    routine_id: str,
    scan: LearnScan,
    now_ms: int,
) -> Reflection:
    threshold = config.learning_auto_write_threshold
    problems = [p.message for p in scan.problems]
    if scan.malformed > len(scan.problems):
        problems.append(f"... {scan.malformed - len(scan.problems)} more malformed lines")
    if scan.over_limit:
        problems.append(
            f"{scan.over_limit} lines beyond [learning] max_candidates ="
            f" {config.learning_max_candidates} were ignored"
        )
    written = 0
    with journal.transaction():
        report = "\n".join(problems) if problems else None
        if not journal.learning.begin_reflection(
            run_id, routine_id, now_ms, len(scan.lines), report
        ):
            return _already(journal, run_id)
        for line in scan.lines:
            item_id = None
            status = "pending"
            if line.confidence >= threshold:
                item = new_item(
                    line.text,
                    learned_tags(line.kind, routine_id),
                    run_id,
                    now_ms,
                    config.memory_ttl_days,
                    embedder,
                )
                item_id = journal.memory.insert([item])[0].item_id
                if item.vector is None:  # a command embedder's: the backfill embeds it
                    queue_backfill(journal, None, now_ms)
                status = "written"
                written += 1
            journal.learning.add(
                LearningCandidate(
                    candidate_id=new_ulid(now_ms),
                    run_id=run_id,
                    line_no=line.line_no,
                    routine_id=routine_id,
                    kind=line.kind,
                    text=line.text,
                    confidence=line.confidence,
                    created_ms=now_ms,
                    status=status,
                    decided_ms=now_ms if item_id is not None else None,
                    item_id=item_id,
                )
            )
    outcome = (
        f"{len(scan.lines)} candidates ({written} written to memory,"
        f" {len(scan.lines) - written} waiting); {scan.malformed} malformed lines"
    )
    return Reflection(outcome, len(scan.lines), written, tuple(problems))


# --- operators ----------------------------------------------------------------------------


def candidates(journal: Journal, limit: int = 100) -> dict[str, Any]:
    """``palyra memory candidates``: those waiting for a decision, oldest first."""
    waiting = journal.learning.pending(check_limit(limit, 10_000))
    return {"candidates": [candidate_to_json(c) for c in waiting]}


def _pending(journal: Journal, candidate_id: str) -> LearningCandidate:
    candidate_id = check_id(candidate_id, "learning candidate")
    found = journal.learning.get(candidate_id)
    if found is None:
        raise PalyraError(f"no learning candidate {candidate_id}", CANDIDATES_HINT)
    if found.status != "pending":
        raise PalyraError(
            f"learning candidate {found.candidate_id} was already decided ({found.status})",
            CANDIDATES_HINT,
        )
    return found


def accept(
    journal: Journal,
    config: DaemonConfig,
    embedder: Embedder,
    candidate_id: str,
    now_ms: int,
    home: Home | None = None,
) -> dict[str, Any]:
    """Store the candidate as a memory item (source: its run id); the item's JSON."""
    c = _pending(journal, candidate_id)
    item = new_item(
        c.text,
        learned_tags(c.kind, c.routine_id),
        c.run_id,
        now_ms,
        config.memory_ttl_days,
        embedder,
    )
    with journal.transaction():
        if not journal.learning.decide(c.candidate_id, "accepted", now_ms, item.item_id):
            raise PalyraError(f"learning candidate {c.candidate_id} was decided meanwhile")
        stored = journal.memory.insert([item])[0]
        if item.vector is None:  # a command embedder's: the backfill embeds it
            queue_backfill(journal, home, now_ms)
    return item_to_json(stored)


def reject(journal: Journal, candidate_id: str, now_ms: int) -> dict[str, Any]:
    c = _pending(journal, candidate_id)
    if not journal.learning.decide(c.candidate_id, "rejected", now_ms, None):
        raise PalyraError(f"learning candidate {c.candidate_id} was decided meanwhile")
    found = journal.learning.get(c.candidate_id)
    assert found is not None
    return candidate_to_json(found)
