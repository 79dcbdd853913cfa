"""The hash of definitions.json as the scheduler journals it on apply, without re-reading a
large file on every trigger from the CLI.

``palyra routines run-now`` asks whether the file on disk is exactly what the running daemon
applied (``palyrad.ops.triggers.applied_gate``); if so, it trusts the journal instead of parsing
the file. Reading and hashing a 100 000-routine file (~55 MB) takes ~100 ms, the whole run-now
budget, so the last hash computed is remembered in the journal (``STATE_DEFINITIONS_HASH_MEMO``)
with the file's signature: device, inode, size, mtime and ctime. While the signature is
unchanged, the bytes are too: every write sets ctime, and a rename-over changes the inode.

A file changed less than ``RACY_NS`` ago is never remembered ("racily clean", as git calls
it): a second write within the same filesystem timestamp tick, of the same size, would leave
its signature as it was. Two seconds covers coarse (FAT) timestamps and small clock skew.
"""

from __future__ import annotations

import json  # not orjson: this runs in the CLI's run-now path (see palyrad.ops.triggers)
import os
import time
from typing import TYPE_CHECKING

from palyrad.journal import STATE_DEFINITIONS_HASH_MEMO

if TYPE_CHECKING:
    from pathlib import Path

    from palyrad.journal import Journal
    from palyrad.runtime.home import Home

RACY_NS = 2_000_000_000

Signature = tuple[int, int, int, int, int]


def file_hash(home: Home) -> str:
    """``sha256:<hex>`` of definitions.json's bytes, as the scheduler computes it ("" when the
    file does not exist)."""
    import hashlib  # ~4 ms (OpenSSL); only when the file really has to be hashed

    try:
        data = home.definitions.read_bytes()
    except FileNotFoundError:
        return ""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_signature(path: Path) -> Signature | None:
    """What changes whenever the file's bytes may have: None when there is no file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def current_file_hash(home: Home, journal: Journal) -> str:
    """``file_hash(home)``, answered from the journal's memo when the file has not changed
    since it was last hashed; hashes (and, unless the file is too fresh, remembers) if not."""
    sig = file_signature(home.definitions)
    if sig is None:
        return ""
    memo = _read_memo(journal)
    if memo is not None and memo.get("signature") == list(sig):
        remembered = memo.get("file_hash")
        if isinstance(remembered, str):
            return remembered
    digest = file_hash(home)
    now_ns = time.time_ns()
    settled = now_ns - max(sig[3], sig[4]) > RACY_NS
    if settled and file_signature(home.definitions) == sig:  # unchanged while it was read
        memo_json = json.dumps({"signature": list(sig), "file_hash": digest})
        journal.state.set(STATE_DEFINITIONS_HASH_MEMO, memo_json, now_ns // 1_000_000)
    return digest


def _read_memo(journal: Journal) -> dict[str, object] | None:
    """The memo, or None when there is none or it cannot be read (then the file is hashed)."""
    raw = journal.state.get(STATE_DEFINITIONS_HASH_MEMO)
    if not raw:
        return None
    try:
        memo = json.loads(raw)
    except ValueError:
        return None
    return memo if isinstance(memo, dict) else None
