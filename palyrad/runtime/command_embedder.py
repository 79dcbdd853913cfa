"""The pluggable memory embedder (SPEC §7 ``[memory] embedder = ["cmd", "arg", ...]``).

An operator who wants a learned model names a command; the daemon runs it once per batch (at
most ``MAX_BATCH`` texts): one JSON string per line on its stdin, then EOF; exactly one JSON
array of numbers per line on its stdout, in the same order. A process per batch rather than a
long-lived server keeps the protocol trivial to implement (a ten-line script) and leaves
nothing running between backfills; loading a model per batch of 64 is the price.

Everything the command can do wrong is an ``EmbedderError`` whose message names the command,
what happened and the fix, and nothing it does can hang or flood the daemon:

- it runs in its own session (``start_new_session``), so a timeout kills the whole process
  group, helpers included, before the leader is reaped (an unreaped leader keeps its pid, so
  the group id cannot have been reused by then);
- stdin, stdout and stderr are served by one ``selectors`` loop against one deadline.
  ``Popen.communicate`` also avoids the pipe deadlock (a command that writes before it has
  read everything), but it reads all the output before returning; the loop stops reading at
  ``MAX_OUTPUT_BYTES`` and keeps only the tail of stderr, without a thread to clean up;
- the output is checked completely before any of it is used: the line count, that every line
  is an array of finite numbers, one dimension per batch, between 1 and ``MAX_DIM``.

The command inherits the daemon's environment (``env=None``): a model path or an API key is
configured the way the operator configures anything else the daemon runs.

``name`` is ``command:`` + 12 hex digits of SHA-256 over the NUL-joined argv, so pointing the
setting at another command (or other arguments) makes the store re-embed every item.
"""

from __future__ import annotations

import hashlib
import math
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence

import orjson

from palyrad.domain.memory_embedding import MAX_DIM, BuiltinEmbedder, Embedder
from palyrad.runtime.process_groups import signal_group
from routines.errors import PalyraError

MAX_BATCH = 64  # texts per process (SPEC §6: backfill batches of 64)
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # 64 x 4096 numbers as JSON is ~25 MiB at most
STDERR_TAIL_BYTES = 500
EXIT_GRACE_S = 0.5  # after the command exited, how long its pipes may stay open
_READ_CHUNK = 65536
_SETTING = "[memory] embedder in palyra.toml"


class EmbedderError(PalyraError, RuntimeError):
    """The embedder command failed; the message names the command, what happened, the fix."""


class CommandEmbedder:
    """An ``Embedder`` that runs ``argv`` once per batch of at most ``MAX_BATCH`` texts."""

    name: str

    def __init__(self, argv: Sequence[str], timeout_s: float = 60.0) -> None:
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"{_SETTING} must be a non-empty list of strings, not {argv!r}")
        if not argv[0]:
            raise ValueError(f"{_SETTING}: the command (first element) is empty")
        if not timeout_s > 0:
            raise ValueError(f"the embedder timeout must be positive, not {timeout_s!r}")
        self.argv = tuple(argv)
        self.timeout_s = timeout_s
        joined = "\0".join(self.argv).encode("utf-8", "surrogateescape")
        self.name = "command:" + hashlib.sha256(joined).hexdigest()[:12]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, same order; a process per ``MAX_BATCH`` texts."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_BATCH):
            batch = self._run_batch(texts[start : start + MAX_BATCH])
            if vectors and len(batch[0]) != len(vectors[0]):
                raise self._error(
                    f"returned {len(batch[0])} dimensions for texts {start + 1}.. but"
                    f" {len(vectors[0])} for the texts before",
                    "make it return vectors of one dimension for every text",
                )
            vectors.extend(batch)
        return vectors

    def _error(self, what: str, fix: str) -> EmbedderError:
        command = shlex.join(self.argv)
        if len(command) > 200:
            command = command[:200] + "…"
        return EmbedderError(f"embedder command `{command}` {what}; fix: {fix}")

    def _run_batch(self, texts: Sequence[str]) -> list[list[float]]:
        payload = b"".join(_json_line(text) for text in texts)
        proc = self._start()
        deadline = time.monotonic() + self.timeout_s
        try:
            stdout, stderr_tail = self._exchange(proc, payload, deadline)
            returncode = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise self._error(
                f"did not finish within {self.timeout_s:g} s (killed with its process group)",
                "make it embed a batch of 64 texts faster, or check that it reads stdin to"
                " EOF and exits",
            ) from None
        except OSError as exc:  # a pipe failing under us; never seen, but never a raw OSError
            raise self._error(
                f"could not be fed or read: {exc}", "check the system log, then retry"
            ) from exc
        finally:
            if proc.returncode is None:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if returncode != 0:
            raise self._error(
                f"{_describe_exit(returncode)}; stderr: {_tail_text(stderr_tail)}",
                "run it by hand with a JSON string on stdin and fix what its stderr says",
            )
        return self._parse(stdout, len(texts))

    def _start(self) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=None,
            )
        except FileNotFoundError:
            what = (
                f"cannot be started: {self.argv[0]!r} was not found (not on the daemon's PATH,"
                " no such file, or the interpreter on its #! line is missing)"
            )
            fix = f'install it or give its full path in {_SETTING}, or set it to "builtin"'
        except PermissionError:
            what = f"cannot be started: {self.argv[0]!r} is not executable (permission denied)"
            fix = f"chmod +x it, or name its interpreter first in {_SETTING}"
        except OSError as exc:
            what = f"cannot be started: {exc.strerror or exc}"
            fix = f"check the command in {_SETTING} (a script needs a #! line)"
        except ValueError as exc:  # e.g. "embedded null byte" in an argument
            what = f"cannot be started: {exc}"
            fix = f"fix the command in {_SETTING}"
        raise self._error(what, fix)

    def _exchange(
        self, proc: subprocess.Popen[bytes], payload: bytes, deadline: float
    ) -> tuple[bytes, bytes]:
        """Feed ``payload`` and collect (stdout, stderr tail) until both outputs close.

        Raises ``subprocess.TimeoutExpired`` at the deadline and ``EmbedderError`` past
        ``MAX_OUTPUT_BYTES``; the caller kills the group either way.
        """
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
        out: list[bytes] = []
        out_size = 0
        err = bytearray()
        view = memoryview(payload)
        written = 0
        # The leader's exit (its pidfd turns readable) starts a short grace for the pipes to
        # close: a helper it left behind (a model server) may hold them open for ever, and
        # the answer is complete once the leader is gone.
        pidfd = _pidfd(proc.pid)
        grace_until: float | None = None
        with selectors.DefaultSelector() as selector:
            if payload:
                os.set_blocking(stdin.fileno(), False)
                selector.register(stdin, selectors.EVENT_WRITE)
            else:
                stdin.close()
            selector.register(stdout, selectors.EVENT_READ)
            selector.register(stderr, selectors.EVENT_READ)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            try:
                while any(k.fileobj != pidfd for k in selector.get_map().values()):
                    now = time.monotonic()
                    if grace_until is not None and now >= grace_until:
                        signal_group(proc.pid, signal.SIGKILL)  # the helpers holding the pipes
                        break
                    remaining = min(deadline, grace_until or deadline) - now
                    if remaining <= 0:
                        raise subprocess.TimeoutExpired(self.argv, self.timeout_s)
                    for key, _ in selector.select(remaining):
                        if key.fileobj == pidfd:
                            selector.unregister(pidfd)
                            grace_until = time.monotonic() + EXIT_GRACE_S
                            continue
                        if key.fileobj is stdin:
                            try:
                                written += os.write(stdin.fileno(), view[written:])
                            except BlockingIOError:
                                continue
                            except BrokenPipeError:
                                # It stopped reading (exited?): its exit status and output say why.
                                written = len(payload)
                            if written >= len(payload):
                                selector.unregister(stdin)
                                stdin.close()
                            continue
                        pipe = stdout if key.fileobj is stdout else stderr
                        chunk = os.read(pipe.fileno(), _READ_CHUNK)
                        if not chunk:
                            selector.unregister(pipe)
                            continue
                        if pipe is stderr:
                            err += chunk
                            del err[:-STDERR_TAIL_BYTES]
                            continue
                        out_size += len(chunk)
                        if out_size > MAX_OUTPUT_BYTES:  # the caller kills the group
                            raise self._error(
                                f"wrote more than {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB to"
                                " stdout (killed with its process group)",
                                "make it print exactly one JSON array of numbers per input line",
                            )
                        out.append(chunk)
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        return b"".join(out), bytes(err)

    def _parse(self, stdout: bytes, count: int) -> list[list[float]]:
        lines = stdout.split(b"\n")
        if lines and not lines[-1].strip():
            lines.pop()  # the last line's newline (or nothing at all)
        if len(lines) != count:
            raise self._error(
                f"printed {len(lines)} lines for {count} texts",
                "print exactly one JSON array of numbers per input line, in input order",
            )
        vectors: list[list[float]] = []
        for number, line in enumerate(lines, 1):
            vector = _vector(line)
            if vector is None:
                raise self._error(
                    f"printed a line that is not a JSON array of finite numbers (line"
                    f" {number}: {_preview(line)})",
                    "print each vector as a JSON array like [0.12, -0.5, ...] (no NaN or"
                    " Infinity: they are not JSON)",
                )
            if not 1 <= len(vector) <= MAX_DIM:
                raise self._error(
                    f"printed a vector of {len(vector)} dimensions (line {number}); the store"
                    f" takes 1 to {MAX_DIM}",
                    "make it return vectors of 1 to 4096 numbers",
                )
            if vectors and len(vector) != len(vectors[0]):
                raise self._error(
                    f"printed vectors of different dimensions in one batch (line 1:"
                    f" {len(vectors[0])}, line {number}: {len(vector)})",
                    "make it return vectors of one dimension for every text",
                )
            vectors.append(vector)
        return vectors


def make_embedder(setting: str | Sequence[str], timeout_s: float = 60.0) -> Embedder:
    """The embedder ``[memory] embedder`` names: ``"builtin"`` or a command list (given
    ``timeout_s`` per batch)."""
    if isinstance(setting, str):
        if setting == "builtin":
            return BuiltinEmbedder()
        raise ValueError(
            f'{_SETTING} must be "builtin" or a command list like ["my-embedder", "--flag"],'
            f" not {setting!r}"
        )
    return CommandEmbedder(setting, timeout_s)


def _pidfd(pid: int) -> int | None:
    """A descriptor that turns readable when ``pid`` exits (Linux ≥ 5.3), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _json_line(text: str) -> bytes:
    try:
        return orjson.dumps(text) + b"\n"
    except TypeError:  # lone surrogates (undecodable file names, say) are not UTF-8
        return orjson.dumps(text.encode("utf-8", "replace").decode("utf-8")) + b"\n"


def _vector(line: bytes) -> list[float] | None:
    """The floats of one output line, or None unless it is a JSON array of finite numbers."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, list) or not all(type(x) in (int, float) for x in value):
        return None  # type() rather than isinstance(): true and false are not numbers
    vector = [float(x) for x in value]
    return vector if all(map(math.isfinite, vector)) else None


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _tail_text(tail: bytes) -> str:
    text = tail.decode("utf-8", errors="replace").strip()
    return repr(text) if text else "(empty)"


def _preview(line: bytes) -> str:
    text = line[:80].decode("utf-8", errors="replace")
    return repr(text) + ("…" if len(line) > 80 else "")
