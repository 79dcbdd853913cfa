"""gRPC status → ``NodeError``: the one table of what each failure means to a person.

The daemon answers every refusal with a status code and a one-line message
(``palyra_node.proto``). The code decides the exit code and the wording; the daemon's
message is shown where it says something the node cannot know (which routine, why refused).
"""

from __future__ import annotations

import grpc

from node.errors import NodeError, daemon_unreachable, device_revoked, invalid

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def status_of(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a failed call (``grpc.RpcError`` raised by a call is
    also a ``grpc.Call``; anything else reads as UNKNOWN)."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return code, (details or "").strip()


def _server_line(code: grpc.StatusCode, details: str) -> str:
    return details or f"the daemon refused the request ({code.name.lower()})"


def node_rpc_error(exc: grpc.RpcError, address: str) -> NodeError:
    """A failed call on the node listener (mutual TLS) as the error to exit with."""
    code, details = status_of(exc)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return device_revoked()
    if code in _UNREACHABLE:
        return daemon_unreachable(address)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return invalid(_server_line(code, details))
    if code in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.ABORTED,
    ):
        return NodeError(_server_line(code, details))
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return NodeError("the daemon did not accept this device's certificate", details or None)
    return NodeError(
        f"the daemon failed the request ({code.name.lower()}"
        + (f": {details})" if details else ")"),
        "see the daemon's log: palyra doctor",
    )


def is_unreachable(exc: grpc.RpcError) -> bool:
    return status_of(exc)[0] in _UNREACHABLE
