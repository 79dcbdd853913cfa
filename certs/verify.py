"""The node's checks of what a daemon presents, made before the node sends anything.

A pairing node dials a listener it does not yet trust. It takes the chain the listener
presents (``fetch_presented_chain``: a TLS handshake that verifies nothing and sends no data)
and decides itself (``verify_server_chain``), because the rule is palyra's, not the web's:
the chain must reach the CA whose key the QR code pinned, the leaf must be a *server*
certificate (device certificates chain to the same CA, so a stolen device certificate must
not pass for the daemon), and must name the dialled host. Only then does the node open its
real channel, trusting that CA alone.

``verify_device_certificate`` is the node's check of the certificate the daemon issued to it,
before storing it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from . import san
from .authority import device_id_of
from .checks import (
    CLIENT_AUTH,
    SERVER_AUTH,
    has_eku,
    is_ca,
    is_self_signed_ca,
    issued_by,
    not_after_ms,
    not_before_ms,
    valid_at,
)
from .errors import CertError
from .fingerprints import pem_to_der, same_fingerprint, spki_sha256

_NO_CHAIN_HINT = "check the address: it may not be this daemon's listener"


def _parse_der(der: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertError(f"the listener sent an unreadable certificate ({what})") from exc


def _find_ca(certs: list[x509.Certificate], pin: str | None) -> x509.Certificate:
    if pin is not None:
        found: x509.Certificate | None = None
        for cert in certs:  # look at every one: the time taken says nothing about the pin
            if same_fingerprint(spki_sha256(cert), pin) and found is None:
                found = cert
        if found is None:
            raise CertError(
                "the listener's certificate does not chain to the pinned CA",
                "it is not the daemon that made the pairing code (or the code is stale)",
            )
        return found
    for cert in reversed(certs):
        if is_self_signed_ca(cert):
            return cert
    raise CertError("the listener presented no CA certificate", _NO_CHAIN_HINT)


def _check_validity(cert: x509.Certificate, what: str, now_ms: int) -> None:
    if not valid_at(cert, now_ms):
        when = "is not valid yet" if now_ms < not_before_ms(cert) else "has expired"
        raise CertError(
            f"the {what} {when} (valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z)",
            "check this machine's clock" if not_after_ms(cert) > now_ms else "",
        )


def verify_server_chain(
    chain_der: Sequence[bytes], host: str, now_ms: int, ca_spki_pin: str | None = None
) -> x509.Certificate:
    """Check a listener's chain (``chain_der[0]`` the leaf) for ``host``; return its CA.

    With ``ca_spki_pin`` the CA is the certificate in the chain with that SPKI SHA-256; without
    it, the last self-signed CA certificate (the caller then decides whether to trust it).
    ``CertError`` saying which check failed otherwise."""
    if not chain_der:
        raise CertError("the listener presented no certificate", _NO_CHAIN_HINT)
    certs = [_parse_der(der, f"#{i}") for i, der in enumerate(chain_der)]
    leaf = certs[0]
    ca = _find_ca(certs, ca_spki_pin)
    if not is_self_signed_ca(ca):
        raise CertError("the pinned CA certificate is not a self-signed CA", _NO_CHAIN_HINT)
    _check_validity(ca, "daemon's CA certificate", now_ms)
    if not issued_by(leaf, ca):
        raise CertError(
            "the listener's certificate is not signed by the pinned CA"
            if ca_spki_pin is not None
            else "the listener's certificate is not signed by the CA it presented",
            _NO_CHAIN_HINT,
        )
    _check_validity(leaf, "listener's certificate", now_ms)
    if is_ca(leaf):
        raise CertError("the listener presented a CA certificate as its own", _NO_CHAIN_HINT)
    if not has_eku(leaf, SERVER_AUTH):
        raise CertError(
            "the listener's certificate is not a server certificate (no EKU serverAuth)",
            "a device certificate is being presented: this is not the daemon",
        )
    if not san.covers(leaf, host):
        raise CertError(
            f"the listener's certificate does not name {host!r}",
            "dial the daemon by a name it was issued for (`palyra node pair-code --host` adds one)",
        )
    return ca


def verify_device_certificate(
    cert: x509.Certificate | bytes,
    ca: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey,
    now_ms: int,
) -> str:
    """Check a device certificate the daemon issued (DER or PEM bytes, or parsed) against the
    CA and the device's own key (public or private); return its device id, or raise
    ``CertError``."""
    if isinstance(cert, bytes):
        der = pem_to_der(cert) if cert.lstrip().startswith(b"-----BEGIN") else cert
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise CertError("the issued device certificate is unreadable") from exc
    if not issued_by(cert, ca):
        raise CertError("the device certificate is not signed by the daemon's CA")
    if not same_fingerprint(spki_sha256(cert), spki_sha256(public_key)):
        raise CertError("the device certificate is for another key than this device's")
    if is_ca(cert) or not has_eku(cert, CLIENT_AUTH):
        raise CertError("the device certificate is not a client certificate (EKU clientAuth)")
    _check_validity(cert, "device certificate", now_ms)
    device_id = device_id_of(cert)
    if device_id is None:
        raise CertError("the device certificate names no device (SAN palyra:device:<id>)")
    return device_id


def _chain_of(ssock: ssl.SSLSocket) -> list[bytes]:
    """The DER chain the peer presented. ``SSLSocket.get_unverified_chain`` exists from
    Python 3.13 (returning DER bytes); on 3.11/3.12 the same call is on the private
    ``_sslobj`` and returns ``_ssl.Certificate`` objects, converted with ``public_bytes``."""
    getter = getattr(ssock, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssock, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:  # no chain API at all: the leaf alone (a pin check then fails)
        leaf = ssock.getpeercert(binary_form=True)
        return [leaf] if leaf else []
    der_encoding = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)
    out: list[bytes] = []
    for item in getter() or []:
        out.append(item if isinstance(item, bytes) else bytes(item.public_bytes(der_encoding)))
    return out


def fetch_presented_chain(host: str, port: int, timeout_s: float) -> list[bytes]:
    """Handshake with ``host:port`` without verifying anything and return the DER chain the
    listener presented (leaf first). Sends no application data. ``OSError`` (``ssl.SSLError``
    included) if the listener cannot be reached or the handshake fails."""
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])  # what a gRPC client offers; gRPC servers expect it
    with (
        socket.create_connection((address, port), timeout=timeout_s) as sock,
        context.wrap_socket(sock, server_hostname=address) as ssock,
    ):
        return _chain_of(ssock)
