"""What a decided run executes: the routine's action, retry, concurrency and delivery, frozen
at decision time.

The snapshot is stored with the run (``runs.spec``, one JSON form), so an edit of the
definition while a run waits — a retry backoff, a queue_one slot — never changes what it
runs. It is parsed back into the routine model's own typed objects, so the defaults (timeout,
retry, delivery) are the model's and exist once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from routines.model import (
    DEFAULT_TIMEOUT_MS,
    Action,
    CommandAction,
    Concurrency,
    Delivery,
    PromptAction,
    Retry,
    Routine,
    SilentPolicy,
    SkillAction,
    action_to_json,
    delivery_to_json,
)


@dataclass(frozen=True, slots=True)
class RunSpec:
    """The executable part of a routine, as decided for one run."""

    action: Action | None  # None: a snapshot without one (the executor fails such a run)
    retry: Retry = Retry()  # noqa: RUF009 - frozen value objects, shared safely
    concurrency: Concurrency = Concurrency.FORBID
    delivery: Delivery = Delivery()  # noqa: RUF009
    # Variables of the daemon's environment the run must not see: every webhook trigger's
    # ``secret_env`` in the definitions the run was decided with (SPEC §4.5).
    scrub_env: tuple[str, ...] = ()

    @classmethod
    def of(cls, routine: Routine, scrub_env: tuple[str, ...] = ()) -> RunSpec:
        """The spec a run of ``routine`` executes if it is decided now; ``scrub_env`` is
        ``Definitions.webhook_secret_envs()`` of the definitions it belongs to."""
        return cls(routine.action, routine.retry, routine.concurrency, routine.delivery, scrub_env)

    def to_json(self) -> str:
        """The one stored form (the ``spec`` column)."""
        retry = self.retry
        out: dict[str, Any] = {
            "action": None if self.action is None else action_to_json(self.action),
            "retry": {
                "max_attempts": retry.max_attempts,
                "backoff_ms": retry.backoff_ms,
                "max_backoff_ms": retry.max_backoff_ms,
            },
            "concurrency": self.concurrency.value,
            "delivery": delivery_to_json(self.delivery),
        }
        if self.scrub_env:  # absent when empty: the form of specs stored before it existed
            out["scrub_env"] = list(self.scrub_env)
        return orjson.dumps(out).decode()

    @classmethod
    def from_json(cls, text: str | None) -> RunSpec | None:
        """Parse a stored spec; None for records that never run (no spec) or a spec this
        version cannot read (the executor fails such a run instead of guessing)."""
        if not text:
            return None
        return _parse(text)


# The executor reads a run's spec when it weighs it as a candidate (often more than once
# while a busy routine's runs wait), when it prepares it, and when it finalizes it; a parse
# builds half a dozen frozen objects (~10 µs, ten times a bare ``orjson.loads``), and a
# routine's runs share one text. The values are immutable, so sharing them is safe; the
# bound keeps the worst case (16 KiB prompts) to a few MiB.
@lru_cache(maxsize=256)
def _parse(text: str) -> RunSpec | None:
    try:
        raw = orjson.loads(text)
        if not isinstance(raw, dict):
            return None
        return RunSpec(
            action=None if raw.get("action") is None else _action(raw["action"]),
            retry=_retry(raw.get("retry") or {}),
            concurrency=Concurrency(raw.get("concurrency", Concurrency.FORBID.value)),
            delivery=_delivery(raw.get("delivery") or {}),
            scrub_env=tuple(str(name) for name in raw.get("scrub_env") or ()),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _action(raw: dict[str, Any]) -> Action:
    kind = raw["kind"]
    timeout = int(raw.get("timeout_ms", DEFAULT_TIMEOUT_MS))
    if kind == "command":
        argv = raw.get("argv")
        return CommandAction(
            argv=None if argv is None else tuple(str(a) for a in argv),
            shell=raw.get("shell"),
            cwd=raw.get("cwd"),
            env=tuple(sorted((str(k), str(v)) for k, v in (raw.get("env") or {}).items())),
            timeout_ms=timeout,
        )
    if kind == "prompt":
        return PromptAction(prompt=str(raw["prompt"]), timeout_ms=timeout)
    if kind == "skill":
        return SkillAction(
            skill_id=str(raw["skill_id"]),
            args=tuple(str(a) for a in raw.get("args") or ()),
            timeout_ms=timeout,
        )
    raise ValueError(f"unknown action kind {kind!r}")


def _retry(raw: dict[str, Any]) -> Retry:
    default = Retry()
    return Retry(
        max_attempts=int(raw.get("max_attempts", default.max_attempts)),
        backoff_ms=int(raw.get("backoff_ms", default.backoff_ms)),
        max_backoff_ms=int(raw.get("max_backoff_ms", default.max_backoff_ms)),
    )


def _delivery(raw: dict[str, Any]) -> Delivery:
    silent = raw.get("silent_policy")
    return Delivery(
        mode=str(raw.get("mode", Delivery().mode)),
        path=raw.get("path"),
        channel=raw.get("channel"),
        silent_policy=None if silent is None else SilentPolicy(silent),
        failure_channel=raw.get("failure_channel"),
    )
