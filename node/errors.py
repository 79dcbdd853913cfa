"""The node's errors: one type, with the message, hint and exit code a person needs.

``palyra-node`` follows the ``palyra`` conventions (SPEC §4): one stderr line
``error: <what> (<hint>)``, exit 1 for failed/refused/not found, 2 for invalid input. The
recurring failures have one constructor each, so every command words them the same way and
tests can match them.
"""

from __future__ import annotations

from routines.errors import PalyraError

REVOKED = "revoked"
UNREACHABLE = "unreachable"
PAIR_HINT = "pair again: palyra-node pair --uri URI, or --host H --port P"


class NodeError(PalyraError):
    """A failure ``palyra-node`` reports and exits on."""

    def __init__(
        self, message: str, hint: str | None = None, *, exit_code: int = 1, kind: str = ""
    ) -> None:
        super().__init__(message, hint or None)
        self.exit_code = exit_code
        self.kind = kind  # "revoked", "unreachable", ...: what callers branch on, not the text

    @property
    def message(self) -> str:
        return str(self)

    def line(self) -> str:
        """``what (hint)``: the text after ``error: ``."""
        return f"{self} ({self.hint})" if self.hint else str(self)


def invalid(message: str, hint: str | None = None) -> NodeError:
    """Malformed input (a URI, PIN, port, payload): exit 2."""
    return NodeError(message, hint, exit_code=2)


def not_paired() -> NodeError:
    return NodeError(
        "not paired", "run palyra-node pair --uri URI, or palyra-node pair --host H --port P"
    )


def device_revoked() -> NodeError:
    return NodeError("device revoked", PAIR_HINT, kind=REVOKED)


def daemon_unreachable(address: str, detail: str = "") -> NodeError:
    extra = f"; {detail}" if detail else ""
    return NodeError(
        "daemon unreachable", f"is palyrad running? address {address}{extra}", kind=UNREACHABLE
    )


def code_refused(hint: str) -> NodeError:
    """Wrong PIN, expired or consumed code, closed window: all one message, since the daemon
    deliberately does not say which (a guesser learns nothing)."""
    return NodeError("wrong PIN or code expired", hint)


def not_verified() -> NodeError:
    return NodeError(
        "the daemon's confirmation did not verify "
        "(wrong PIN, or someone is intercepting the connection)"
    )
