"""Host names and IPs as subjectAltName entries, one normalization for issuing and checking.

A name is an IP if ``ipaddress`` parses it (``[::1]`` brackets allowed, as in a URI), else a
DNS name: lowercased, a trailing dot dropped, IDNA-encoded if it is not ASCII, and checked
label by label (letters, digits, ``-``, ``_``; no wildcards: the daemon never needs one, and a
node must never accept one). The same function decides what a server certificate covers and
whether a dialled host is covered, so the two cannot disagree about spelling.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from cryptography import x509

from .errors import CertError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def parse_ip(name: str) -> IPAddress | None:
    """The IP ``name`` spells (``[::1]`` and ``fe80::1%eth0`` included, scope dropped)."""
    text = name.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def dns_name(name: str) -> str:
    """``name`` as a DNS SAN value; ``CertError`` saying why it cannot be one."""
    text = name[:-1] if name.endswith(".") else name
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise CertError(f"invalid host name {name!r}: not a valid international name") from exc
    text = text.lower()
    if not text or len(text) > 253:
        raise CertError(f"invalid host name {name!r}: must be 1 to 253 characters")
    for label in text.split("."):
        if not _LABEL.fullmatch(label):
            raise CertError(
                f"invalid host name {name!r}",
                "use letters, digits, '-' and '.', or an IP address (no spaces or wildcards)",
            )
    return text


def to_general_name(name: str) -> x509.GeneralName:
    """``IPAddress`` for an IP, else ``DNSName`` (normalized by ``dns_name``)."""
    ip = parse_ip(name)
    if ip is not None:
        return x509.IPAddress(ip)
    return x509.DNSName(dns_name(name))


def general_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """The SAN entries for ``names`` in order, skipping empty ones and duplicates."""
    out: list[x509.GeneralName] = []
    for name in names:
        if not name.strip():
            continue
        entry = to_general_name(name)
        if entry not in out:
            out.append(entry)
    return out


def cert_general_names(cert: x509.Certificate) -> list[x509.GeneralName]:
    """The DNS and IP entries of the certificate's SAN (none if it has no SAN)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):  # ValueError: malformed extensions
        return []
    return [n for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]


def covers(cert: x509.Certificate, host: str) -> bool:
    """Whether the certificate's SAN names ``host`` exactly (IPs by value, DNS names
    case-insensitively, no wildcards); an unusable host name is covered by nothing."""
    try:
        wanted = to_general_name(host)
    except CertError:
        return False
    for entry in cert_general_names(cert):
        if isinstance(entry, x509.DNSName) and isinstance(wanted, x509.DNSName):
            if entry.value.lower() == wanted.value:
                return True
        elif entry == wanted:
            return True
    return False
