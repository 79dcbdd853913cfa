"""The one exception root of Palyra, with the hint an operator needs.

Every error that reaches a person (the CLI, a node, a log line, doctor) derives from
``PalyraError``: ``str(exc)`` says what is wrong and names the file, field or routine;
``hint`` says what to do; ``exit_code`` is what the CLI exits with (2 for invalid input, 1 for
everything else, as SPEC §4 asks). It lives in the pure ``routines`` library because every
other package (the daemon, the CLI, the node client) may import ``routines`` and none of them
may import each other freely.
"""

from __future__ import annotations


class PalyraError(Exception):
    """An error with a message for people, an optional hint and the CLI's exit code."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class InvalidInput(PalyraError):
    """Something a person typed or wrote (a file, an argument) cannot be used: exit 2."""

    exit_code = 2
