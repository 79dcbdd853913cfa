"""What every doctor check looks at, computed once per run and shared: the home, palyra.toml
(or why it cannot be used), the daemon's status, the journal opened read-only, the
definitions file's bytes, and "now" from the injected clock.

Everything is read lazily (``--only disk`` opens no journal) and never written: the journal
is opened with ``Journal(path, readonly=True)`` (``mode=ro``: it creates nothing and
migrates nothing; a missing journal is a finding, not a file to create). The one way to
write is ``writable_journal()``, for ``--repair`` only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

from palyrad.journal import SCHEMA_VERSION, Journal, JournalError
from palyrad.journal.health import JournalFacts, journal_facts
from palyrad.ops.doctor.definitions_facts import DefinitionsFile, RoutineFacts, routine_facts
from palyrad.runtime.config import ConfigError, DaemonConfig, load_config
from palyrad.runtime.home import Home
from palyrad.runtime.status import DaemonStatus, read_status
from palyrad.seams import Clock


@dataclass(frozen=True, slots=True)
class JournalAccess:
    """The journal as doctor found it: open (with its facts), missing, or unusable."""

    journal: Journal | None = None
    facts: JournalFacts | None = None
    missing: bool = False
    error: JournalError | None = None

    @property
    def current(self) -> bool:
        """Open, and of this Palyra's schema: its domains can be read."""
        return (
            self.journal is not None
            and self.facts is not None
            and self.facts.schema_version == SCHEMA_VERSION
        )


class DoctorContext:
    """One doctor run's shared view of the home (see the module docstring)."""

    def __init__(
        self,
        home: Home,
        *,
        clock: Clock,
        repair: bool = False,
        deep: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.clock = clock
        self.now_ms = clock.now_ms()
        self.repair = repair
        # A full integrity check was asked for (``--only journal``); see journal_checks.
        self.deep = deep
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.config_error: ConfigError | None = None
        try:
            self.config: DaemonConfig = load_config(home.config)
        except ConfigError as exc:  # the config check reports it; the others use defaults
            self.config_error = exc
            self.config = DaemonConfig()

    # --- the daemon ---------------------------------------------------------------------

    @cached_property
    def status(self) -> DaemonStatus:
        """``read_status`` once per run (``forget_status`` after a repair changed it)."""
        return read_status(self.home)

    @property
    def running(self) -> bool:
        return self.status.running

    def forget_status(self) -> None:
        """Read the daemon's status again at the next use (a repair restarted a service)."""
        self.__dict__.pop("status", None)

    # --- the journal --------------------------------------------------------------------

    @cached_property
    def journal_access(self) -> JournalAccess:
        """The journal opened read-only, once."""
        if not self.home.journal.exists():
            return JournalAccess(missing=True)
        try:
            journal = Journal(self.home.journal, readonly=True)
        except JournalError as exc:
            return JournalAccess(error=exc)
        try:
            facts = journal_facts(journal)  # the first read: "not a database" surfaces here
        except JournalError as exc:
            journal.close()
            return JournalAccess(error=exc)
        return JournalAccess(journal=journal, facts=facts)

    @property
    def journal(self) -> Journal | None:
        """The read-only journal when its domains can be read (present, readable, this
        Palyra's schema); None otherwise (the journal check says why)."""
        access = self.journal_access
        return access.journal if access.current else None

    @contextlib.contextmanager
    def writable_journal(self) -> Iterator[Journal]:
        """A writable connection for a repair. Refused unless the read-only one found the
        current schema: opening it writable must never migrate (or create) anything."""
        if not self.journal_access.current:
            raise JournalError(
                f"{self.home.journal}: not repaired (the journal is missing, unreadable or of"
                " another schema version)",
                "run: palyra doctor --only journal",
            )
        journal = Journal(self.home.journal, synchronous=self.config.journal_synchronous)
        try:
            yield journal
        finally:
            journal.close()

    # --- definitions --------------------------------------------------------------------

    @cached_property
    def definitions(self) -> DefinitionsFile:
        """definitions.json's bytes (read once, never blocking) and their hash."""
        return DefinitionsFile.read(self.home.definitions)

    @cached_property
    def routines(self) -> RoutineFacts:
        """What the routines need from the machine (prompt runner, inotify watches), from
        the file when it parses, else from what the daemon last applied."""
        return routine_facts(self.definitions, self.home.last_good_definitions)

    def close(self) -> None:
        """Close the journal connection if one was opened."""
        access = self.__dict__.get("journal_access")
        if isinstance(access, JournalAccess) and access.journal is not None:
            access.journal.close()
