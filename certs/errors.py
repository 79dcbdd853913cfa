"""The one error type of the PKI library.

``certs`` may import nothing of Palyra (it is shared by the daemon and the node, and the
layering test keeps it pure), so it cannot derive from ``routines.errors.PalyraError``.
``CertError`` is a ``ValueError`` because every case is "this input cannot be used"; it carries
the same two parts as ``PalyraError`` (what is wrong, naming the file; what to do) so the
callers can map it to theirs in one place without parsing strings.
"""

from __future__ import annotations


class CertError(ValueError):
    """A key, certificate, CSR or certificate directory cannot be used, and why."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
