"""Shared CLI plumbing: ``--home`` anywhere, ``--json`` output, one-line errors, exit codes.

Exit codes (SPEC §4): 0 success, 1 failed/not found/refused, 2 invalid input or usage.
Errors are one stderr line ``error: <what> (<hint>)``; notes go to stderr too, so ``--json``
stdout is always exactly one JSON document.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from click.exceptions import NoArgsIsHelpError

from palyra_cli.fast_path import NOT_RUNNING_NOTE as NOT_RUNNING_NOTE  # shared with the shortcut

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home

# Start-up cost: every ``palyra`` process imports this module and click, nothing more, before
# it knows which command runs. The library (palyrad.*, routines.*, orjson) is imported by the
# helpers and commands that use it, so ``palyra --help`` or ``routines run-now`` never pays for
# the definitions validator, the cron engine or the daemon's status types (~100 ms in all
# without cached bytecode).

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure the operator can act on: printed as ``error: what (hint)``."""

    def __init__(self, what: str, hint: str | None = None, code: int = 1) -> None:
        super().__init__(what)
        self.hint = hint
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code

    def format_message(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def fail(what: str, hint: str | None = None, code: int = 1) -> NoReturn:
    raise CliError(what, hint, code)


def fail_hinted(what: str, hint: str, code: int = 1) -> NoReturn:
    """Like ``fail``, but keeps a library message's own ``(hint)`` instead of adding a second."""
    fail(what, None if what.rstrip().endswith(")") else hint, code)


class OneLineUsageError(click.UsageError):
    """A usage error shown as one line ``error: <what> (see: <command> --help)`` (exit 2)
    instead of click's usage block, so every error has the SPEC §4 shape."""

    def show(self, file: Any = None) -> None:
        what = self.format_message().strip().rstrip(".")
        what = what[:1].lower() + what[1:]
        path = self.ctx.command_path if self.ctx is not None else "palyra"
        click.echo(f"error: {what} (see: {path} --help)", err=True)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, OneLineUsageError | NoArgsIsHelpError):
        return exc  # a bare group prints its help (exit 2), as click does
    return OneLineUsageError(exc.format_message(), exc.ctx)


class PalyraGroup(click.Group):
    """The root group: usage errors anywhere below it print one ``error:`` line.

    Its subcommands can be lazy (click's documented LazyGroup pattern): ``lazy_subcommands``
    maps a name to ``"module:attribute"``, imported on first lookup, so a command imports
    only its own module (``--help`` imports them all; each is cheap to import).
    """

    def __init__(
        self,
        *args: Any,
        lazy_subcommands: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = self.lazy_subcommands.get(cmd_name)
        if spec is not None and cmd_name not in self.commands:
            module_name, attr = spec.split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{spec} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

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
            raise  # click's own flow (--help, exit codes, messages already formatted)
        except Exception as exc:
            # Every error meant for people derives from PalyraError (routines.errors): one
            # mapping to ``error: … (hint)`` and its exit code. An OSError that no command
            # turned into one with a better hint (a read-only home, a full disk, a file where
            # a directory belongs) gets the generic one, naming the path: never a traceback.
            # Imported on the error path only, so start-up stays without it.
            from palyrad.runtime.config import ConfigError
            from routines.errors import PalyraError, storage_error

            if isinstance(exc, OSError):
                exc = storage_error(exc)
            if not isinstance(exc, PalyraError):
                raise
            what = str(exc)
            hint = exc.hint
            if isinstance(exc, ConfigError) and hint is None and not what.rstrip().endswith(")"):
                hint = "fix palyra.toml"  # a broken palyra.toml: invalid input, not a traceback
            raise CliError(what, hint, code=exc.exit_code) from None


def note(text: str) -> None:
    click.echo(text, err=True)


def emit_json(value: Any) -> None:
    """Exactly one JSON document on stdout."""
    import orjson  # ~3 ms (it imports json); only commands that print JSON need it

    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _store_home(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["home"] = value
    return value


def home_option(f: F) -> F:
    """``--home`` accepted on every command (and on the group before it)."""
    return click.option(
        "--home",
        "home_opt",
        metavar="DIR",
        expose_value=False,
        is_eager=True,
        callback=_store_home,
        help="Palyra home (default $PALYRA_HOME or ~/.palyra).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


def get_home(*, create: bool = True) -> Home:
    """The home for this invocation (``--home``, ``$PALYRA_HOME``, ``~/.palyra``; a blank one
    is exit 2), created 0700 on first use — unless ``create`` is False: a command that only
    reads the home, or does not need it at all, leaves a missing home missing."""
    from palyrad.runtime.home import Home

    ctx = click.get_current_context()
    root = ctx.find_root()
    explicit = (root.obj or {}).get("home") if isinstance(root.obj, dict) else None
    home = Home.at(explicit)
    return home.ensure() if create else home


def open_journal(home: Home) -> Journal:
    from palyrad.journal import (
        Journal,  # with palyrad.domain.runs, ~10 ms: only for commands using it
    )

    return Journal(home.journal)  # a JournalError names the file and the fix


def with_journal(f: F) -> F:
    """Open the home's journal for the command and close it afterwards."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        home = get_home()
        journal = open_journal(home)
        try:
            return f(*args, home=home, journal=journal, **kwargs)
        finally:
            journal.close()

    return wrapper  # type: ignore[return-value]
