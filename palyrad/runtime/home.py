"""The Palyra home directory (SPEC §1): where every file lives, created 0700 on first use.

One object names every path so no module builds paths of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

# `typing` (~4 ms) is not imported by run-now's fast path; mypy honours this constant.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

ENV_HOME = "PALYRA_HOME"


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--home`` if given, else ``$PALYRA_HOME``, else ``~/.palyra`` (absolute, ``~`` expanded).

    An empty (or blank) ``--home`` or ``$PALYRA_HOME`` is refused (``InvalidInput``, exit 2)
    rather than read as "not given": falling back to ``~/.palyra`` would act on the wrong home.
    """
    if explicit is not None:
        raw = os.fspath(explicit)
        if not raw.strip():
            _blank("--home is empty", "give a directory, e.g. --home ~/.palyra")
    else:
        env = os.environ.get(ENV_HOME)
        if env is not None and not env.strip():
            _blank(f"${ENV_HOME} is empty", "set it to a directory, or unset it to use ~/.palyra")
        raw = env or "~/.palyra"
    return Path(raw).expanduser().absolute()


def _blank(what: str, hint: str) -> NoReturn:
    from routines.errors import InvalidInput  # the error path only: run-now resolves homes

    raise InvalidInput(what, hint)


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


class Home:
    """A plain class, not a dataclass: ``palyra routines run-now`` resolves the home before
    anything else, and the dataclasses module imports ``inspect`` (~10 ms of its budget)."""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Home) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"Home(root={self.root!r})"

    @classmethod
    def at(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        return cls(resolve_home(explicit))

    @property
    def config(self) -> Path:
        return self.root / "palyra.toml"

    @property
    def journal(self) -> Path:
        return self.root / "journal.sqlite3"

    @property
    def routines_dir(self) -> Path:
        return self.root / "routines"

    @property
    def definitions(self) -> Path:
        return self.routines_dir / "definitions.json"

    @property
    def last_good_definitions(self) -> Path:
        """The copy of what the daemon last applied: run at a start with a broken or missing
        file, and shown by the read commands meanwhile."""
        return self.routines_dir / ".definitions.last-good.json"

    @property
    def skills_dir(self) -> Path:
        return self.root / "skills"

    @property
    def installed_index(self) -> Path:
        return self.skills_dir / "installed-index.json"

    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "palyrad.pid"

    @property
    def notify_fifo(self) -> Path:
        return self.run_dir / "notify"

    @property
    def stop_request(self) -> Path:
        """``palyra daemon stop --timeout``'s request to the supervisor (stop_request.py)."""
        return self.run_dir / "stop-request.json"

    @property
    def spawn_intents(self) -> Path:
        """The executor's spawn-intent log (crash recovery: may this run have started?)."""
        return self.run_dir / "spawn-intents"

    def wake_fifo(self, service: str) -> Path:
        """The FIFO a service reads its direct pokes from."""
        return self.run_dir / f"wake-{service}"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs_dir / "palyrad.log"

    def run_log(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.log"

    def ensure(self) -> Home:
        """Create the home (0700) and the folders the daemon and CLI write into.

        Raises ``StorageError`` (from routines.errors) naming the path that could not be
        created: a file in the way, no permission, a read-only or full file system."""
        try:
            existed = self.root.exists()
            _mkdir_private(self.root)
            if not existed:
                os.chmod(self.root, 0o700)
            for d in (
                self.routines_dir,
                self.skills_dir,
                self.certs_dir,
                self.runs_dir,
                self.run_dir,
                self.logs_dir,
            ):
                _mkdir_private(d)
        except OSError as exc:
            from routines.errors import storage_error

            raise storage_error(exc, "cannot create the home") from None
        return self
