"""The definitions store: reading, the one atomic file writer, and locked edits.

Writers never leave a partial file: the new content goes to a temporary file in the same
directory, is fsynced, renamed over the old one, and the directory is fsynced. The previous
version is kept as ``definitions.json.bak``. Edits by the CLI (and later the daemon) take an
exclusive ``flock`` on ``.definitions.json.lock`` so concurrent writers serialize, and an
invalid file (a broken hand edit) is never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from routines.errors import PalyraError
from routines.model import MAX_FILE_BYTES, MAX_ROUTINES, Definitions, Routine
from routines.validate import (
    Issue,
    ValidationResult,
    decode_document,
    file_issue,
    format_issue,
    format_path,
    parse_routine,
    validate_text,
)

__all__ = [
    "DefinitionsError",
    "Editor",
    "atomic_write",
    "definitions_path",
    "dumps",
    "load",
    "locked_edit",
]


class DefinitionsError(PalyraError):
    """Definitions that cannot be used or written; ``issues`` says why, ``lines`` formatted."""

    def __init__(self, filename: str, issues: list[Issue], summary: str = "") -> None:
        self.filename = filename
        self.issues = issues
        self.summary = summary
        self.lines = [format_issue(filename, i) for i in issues]
        head = summary or f"{filename} is invalid"
        super().__init__("\n".join([head, *self.lines]))


def definitions_path(home: Path) -> Path:
    """``HOME/routines/definitions.json``."""
    return home / "routines" / "definitions.json"


@dataclass(frozen=True, slots=True)
class DocumentRead:
    """The bytes of a hand-edited document, or why there are none: ``missing`` (no file) or
    ``issue`` (something that is not a readable regular file, or too large)."""

    data: bytes | None = None
    missing: bool = False
    issue: Issue | None = None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_document(path: Path, max_bytes: int = MAX_FILE_BYTES) -> DocumentRead:
    """Read a document the operator edits (definitions.json, later installed-index.json)
    without ever blocking or crashing on what is there instead of a file.

    The file is opened non-blocking (a FIFO would otherwise hang the reader until someone
    writes to it) and judged on the open descriptor, so a swap between a check and the read
    cannot slip a FIFO or a device past it; anything but a regular file is an invalid
    document, never an exception.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return DocumentRead(missing=True)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a FIFO opened for writing elsewhere)
            return DocumentRead(issue=file_issue("is a socket, not a file"))
        return DocumentRead(issue=file_issue(f"cannot read the file: {exc.strerror}"))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            return DocumentRead(
                issue=file_issue(f"is {kind}, not a file; replace it with a JSON file")
            )
        if st.st_size > max_bytes:
            return DocumentRead(
                issue=file_issue(
                    f"file is {st.st_size} bytes; the limit is {max_bytes} bytes"
                    f" ({max_bytes // (1 << 20)} MiB)"
                )
            )
        # One read into one buffer (no list of chunks joined into a second copy: a 64 MiB
        # file would briefly cost twice that).
        with open(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:  # grew while being read
            return DocumentRead(issue=file_issue(f"file is over the limit of {max_bytes} bytes"))
        return DocumentRead(data=data)
    except OSError as exc:
        return DocumentRead(issue=file_issue(f"cannot read the file: {exc.strerror}"))
    finally:
        os.close(fd)


def load(
    path: Path,
    *,
    now_ms: int,
    env: Mapping[str, str],
    default_timezone: str = "UTC",
) -> ValidationResult:
    """Read and validate a definitions file; a missing file is an empty, valid document."""
    read = read_document(path)
    if read.missing:
        return ValidationResult(Definitions())
    if read.issue is not None or read.data is None:
        return ValidationResult(None, [read.issue or file_issue("cannot read the file")])
    data = read.data
    del read  # the bytes must have one owner, dropped once decoded
    text = decode_document(data)
    del data  # only the text is needed from here on: keeps peak memory down
    if isinstance(text, Issue):
        return ValidationResult(None, [text])
    return validate_text(
        text, filename=str(path), now_ms=now_ms, env=env, default_timezone=default_timezone
    )


def dumps(defs: Definitions) -> bytes:
    """The canonical file content: 2-space indented JSON in model key order, newline-ended
    (byte for byte ``orjson.dumps(defs.to_json(), option=OPT_INDENT_2) + b"\\n"``).

    Built one routine at a time, so a big document never exists as one tree of dicts. A
    document that indented would pass the 64 MiB limit (100 000 routines with every default
    spelled out take ~90 MB) is written with one compact routine per line instead (~55%).
    """
    head = b'{\n  "schema_version": %d,\n  "routines": [' % defs.schema_version
    if not defs.routines:
        return head + b"]\n}\n"
    parts = [
        b"    " + orjson.dumps(r.to_json(), option=orjson.OPT_INDENT_2).replace(b"\n", b"\n    ")
        for r in defs.routines
    ]
    size = len(head) + sum(len(p) + 2 for p in parts) + 6
    if size <= MAX_FILE_BYTES:
        return b"".join([head, b"\n", b",\n".join(parts), b"\n  ]\n}\n"])
    del parts
    lines = [orjson.dumps(r.to_json()) for r in defs.routines]
    return b"".join([head, b"\n", b",\n".join(lines), b"\n]}\n"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700 (existing ones are left alone)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask


def atomic_write(
    path: Path, data: bytes, *, keep_backup: bool = True, durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` so that readers (and crashes) see the old or the new
    content, never a mix: temp file in the same directory, fsync, rename, fsync directory.
    With ``keep_backup`` the previous content stays in ``<name>.bak``. The file is 0600.
    ``durable=False`` skips the fsyncs, for files that only describe the running process
    (readers still never see a torn file; a power cut may lose the latest version).
    """
    try:
        _atomic_write(path, data, keep_backup=keep_backup, durable=durable)
    except OSError as exc:
        # Name the file being written, not the temporary (or no file at all, as for a
        # write that ran out of space): an OSError still, of the same errno subclass.
        if exc.errno is None or exc.filename == str(path):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _atomic_write(path: Path, data: bytes, *, keep_backup: bool, durable: bool) -> None:
    parent = path.parent
    _ensure_dir(parent)
    fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if keep_backup and path.exists():
            _backup(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        _fsync_dir(parent)


def _backup(path: Path) -> None:
    """Point ``<name>.bak`` at the current content atomically (hard link, else a copy)."""
    bak = path.with_name(path.name + ".bak")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{bak.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            data = path.read_bytes()
            with open(tmp, "xb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, bak)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Editor:
    """The definitions being edited inside ``locked_edit``; assign or use upsert/remove."""

    def __init__(self, path: Path, original: Definitions, warnings: list[Issue]) -> None:
        self.path = path
        self.original = original
        self.definitions = original
        self.warnings = warnings

    @property
    def changed(self) -> bool:
        return self.definitions != self.original

    def get(self, routine_id: str) -> Routine | None:
        """The routine with this id, or None."""
        for r in self.definitions.routines:
            if r.id == routine_id:
                return r
        return None

    def upsert(self, routine: Routine) -> bool:
        """Replace the routine with the same id in place, or append it; True if it was new."""
        routines = list(self.definitions.routines)
        for i, r in enumerate(routines):
            if r.id == routine.id:
                routines[i] = routine
                self.definitions = Definitions(routines=tuple(routines))
                return False
        routines.append(routine)
        self.definitions = Definitions(routines=tuple(routines))
        return True

    def remove(self, routine_id: str) -> bool:
        """Delete the routine with this id; False if there was none."""
        kept = tuple(r for r in self.definitions.routines if r.id != routine_id)
        if len(kept) == len(self.definitions.routines):
            return False
        self.definitions = Definitions(routines=kept)
        return True


def _check_new(editor: Editor, *, now_ms: int, env: Mapping[str, str], tz: str) -> None:
    """Refuse to write definitions the validator would reject (checks what changed only)."""
    filename = str(editor.path)
    defs = editor.definitions
    issues: list[Issue] = []
    if len(defs.routines) > MAX_ROUTINES:
        issues.append(
            Issue(
                "routines",
                0,
                0,
                f"too many routines: {len(defs.routines)} (the limit is {MAX_ROUTINES})",
            )
        )
    before = set(editor.original.routines)
    seen: dict[str, int] = {}
    for i, r in enumerate(defs.routines):
        j = seen.setdefault(r.id, i)
        if j != i:
            issues.append(
                Issue(
                    format_path(("routines", i, "id")),
                    0,
                    0,
                    f'duplicate id "{r.id}" (first defined at routines[{j}])',
                )
            )
        if r in before:
            continue
        _, errors, _ = parse_routine(r.to_json(), now_ms=now_ms, env=env, default_timezone=tz)
        prefix = format_path(("routines", i))
        issues += [
            Issue(f"{prefix}.{e.path}" if e.path else prefix, 0, 0, e.message) for e in errors
        ]
    if issues:
        raise DefinitionsError(filename, issues, "refusing to write invalid definitions")


def _remove_stale_temps(path: Path) -> None:
    """Temp files of writers that died mid-write (only safe while holding the lock)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


@contextlib.contextmanager
def locked_edit(
    path: Path,
    *,
    now_ms: int,
    env: Mapping[str, str],
    default_timezone: str = "UTC",
) -> Iterator[Editor]:
    """Serialize with other writers, load the current file, let the caller edit, and write
    atomically on success when something changed. Raises DefinitionsError (without writing)
    when the current file is invalid or the edited definitions would be.
    """
    _ensure_dir(path.parent)
    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = load(path, now_ms=now_ms, env=env, default_timezone=default_timezone)
        if result.definitions is None:
            raise DefinitionsError(
                str(path),
                result.errors,
                f"{path} has errors; fix them (or restore {path.name}.bak) before editing "
                "it with the CLI",
            )
        editor = Editor(path, result.definitions, result.warnings)
        yield editor
        if editor.changed:
            _check_new(editor, now_ms=now_ms, env=env, tz=default_timezone)
            data = dumps(editor.definitions)
            if len(data) > MAX_FILE_BYTES:
                raise DefinitionsError(
                    str(path),
                    [
                        file_issue(
                            f"the file would be {len(data)} bytes; the limit is "
                            f"{MAX_FILE_BYTES} bytes (64 MiB)"
                        )
                    ],
                    "refusing to write definitions that could not be loaded again",
                )
            _remove_stale_temps(path)
            atomic_write(path, data)
    finally:
        os.close(fd)  # releases the flock
