"""The command-line plumbing of ``palyra-node``: the same conventions as ``palyra``.

``node`` may not import ``palyra_cli`` (the device side never depends on the operator's
tools), so the few rules are restated here: ``--home`` before or after the command,
``--json`` prints exactly one JSON document on stdout, every error is one stderr line
``error: <what> (<hint>)``, exit 0 ok / 1 failed, refused, not found / 2 invalid input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson

from certs.errors import CertError
from node.context import NodeContext
from node.errors import NodeError, invalid
from node.home import NodeHome
from routines.errors import PalyraError, storage_error
from routines.timefmt import now_ms

F = TypeVar("F", bound=Callable[..., Any])

MAX_PAYLOAD_BYTES = 64 * 1024  # what the daemon accepts as a trigger payload (SPEC §4.2)


def error_line(exc: PalyraError) -> str:
    what = str(exc)
    return f"{what} ({exc.hint})" if exc.hint and not what.rstrip().endswith(")") else what


class _Failure(click.ClickException):
    """A ``PalyraError`` on its way out through click: one line, its exit code."""

    def __init__(self, exc: PalyraError) -> None:
        super().__init__(error_line(exc))
        self.code = exc.exit_code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _UsageLine(click.UsageError):
    def show(self, file: Any = None) -> None:
        what = self.format_message().strip().rstrip(".")
        what = what[:1].lower() + what[1:]
        path = self.ctx.command_path if self.ctx is not None else "palyra-node"
        click.echo(f"error: {what} (see: {path} --help)", err=True)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, _UsageLine | click.exceptions.NoArgsIsHelpError):
        return exc
    return _UsageLine(exc.format_message(), exc.ctx)


class NodeGroup(click.Group):
    """Groups whose usage errors and library errors all print one ``error:`` line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except PalyraError as exc:
            raise _Failure(exc) from None
        except CertError as exc:
            raise _Failure(NodeError(exc.message, exc.hint)) from None
        except OSError as exc:
            raise _Failure(storage_error(exc)) from None


def _store_home(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["home"] = value
    return value


def home_option(f: F) -> F:
    """``--home`` on every command and group (before or after the command)."""
    return click.option(
        "--home",
        "home_opt",
        metavar="DIR",
        expose_value=False,
        is_eager=True,
        callback=_store_home,
        help="Node home (default $PALYRA_NODE_HOME or ~/.palyra-node).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


def note(text: str) -> None:
    click.echo(text, err=True)


def emit_json(value: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def emit_line(text: str) -> None:
    """One line on stdout, flushed at once (``watch`` output is read live, often piped)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def node_context() -> NodeContext:
    ctx = click.get_current_context()
    obj = ctx.find_root().obj
    explicit = obj.get("home") if isinstance(obj, dict) else None
    return NodeContext(home=NodeHome.at(explicit), now_ms=now_ms, note=note)


def read_secret_arg(value: str, what: str) -> str:
    """``-`` reads the value from the first line of stdin (codes stay out of shell history
    and process lists)."""
    if value != "-":
        return value
    line = sys.stdin.readline()
    if not line.strip():
        raise invalid(
            f"no {what} on standard input",
            f"pipe it in: echo ... | palyra-node pair --{what.lower()} -",
        )
    return line.strip()


def check_payload(payload: str | None) -> str | None:
    """``--payload``: JSON of at most 64 KiB, checked before anything is sent (exit 2)."""
    if payload is None:
        return None
    if len(payload.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise invalid(
            "--payload is larger than 64 KiB", "pass a file's path in the payload instead"
        )
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise invalid(
            f"--payload is not valid JSON ({exc})", "e.g. --payload '{\"key\": 1}'"
        ) from None
    return payload
