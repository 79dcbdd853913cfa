"""Typed routine definitions (SPEC §2): frozen value objects with every default filled in.

Parsing happens once at the edge (``routines.validate``); everything inside the program sees
these objects only. ``to_json`` gives the canonical spelling writers emit, and
``content_hash`` keys approvals, so it is computed from that canonical form.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

SCHEMA_VERSION = 1
MAX_ROUTINES = 100_000
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PROMPT_BYTES = 16 * 1024
MIN_EVERY_INTERVAL_MS = 1_000
MIN_EVERY_INTERVAL_MS_RPC = 30_000
MAX_JITTER_MS = 60_000
MAX_CATCH_UP_RUNS = 100
ID_PATTERN = r"[a-z0-9][a-z0-9._-]{0,127}"


class Concurrency(StrEnum):
    FORBID = "forbid"
    REPLACE = "replace"
    QUEUE_ONE = "queue_one"
    ALLOW = "allow"


class MisfirePolicy(StrEnum):
    SKIP = "skip"
    CATCH_UP = "catch_up"


class Approval(StrEnum):
    NONE = "none"
    BEFORE_ENABLE = "before_enable"
    BEFORE_FIRST_RUN = "before_first_run"


class FileEvent(StrEnum):
    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"
    MOVED = "moved"


class SilentPolicy(StrEnum):
    NOISY = "noisy"
    FAILURE_ONLY = "failure_only"
    AUDIT_ONLY = "audit_only"


# Accepted spellings beyond the canonical value (SPEC: kebab-case and `queue(1)`).
ENUM_ALIASES: dict[str, str] = {
    "queue(1)": "queue_one",
    "queue-one": "queue_one",
    "catch-up": "catch_up",
    "before-enable": "before_enable",
    "before-first-run": "before_first_run",
    "failure-only": "failure_only",
    "audit-only": "audit_only",
}


_SLUG_RE = re.compile(r"[^a-z0-9._-]+")


_ID_FULLMATCH = re.compile(ID_PATTERN).fullmatch
ID_RULE = "ids are 1-128 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit"


def check_routine_id(value: str) -> str:
    """``value`` if it is a valid routine id (SPEC §2), else ``InvalidInput`` (exit 2) with
    the rule and a valid spelling: for every place an id is typed outside a definitions file
    (``schedule-preview --id``)."""
    if _ID_FULLMATCH(value) is None:
        from routines.errors import InvalidInput

        shown = orjson.dumps(value[:60]).decode() + ("…" if len(value) > 60 else "")
        raise InvalidInput(f"invalid id {shown}: {ID_RULE}", f'try "{slugify(value)}"')
    return value


def slugify(name: str) -> str:
    """``Nightly backup`` → ``nightly-backup``: a valid routine id, never empty."""
    slug = _SLUG_RE.sub("-", name.strip().lower()).strip("-._")
    return slug[:120] or "routine"


def canonical_enum(value: str) -> str:
    """Map an accepted alias (kebab-case, ``queue(1)``) to the canonical snake_case value."""
    return ENUM_ALIASES.get(value, value.replace("-", "_"))


# --- schedules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CronSchedule:
    expr: str
    timezone: str = "UTC"
    type: str = field(default="cron", init=False)


@dataclass(frozen=True, slots=True)
class EverySchedule:
    interval_ms: int
    anchor: str | None = None  # RFC 3339 as written; None = first seen by the daemon
    anchor_unix_ms: int | None = None
    type: str = field(default="every", init=False)


@dataclass(frozen=True, slots=True)
class AtSchedule:
    at: str  # RFC 3339 as written
    at_unix_ms: int
    type: str = field(default="at", init=False)


Schedule = CronSchedule | EverySchedule | AtSchedule


# --- triggers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleTrigger:
    schedule: Schedule
    kind: str = field(default="schedule", init=False)


@dataclass(frozen=True, slots=True)
class ManualTrigger:
    kind: str = field(default="manual", init=False)


@dataclass(frozen=True, slots=True)
class FileWatchTrigger:
    paths: tuple[str, ...]
    patterns: tuple[str, ...] = ("*",)
    ignore: tuple[str, ...] = ()
    events: tuple[FileEvent, ...] = (
        FileEvent.CREATED,
        FileEvent.MODIFIED,
        FileEvent.DELETED,
        FileEvent.MOVED,
    )
    recursive: bool = False
    debounce_ms: int = 500
    kind: str = field(default="file_watch", init=False)


@dataclass(frozen=True, slots=True)
class WebhookTrigger:
    """An HTTP ``POST /hooks/<id>`` signed with the secret held by exactly one of
    ``secret_env`` (a variable of the daemon) or ``secret_file`` (a path, ``~`` expanded at
    use); ``require_timestamp`` refuses requests without ``X-Palyra-Timestamp``."""

    secret_env: str | None = None
    secret_file: str | None = None
    require_timestamp: bool = False
    kind: str = field(default="webhook", init=False)


@dataclass(frozen=True, slots=True)
class SystemEventTrigger:
    event: str
    kind: str = field(default="system_event", init=False)


@dataclass(frozen=True, slots=True)
class HookTrigger:
    hook_id: str
    event: str | None = None
    kind: str = field(default="hook", init=False)


Trigger = (
    ScheduleTrigger
    | ManualTrigger
    | FileWatchTrigger
    | WebhookTrigger
    | SystemEventTrigger
    | HookTrigger
)

# --- actions -----------------------------------------------------------------------------

DEFAULT_TIMEOUT_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class CommandAction:
    argv: tuple[str, ...] | None = None
    shell: str | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs; hashable
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    kind: str = field(default="command", init=False)


@dataclass(frozen=True, slots=True)
class PromptAction:
    prompt: str
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    kind: str = field(default="prompt", init=False)


@dataclass(frozen=True, slots=True)
class SkillAction:
    skill_id: str
    args: tuple[str, ...] = ()
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    kind: str = field(default="skill", init=False)


Action = CommandAction | PromptAction | SkillAction

# --- policies ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Misfire:
    policy: MisfirePolicy = MisfirePolicy.SKIP
    grace_ms: int = 60_000
    max_catch_up_runs: int = 1


@dataclass(frozen=True, slots=True)
class Retry:
    max_attempts: int = 1
    backoff_ms: int = 1_000
    max_backoff_ms: int = 3_600_000


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: str  # "HH:MM"
    end: str  # "HH:MM"
    timezone: str | None = None  # None = the schedule's zone, else UTC

    @property
    def start_minute(self) -> int:
        h, m = self.start.split(":")
        return int(h) * 60 + int(m)

    @property
    def end_minute(self) -> int:
        h, m = self.end.split(":")
        return int(h) * 60 + int(m)


@dataclass(frozen=True, slots=True)
class Delivery:
    mode: str = "logs_only"  # logs_only | file | channel
    path: str | None = None
    channel: str | None = None
    silent_policy: SilentPolicy | None = None
    failure_channel: str | None = None


@dataclass(frozen=True, slots=True)
class Routine:
    id: str
    trigger: Trigger
    action: Action
    name: str | None = None
    enabled: bool = True
    concurrency: Concurrency = Concurrency.FORBID
    misfire: Misfire = Misfire()
    jitter_ms: int = 0
    retry: Retry = Retry()
    quiet_hours: QuietHours | None = None
    approval: Approval = Approval.NONE
    cooldown_ms: int = 0
    delivery: Delivery = Delivery()
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object (every default spelled out, canonical enum names)."""
        return routine_to_json(self)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON without ``enabled``: any edit of what the routine
        does or when re-arms approvals, but enabling it (which approval itself does) does not.
        """
        body = self.to_json()
        del body["enabled"]
        blob = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def schedule_key(self) -> str | None:
        """What, when changed, moves the next fire: the schedule and its jitter (None for
        routines without a schedule). The journal stores it to detect schedule edits."""
        s = self.schedule
        if s is None:
            return None
        return orjson.dumps({"s": schedule_to_json(s), "j": self.jitter_ms}).decode()

    @property
    def display_name(self) -> str:
        return self.name if self.name is not None else self.id

    @property
    def schedule(self) -> Schedule | None:
        return self.trigger.schedule if isinstance(self.trigger, ScheduleTrigger) else None

    @property
    def zone_name(self) -> str:
        """The routine's own time zone: its cron zone, else UTC."""
        s = self.schedule
        return s.timezone if isinstance(s, CronSchedule) else "UTC"


@dataclass(frozen=True, slots=True)
class Definitions:
    """A whole, valid definitions.json document."""

    routines: tuple[Routine, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def by_id(self) -> dict[str, Routine]:
        return {r.id: r for r in self.routines}

    def webhook_secret_envs(self) -> tuple[str, ...]:
        """The variables holding webhook secrets (sorted): no run may see them (SPEC §4.5)."""
        return tuple(
            sorted(
                {
                    r.trigger.secret_env
                    for r in self.routines
                    if isinstance(r.trigger, WebhookTrigger) and r.trigger.secret_env is not None
                }
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "routines": [r.to_json() for r in self.routines],
        }


# --- canonical serialisation -------------------------------------------------------------


def schedule_to_json(s: Schedule) -> dict[str, Any]:
    if isinstance(s, CronSchedule):
        return {"type": "cron", "expr": s.expr, "timezone": s.timezone}
    if isinstance(s, EverySchedule):
        out: dict[str, Any] = {"type": "every", "interval_ms": s.interval_ms}
        if s.anchor is not None:
            out["anchor"] = s.anchor
        return out
    return {"type": "at", "at": s.at}


def trigger_to_json(t: Trigger) -> dict[str, Any]:
    if isinstance(t, ScheduleTrigger):
        return {"kind": "schedule", "schedule": schedule_to_json(t.schedule)}
    if isinstance(t, ManualTrigger):
        return {"kind": "manual"}
    if isinstance(t, FileWatchTrigger):
        return {
            "kind": "file_watch",
            "paths": list(t.paths),
            "patterns": list(t.patterns),
            "ignore": list(t.ignore),
            "events": [e.value for e in t.events],
            "recursive": t.recursive,
            "debounce_ms": t.debounce_ms,
        }
    if isinstance(t, WebhookTrigger):
        hook: dict[str, Any] = {"kind": "webhook"}
        if t.secret_env is not None:
            hook["secret_env"] = t.secret_env
        if t.secret_file is not None:
            hook["secret_file"] = t.secret_file
        # Written only when set: an unchanged webhook routine keeps its content hash (and
        # so its approval) across the upgrade that added the key.
        if t.require_timestamp:
            hook["require_timestamp"] = True
        return hook
    if isinstance(t, SystemEventTrigger):
        return {"kind": "system_event", "event": t.event}
    out: dict[str, Any] = {"kind": "hook", "hook_id": t.hook_id}
    if t.event is not None:
        out["event"] = t.event
    return out


def action_to_json(a: Action) -> dict[str, Any]:
    if isinstance(a, CommandAction):
        out: dict[str, Any] = {"kind": "command"}
        if a.argv is not None:
            out["argv"] = list(a.argv)
        if a.shell is not None:
            out["shell"] = a.shell
        if a.cwd is not None:
            out["cwd"] = a.cwd
        out["env"] = dict(a.env)
        out["timeout_ms"] = a.timeout_ms
        return out
    if isinstance(a, PromptAction):
        return {"kind": "prompt", "prompt": a.prompt, "timeout_ms": a.timeout_ms}
    return {
        "kind": "skill",
        "skill_id": a.skill_id,
        "args": list(a.args),
        "timeout_ms": a.timeout_ms,
    }


def delivery_to_json(d: Delivery) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": d.mode}
    if d.path is not None:
        out["path"] = d.path
    if d.channel is not None:
        out["channel"] = d.channel
    if d.silent_policy is not None:
        out["silent_policy"] = d.silent_policy.value
    if d.failure_channel is not None:
        out["failure_channel"] = d.failure_channel
    return out


def routine_to_json(r: Routine) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.id}
    if r.name is not None:
        out["name"] = r.name
    out["enabled"] = r.enabled
    out["trigger"] = trigger_to_json(r.trigger)
    out["action"] = action_to_json(r.action)
    out["concurrency"] = r.concurrency.value
    out["misfire"] = {
        "policy": r.misfire.policy.value,
        "grace_ms": r.misfire.grace_ms,
        "max_catch_up_runs": r.misfire.max_catch_up_runs,
    }
    out["jitter_ms"] = r.jitter_ms
    out["retry"] = {
        "max_attempts": r.retry.max_attempts,
        "backoff_ms": r.retry.backoff_ms,
        "max_backoff_ms": r.retry.max_backoff_ms,
    }
    if r.quiet_hours is not None:
        qh: dict[str, Any] = {"start": r.quiet_hours.start, "end": r.quiet_hours.end}
        if r.quiet_hours.timezone is not None:
            qh["timezone"] = r.quiet_hours.timezone
        out["quiet_hours"] = qh
    out["approval"] = r.approval.value
    out["cooldown_ms"] = r.cooldown_ms
    out["delivery"] = delivery_to_json(r.delivery)
    out["tags"] = list(r.tags)
    return out
