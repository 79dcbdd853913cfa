"""The listeners' TLS: the daemon's PKI, served through gRPC's dynamic server credentials.

Both listeners are built with ``grpc.dynamic_ssl_server_credentials``: gRPC asks the fetcher
for a configuration at every new TLS handshake, so a renewed server certificate (a third of
its life left, or ``pair-code --host`` naming a host it does not cover yet) reaches new
connections without a restart, and open ones keep theirs.

The pairing listener presents the server certificate *and* the CA (a QR node finds the CA it
pinned in that chain; a PIN node takes it on trust until the key confirmation proves it) and
asks for no client certificate. The node listener requires a client certificate issued by
the CA; which device it belongs to, and whether that device may still call, is the
registry's check, not TLS's.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from certs import issue_device_certificate, load_or_create, server_needs_renewal
from certs.keys import cert_der
from certs.server_files import DaemonPKI, renew_server, san_names
from palyrad.runtime.config import DaemonConfig


def server_names(config: DaemonConfig) -> list[str]:
    """What the server certificate names: loopback, this host, every listen and advertise
    address (SPEC §5), and the webhook listen address when it serves HTTPS.
    ``0.0.0.0``/``::`` bind everything but name nothing, so they are left out; a node
    dialling such a daemon uses the host name or ``--host``."""
    names = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname()
    if host:
        names.append(host)
    webhook = (config.webhook_listen,) if config.webhook_tls else ()
    for name in (*config.rpc_listen, config.rpc_advertise_host, *webhook):
        if name and name not in ("0.0.0.0", "::"):
            names.append(name)
    unique: dict[str, str] = {}
    for n in names:
        unique.setdefault(n.lower(), n)
    return list(unique.values())


class ServerTLS:
    """The loaded PKI and the credentials of both listeners; thread-safe."""

    def __init__(self, certs_dir: Path, names: Sequence[str], now_ms: int) -> None:
        self._names = list(names)
        self._lock = threading.Lock()
        self._pki = load_or_create(certs_dir, self._names, now_ms)
        self._generation = 0

    @property
    def pki(self) -> DaemonPKI:
        return self._pki

    @property
    def generation(self) -> int:
        """+1 per reissued server certificate (the webhook listener reloads on a change)."""
        return self._generation

    @property
    def ca_der(self) -> bytes:
        return cert_der(self._pki.ca.cert)

    @property
    def ca_spki_sha256(self) -> str:
        return self._pki.ca.spki_sha256

    def dns_names(self) -> list[str]:
        return san_names(self._pki.server_cert)

    def ensure_names(self, extra: Sequence[str], now_ms: int) -> bool:
        """Reissue the server certificate when it is due or does not name ``extra``;
        True when it was reissued."""
        with self._lock:
            wanted = [*self._names, *extra]
            if not server_needs_renewal(self._pki, wanted, now_ms):
                return False
            self._pki = renew_server(self._pki, wanted, now_ms)
            self._names = sorted(set(self._names) | set(extra))
            self._generation += 1
            return True

    def issue_device(
        self, public_key: ec.EllipticCurvePublicKey, device_id: str, ttl_s: int, now_ms: int
    ) -> bytes:
        """A client certificate (DER) for ``public_key``; everything else is ours to set."""
        return cert_der(
            issue_device_certificate(self._pki.ca, public_key, device_id, now_ms, ttl_s)
        )

    def _configuration(self, client_auth: bool) -> grpc.ServerCertificateConfiguration:
        pki = self._pki
        chain = pki.server_chain_pem()
        return grpc.ssl_server_certificate_configuration(
            [(pki.server_key_pem(), chain)],
            root_certificates=pki.ca_pem() if client_auth else None,
        )

    def credentials(self, *, client_auth: bool) -> grpc.ServerCredentials:
        """Dynamic credentials for one listener: each new handshake gets the newest
        certificate (the fetcher answers None while nothing changed)."""
        served = [self._generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if served[0] == self._generation:
                return None
            served[0] = self._generation
            return self._configuration(client_auth)

        return grpc.dynamic_ssl_server_credentials(
            self._configuration(client_auth),
            fetch,  # type: ignore[arg-type]  # gRPC documents None as "no change"
            require_client_authentication=client_auth,
        )
