"""gRPC channels to the daemon's two listeners, always trusting exactly the daemon's CA.

- the pairing channel: TLS, root = the CA the node was shown (pinned by the QR code, or, in
  PIN mode, taken from the listener and trusted only once the daemon's MAC verifies);
- the node channel: mutual TLS, root = the pinned CA, client = the device key and cert.

Never the system trust store: a publicly trusted certificate for the daemon's name proves
nothing about the daemon. ``tls_name`` overrides the name checked against the server's SAN
when the node dials an address its certificate does not name (PIN pairing by a bare IP).

A channel is made per connection attempt rather than reused across failures: a gRPC channel
that failed to connect backs off internally (up to minutes), and the node's own reconnect
loop (``watch``) should decide when to try again.
"""

from __future__ import annotations

import grpc

from node.home import Identity
from palyra_proto.pairing import format_address

MAX_RECEIVE_BYTES = 16 * 1024 * 1024  # a routines list of many routines is one JSON document
MAX_SEND_BYTES = 1024 * 1024  # the node sends small requests (a payload is ≤ 64 KiB)

_BASE_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    ("grpc.max_send_message_length", MAX_SEND_BYTES),
    ("grpc.enable_http_proxy", 0),  # a proxy would see only TLS, but must not be needed
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.enable_retries", 0),  # every retry is the node's decision (renewal must not repeat)
]


def target(host: str, port: int) -> str:
    return format_address(host, port)


def _options(tls_name: str | None) -> list[tuple[str, int | str]]:
    options = list(_BASE_OPTIONS)
    if tls_name:
        options.append(("grpc.ssl_target_name_override", tls_name))
    return options


def pairing_channel(host: str, port: int, ca_pem: bytes, tls_name: str | None) -> grpc.Channel:
    """A TLS channel to the pairing listener, trusting ``ca_pem`` alone."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    return grpc.secure_channel(target(host, port), credentials, options=_options(tls_name))


def node_channel(identity: Identity) -> grpc.Channel:
    """A mutual-TLS channel to the node listener with the device's key and certificate."""
    from certs.keys import cert_pem, private_key_pem

    credentials = grpc.ssl_channel_credentials(
        root_certificates=cert_pem(identity.ca),
        private_key=private_key_pem(identity.key),
        certificate_chain=cert_pem(identity.cert),
    )
    info = identity.info
    return grpc.secure_channel(
        target(info.host, info.node_port), credentials, options=_options(info.tls_name)
    )
