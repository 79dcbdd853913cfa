"""The daemon log: JSON lines in ``logs/palyrad.log``, shared by every daemon process.

Each process appends with its own ``WatchedFileHandler`` (short lines with O_APPEND do not
interleave), and only the supervisor rotates the file by size; the other processes notice the
rename at their next line and reopen. Secrets never reach the log: commands and environments
are logged by routine id, never by value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

import orjson

from routines.timefmt import format_rfc3339

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, process name, message and any ``extra`` fields."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": format_rfc3339(int(record.created * 1000), always_ms=True),
            "level": record.levelname.lower(),
            "process": self.process_name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(out, default=str).decode()
        except TypeError:  # e.g. a str orjson refuses (an unpaired surrogate): escape it
            return json.dumps(out, default=str)


def setup_logging(log_file: Path, process_name: str, *, to_stderr: bool = False) -> None:
    """Route the root logger to the shared JSON-lines file (and stderr for a foreground run)."""
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
    handler.setFormatter(JsonLineFormatter(process_name))
    root.addHandler(handler)
    if to_stderr:
        err = logging.StreamHandler()
        err.setFormatter(JsonLineFormatter(process_name))
        root.addHandler(err)
    root.setLevel(logging.INFO)
    with contextlib.suppress(OSError):
        os.chmod(log_file, 0o600)


def rotate_if_needed(log_file: Path, max_bytes: int, backups: int) -> bool:
    """Rename palyrad.log → .1 → .2 … when it exceeds ``max_bytes`` (supervisor only)."""
    try:
        if log_file.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(backups - 1, 0, -1):
        src = log_file.with_name(f"{log_file.name}.{i}")
        if src.exists():
            src.rename(log_file.with_name(f"{log_file.name}.{i + 1}"))
    if backups > 0:
        log_file.rename(log_file.with_name(f"{log_file.name}.1"))
    else:
        log_file.unlink()
    return True
