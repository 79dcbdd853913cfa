"""palyra.toml: optional daemon configuration with embedded defaults.

A missing file means every default; an invalid one is reported with the file and key, and the
daemon refuses to start rather than guess (doctor shows the same message). ``tomllib`` (~3 ms,
its regexes compiled at import) is imported only when there is a file to parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from routines.errors import InvalidInput


class ConfigError(InvalidInput, ValueError):
    """palyra.toml cannot be used; the message names the file, key and fix."""


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    max_concurrent_runs: int = 8
    task_workers: int = 2  # background-queue worker threads, apart from the run slots
    scheduler_timezone: str = "UTC"
    agent_command: tuple[str, ...] | None = None
    stale_run_ms: int = 120_000
    heartbeat_interval_ms: int = 2_000
    max_output_bytes: int = 10 * 1024 * 1024
    max_runs_per_routine: int = 1_000
    max_age_days: int = 90
    journal_synchronous: str = "NORMAL"
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    health_port: int = 0
    stop_timeout_ms: int = 10_000
    # [rpc] (SPEC §5, §7): both node listeners bind every `listen` address
    rpc_listen: tuple[str, ...] = ("127.0.0.1",)
    rpc_advertise_host: str = ""
    pairing_port: int = 7141
    node_port: int = 7142
    device_cert_ttl_s: int = 30 * 24 * 3600
    delivery_retention_days: int = 7
    # A watch stream sends the node a heartbeat message after this long without any other
    # message, and journals its own progress every third of it; self-healing calls a stream
    # stale after 3 x this (docs/pairing.md "Stream health", an addition to SPEC §7).
    stream_heartbeat_ms: int = 15_000
    # [webhooks] (SPEC §4.5, §7): the HTTP(S) listener for POST /hooks/<routine_id>
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 7143  # 0 = any free port
    webhook_tls: bool = False  # HTTPS with the daemon's server certificate
    webhook_max_body_bytes: int = 1024 * 1024
    webhook_rate_per_minute: int = 60  # accepted requests per routine in the last minute
    # [self_healing] (SPEC §6, §7)
    self_healing_mode: str = "auto"  # or "observe_only"
    stale_task_ms: int = 120_000
    process_silence_ms: int = 10_000
    # [maintenance] (SPEC §6, §7): how often each maintenance task is enqueued
    memory_interval_ms: int = 5 * 60_000
    backfill_interval_ms: int = 10 * 60_000
    skill_reaudit_interval_ms: int = 6 * 3_600_000
    vacuum_interval_ms: int = 24 * 3_600_000
    # [memory] (SPEC §6, §7)
    memory_ttl_days: int = 90
    memory_max_entries: int = 100_000
    memory_max_bytes: int = 100 * 1024 * 1024
    memory_embedder: str | tuple[str, ...] = "builtin"  # or a command's argv
    # [learning] (SPEC §6, §7)
    learning_sampling_percent: int = 100
    learning_cooldown_ms: int = 0
    learning_max_candidates: int = 8
    learning_auto_write_threshold: float = 0.9


SELF_HEALING_MODES = ("auto", "observe_only")

_KEYS: dict[tuple[str, str], tuple[str, type]] = {
    ("executor", "max_concurrent_runs"): ("max_concurrent_runs", int),
    ("executor", "task_workers"): ("task_workers", int),
    ("executor", "max_output_bytes"): ("max_output_bytes", int),
    ("executor", "heartbeat_interval_ms"): ("heartbeat_interval_ms", int),
    ("scheduler", "timezone"): ("scheduler_timezone", str),
    ("agent", "command"): ("agent_command", list),
    ("self_healing", "mode"): ("self_healing_mode", str),
    ("self_healing", "stale_run_ms"): ("stale_run_ms", int),
    ("self_healing", "stale_task_ms"): ("stale_task_ms", int),
    ("self_healing", "process_silence_ms"): ("process_silence_ms", int),
    ("maintenance", "memory_interval_ms"): ("memory_interval_ms", int),
    ("maintenance", "backfill_interval_ms"): ("backfill_interval_ms", int),
    ("maintenance", "skill_reaudit_interval_ms"): ("skill_reaudit_interval_ms", int),
    ("maintenance", "vacuum_interval_ms"): ("vacuum_interval_ms", int),
    ("memory", "ttl_days"): ("memory_ttl_days", int),
    ("memory", "max_entries"): ("memory_max_entries", int),
    ("memory", "max_bytes"): ("memory_max_bytes", int),
    ("memory", "embedder"): ("memory_embedder", object),
    ("learning", "sampling_percent"): ("learning_sampling_percent", int),
    ("learning", "cooldown_ms"): ("learning_cooldown_ms", int),
    ("learning", "max_candidates"): ("learning_max_candidates", int),
    ("learning", "auto_write_threshold"): ("learning_auto_write_threshold", float),
    ("history", "max_runs_per_routine"): ("max_runs_per_routine", int),
    ("history", "max_age_days"): ("max_age_days", int),
    ("journal", "synchronous"): ("journal_synchronous", str),
    ("log", "max_bytes"): ("log_max_bytes", int),
    ("log", "backups"): ("log_backups", int),
    ("rpc", "health_port"): ("health_port", int),
    ("rpc", "listen"): ("rpc_listen", list),
    ("rpc", "advertise_host"): ("rpc_advertise_host", str),
    ("rpc", "pairing_port"): ("pairing_port", int),
    ("rpc", "node_port"): ("node_port", int),
    ("rpc", "stream_heartbeat_ms"): ("stream_heartbeat_ms", int),
    ("webhooks", "listen"): ("webhook_listen", str),
    ("webhooks", "port"): ("webhook_port", int),
    ("webhooks", "tls"): ("webhook_tls", bool),
    ("webhooks", "max_body_bytes"): ("webhook_max_body_bytes", int),
    ("webhooks", "rate_per_minute"): ("webhook_rate_per_minute", int),
    ("pki", "device_cert_ttl_s"): ("device_cert_ttl_s", int),
    ("delivery", "retention_days"): ("delivery_retention_days", int),
    ("daemon", "stop_timeout_ms"): ("stop_timeout_ms", int),
}


def load_config(path: Path) -> DaemonConfig:
    """Read palyra.toml (absent → defaults); unknown sections/keys are errors, like definitions."""
    import tomllib

    from routines.definitions_file import read_document

    # Never blocks on a FIFO, never crashes on a directory: judged on the open descriptor.
    read = read_document(path, max_bytes=1 << 20)
    if read.missing:
        return DaemonConfig()
    if read.data is None:
        why = read.issue.message if read.issue is not None else "cannot read the file"
        raise ConfigError(f"{path}: {why}")
    try:
        data = tomllib.loads(read.data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc} (fix the TOML syntax)") from exc
    values: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in table.items():
            spec = _KEYS.get((section, key))
            if spec is None:
                known = ", ".join(f"[{s}] {k}" for s, k in _KEYS)
                raise ConfigError(f"{path}: unknown key [{section}] {key} (known: {known})")
            attr, typ = spec
            if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{path}: [{section}] {key} must be an integer")
            if typ is bool and not isinstance(value, bool):
                raise ConfigError(f"{path}: [{section}] {key} must be true or false")
            if typ is str and not isinstance(value, str):
                raise ConfigError(f"{path}: [{section}] {key} must be a string")
            if typ is float:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{path}: [{section}] {key} must be a number")
                value = float(value)
            if typ is object:  # [memory] embedder: "builtin" or a command's argv
                if isinstance(value, list):
                    typ = list
                elif value != "builtin":
                    raise ConfigError(
                        f'{path}: [{section}] {key} must be "builtin" or a command as a list of'
                        ' strings (e.g. embedder = ["/usr/local/bin/embed", "--json"])'
                    )
            if typ is list:
                if not (
                    isinstance(value, list) and value and all(isinstance(v, str) for v in value)
                ):
                    raise ConfigError(
                        f"{path}: [{section}] {key} must be a non-empty list of strings"
                    )
                value = tuple(value)
            if typ in (int, float) and value < 0:
                raise ConfigError(f"{path}: [{section}] {key} must not be negative")
            values[attr] = value
    cfg = DaemonConfig(**values)
    if cfg.max_concurrent_runs < 1:
        raise ConfigError(f"{path}: [executor] max_concurrent_runs must be at least 1")
    if not 1 <= cfg.task_workers <= 16:
        raise ConfigError(f"{path}: [executor] task_workers must be 1-16")
    if cfg.journal_synchronous.upper() not in ("NORMAL", "FULL"):
        raise ConfigError(f"{path}: [journal] synchronous must be NORMAL or FULL")
    for key, port in (
        ("pairing_port", cfg.pairing_port),
        ("node_port", cfg.node_port),
        ("health_port", cfg.health_port),
    ):
        if port > 65535:
            raise ConfigError(f"{path}: [rpc] {key} must be 0-65535 (0 = any free port)")
    _check_webhooks(path, cfg)
    if cfg.device_cert_ttl_s < 30:
        raise ConfigError(f"{path}: [pki] device_cert_ttl_s must be at least 30 (seconds)")
    mode = cfg.self_healing_mode.replace("-", "_")
    if mode not in SELF_HEALING_MODES:
        raise ConfigError(
            f'{path}: [self_healing] mode must be "auto" or "observe_only" (got {mode!r})'
        )
    if mode != cfg.self_healing_mode:
        cfg = replace(cfg, self_healing_mode=mode)
    for key, floor in (
        ("stale_run_ms", 1_000),
        ("stale_task_ms", 1_000),
        ("process_silence_ms", 2_000),
    ):
        if getattr(cfg, key) < floor:
            raise ConfigError(f"{path}: [self_healing] {key} must be at least {floor}")
    if not 1_000 <= cfg.stream_heartbeat_ms <= 30_000:
        # palyra-node takes 60 s without any message for a dead link: at most 30 s keeps
        # two heartbeats inside that.
        raise ConfigError(f"{path}: [rpc] stream_heartbeat_ms must be 1000-30000")
    for key in (
        "memory_interval_ms",
        "backfill_interval_ms",
        "skill_reaudit_interval_ms",
        "vacuum_interval_ms",
    ):
        if getattr(cfg, key) < 1_000:
            raise ConfigError(f"{path}: [maintenance] {key} must be at least 1000")
    _check_memory(path, cfg)
    if cfg.delivery_retention_days < 1:
        raise ConfigError(f"{path}: [delivery] retention_days must be at least 1")
    for host in (*cfg.rpc_listen, *((cfg.rpc_advertise_host,) if cfg.rpc_advertise_host else ())):
        if not _HOST.fullmatch(host):
            raise ConfigError(
                f"{path}: [rpc] {host!r} is not an IP address or host name"
                ' (e.g. listen = ["127.0.0.1", "192.168.1.10"])'
            )
    return cfg


# The body is held in memory while its signature is checked: a bound on that memory.
MAX_WEBHOOK_BODY_BYTES = 64 * 1024 * 1024


def _check_webhooks(path: Path, cfg: DaemonConfig) -> None:
    """The ``[webhooks]`` keys' ranges (their types are checked with every key's)."""
    if cfg.webhook_port > 65535:
        raise ConfigError(f"{path}: [webhooks] port must be 0-65535 (0 = any free port)")
    if not 1 <= cfg.webhook_max_body_bytes <= MAX_WEBHOOK_BODY_BYTES:
        raise ConfigError(f"{path}: [webhooks] max_body_bytes must be 1-{MAX_WEBHOOK_BODY_BYTES}")
    if not 1 <= cfg.webhook_rate_per_minute <= 1_000_000:
        raise ConfigError(f"{path}: [webhooks] rate_per_minute must be 1-1000000")
    if not _HOST.fullmatch(cfg.webhook_listen):
        raise ConfigError(
            f"{path}: [webhooks] listen {cfg.webhook_listen!r} is not an IP address or host"
            ' name (e.g. listen = "127.0.0.1")'
        )


# Limits on [memory] and [learning]: beyond them a typo, not a choice.
MAX_MEMORY_ENTRIES = 10_000_000
MAX_LEARN_CANDIDATES = 100


def _check_memory(path: Path, cfg: DaemonConfig) -> None:
    """The ``[memory]`` and ``[learning]`` keys' ranges."""
    if not 1 <= cfg.memory_ttl_days <= 36_500:
        raise ConfigError(f"{path}: [memory] ttl_days must be 1-36500")
    if not 1 <= cfg.memory_max_entries <= MAX_MEMORY_ENTRIES:
        raise ConfigError(f"{path}: [memory] max_entries must be 1-{MAX_MEMORY_ENTRIES}")
    if cfg.memory_max_bytes < 1024:
        raise ConfigError(f"{path}: [memory] max_bytes must be at least 1024")
    if isinstance(cfg.memory_embedder, tuple):
        argv = cfg.memory_embedder
        if not argv[0].strip():
            raise ConfigError(
                f"{path}: [memory] embedder's program (its first element) is empty"
                ' (e.g. embedder = ["/usr/local/bin/embed"], or "builtin")'
            )
        if any("\0" in arg for arg in argv):
            raise ConfigError(f"{path}: [memory] embedder contains a NUL character")
    if not 0 <= cfg.learning_sampling_percent <= 100:
        raise ConfigError(f"{path}: [learning] sampling_percent must be 0-100")
    if not 0 <= cfg.learning_max_candidates <= MAX_LEARN_CANDIDATES:
        raise ConfigError(f"{path}: [learning] max_candidates must be 0-{MAX_LEARN_CANDIDATES}")
    if not 0.0 <= cfg.learning_auto_write_threshold <= 1.0 or (
        cfg.learning_auto_write_threshold != cfg.learning_auto_write_threshold
    ):
        raise ConfigError(f"{path}: [learning] auto_write_threshold must be 0.0-1.0")


# An IP literal (v4 or v6) or a DNS name: what a listener can bind and a certificate name.
_HOST = re.compile(
    r"[0-9A-Fa-f:.]+|(?=.{1,253}$)[A-Za-z0-9][A-Za-z0-9-]{0,62}(\.[A-Za-z0-9-]{1,63})*"
)
