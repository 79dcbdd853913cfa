"""The PKI library (certs/): issuance, CSR checks, fingerprints, key files, the daemon's
certs/ directory, the node's chain checks, and real TLS handshakes with what it issues."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import certs
from certs import authority, keys
from certs.authority import (
    BACKDATE_S,
    CA_VALIDITY_DAYS,
    SERVER_VALIDITY_DAYS,
    CertificateAuthority,
    create_authority,
    device_id_of,
    issue_device_certificate,
    issue_server_certificate,
    not_after_ms,
    not_before_ms,
)
from certs.csr import MAX_CSR_BYTES, build_csr, check_csr
from certs.errors import CertError
from certs.fingerprints import cert_sha256, cert_sha256_pem, same_fingerprint, spki_sha256
from certs.keys import (
    cert_der,
    cert_pem,
    generate_private_key,
    load_certificate,
    load_private_key,
    write_certificate,
    write_private_key,
)
from certs.server_files import (
    DaemonPKI,
    load_or_create,
    renew_server,
    san_names,
    server_needs_renewal,
)
from certs.verify import fetch_presented_chain, verify_device_certificate, verify_server_chain

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
NAMES = ["localhost", "127.0.0.1", "::1", "Palyra-Host.example"]


E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, cls: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture
def ca() -> CertificateAuthority:
    return create_authority(NOW_MS)


def _device(
    ca: CertificateAuthority, device_id: str = "dev_1", ttl_s: int = 3600
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = generate_private_key()
    return key, issue_device_certificate(ca, key.public_key(), device_id, NOW_MS, ttl_s)


def _server(ca: CertificateAuthority, names: list[str] = NAMES) -> x509.Certificate:
    return issue_server_certificate(ca, generate_private_key().public_key(), names, NOW_MS)


# --- errors --------------------------------------------------------------------------------


def test_cert_error_carries_message_and_hint() -> None:
    err = CertError("bad key", "chmod 600 k")
    assert isinstance(err, ValueError)
    assert (err.message, err.hint, str(err)) == ("bad key", "chmod 600 k", "bad key (chmod 600 k)")
    assert str(CertError("plain")) == "plain"


# --- the CA --------------------------------------------------------------------------------


def test_ca_is_a_ten_year_backdated_self_signed_leaf_only_ca(ca: CertificateAuthority) -> None:
    cert = ca.cert
    assert not_before_ms(cert) == NOW_MS - BACKDATE_S * 1000
    assert not_after_ms(cert) == NOW_MS + CA_VALIDITY_DAYS * DAY_MS
    assert CA_VALIDITY_DAYS == 3650
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=0)
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Palyra daemon CA"
    cert.verify_directly_issued_by(cert)  # self-signed: raises if not
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    assert ca.spki_sha256 == spki_sha256(ca.key)


def test_two_cas_differ_and_a_ca_from_an_existing_key_keeps_its_pin(
    ca: CertificateAuthority,
) -> None:
    other = create_authority(NOW_MS)
    assert other.spki_sha256 != ca.spki_sha256
    assert other.cert.serial_number != ca.cert.serial_number
    again = create_authority(NOW_MS + DAY_MS, key=ca.key)
    assert again.spki_sha256 == ca.spki_sha256
    assert cert_sha256(again.cert) != cert_sha256(ca.cert)
    # what the old certificate's key signed verifies under the new certificate
    server = _server(ca)
    server.verify_directly_issued_by(again.cert)


# --- server certificates -------------------------------------------------------------------


def test_server_certificate_names_ips_and_dns_names(ca: CertificateAuthority) -> None:
    cert = _server(ca, ["localhost", "", "127.0.0.1", "[::1]", "::1", "LOCALHOST", "h.example."])
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "h.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san_names(cert) == ["localhost", "127.0.0.1", "::1", "h.example"]
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    assert not_before_ms(cert) == NOW_MS - BACKDATE_S * 1000
    assert not_after_ms(cert) == NOW_MS + SERVER_VALIDITY_DAYS * DAY_MS
    cert.verify_directly_issued_by(ca.cert)


def test_server_certificate_with_only_ips_is_named_palyrad(ca: CertificateAuthority) -> None:
    cert = _server(ca, ["127.0.0.1", "fd00::5"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "palyrad"
    assert san_names(cert) == ["127.0.0.1", "fd00::5"]


@pytest.mark.parametrize(
    "bad", ["bad host", "*.example.com", "a..b", "-lead.example", "exa/mple", "x" * 64 + ".io"]
)
def test_server_certificate_refuses_invalid_names(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(CertError, match="invalid host name"):
        _server(ca, ["localhost", bad])


def test_server_certificate_needs_a_name(ca: CertificateAuthority) -> None:
    with pytest.raises(CertError, match="no host name"):
        _server(ca, ["", "  "])


# --- device certificates -------------------------------------------------------------------


def test_device_certificate_is_a_client_leaf_for_its_id(ca: CertificateAuthority) -> None:
    key, cert = _device(ca, "Dev-42_x", ttl_s=30 * 86_400)
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier("palyra:device:Dev-42_x")]
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Dev-42_x"
    assert not_before_ms(cert) == NOW_MS - BACKDATE_S * 1000
    assert not_after_ms(cert) == NOW_MS + 30 * DAY_MS
    assert spki_sha256(cert) == spki_sha256(key)
    assert device_id_of(cert) == "Dev-42_x"
    cert.verify_directly_issued_by(ca.cert)


def test_device_ttl_has_a_minimum(ca: CertificateAuthority) -> None:
    with pytest.raises(CertError, match="too short"):
        _device(ca, ttl_s=29)
    _, cert = _device(ca, ttl_s=30)
    assert not_after_ms(cert) == NOW_MS + 30_000


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "dev\n", "dev/1", "dév", "a:b"])
def test_device_certificate_refuses_invalid_ids(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(CertError, match="invalid device id"):
        _device(ca, bad)


def test_device_certificate_refuses_other_curves(ca: CertificateAuthority) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(CertError, match="P-256"):
        issue_device_certificate(ca, p384, "dev", NOW_MS, 3600)


def test_no_certificate_outlives_its_ca(ca: CertificateAuthority) -> None:
    ca_end = not_after_ms(ca.cert)
    near_end = ca_end - 10 * DAY_MS
    key = generate_private_key()
    cert = issue_device_certificate(ca, key.public_key(), "dev", near_end, 30 * 86_400)
    assert not_after_ms(cert) == ca_end
    server = issue_server_certificate(ca, key.public_key(), ["localhost"], near_end)
    assert not_after_ms(server) == ca_end
    with pytest.raises(CertError, match="CA certificate has expired"):
        issue_device_certificate(ca, key.public_key(), "dev", ca_end + 3600_000, 60)


def test_device_id_of_needs_exactly_one_device_uri(ca: CertificateAuthority) -> None:
    assert device_id_of(_server(ca)) is None

    def with_uris(*uris: str) -> x509.Certificate:
        key = generate_private_key()
        return (
            x509.CertificateBuilder()
            .subject_name(ca.cert.subject)
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
                critical=False,
            )
            .sign(ca.key, hashes.SHA256())
        )

    assert device_id_of(with_uris("https://x", "palyra:device:abc")) == "abc"
    assert device_id_of(with_uris("palyra:device:abc", "palyra:device:def")) is None
    assert device_id_of(with_uris("palyra:device:a/b")) is None
    assert device_id_of(with_uris("palyra:device:")) is None


# --- CSRs ----------------------------------------------------------------------------------


def test_check_csr_returns_the_key_of_a_good_csr() -> None:
    key = generate_private_key()
    der = build_csr(key, "my laptop " + "x" * 100)
    public = check_csr(der)
    assert spki_sha256(public) == spki_sha256(key)
    csr = x509.load_der_x509_csr(der)
    assert len(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value) == 64


def _csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, algorithm: hashes.SHA256 | hashes.SHA384
) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "n")]))
        .sign(key, algorithm)
        .public_bytes(serialization.Encoding.DER)
    )


def test_check_csr_refuses_another_curve() -> None:
    with pytest.raises(CertError, match="secp384r1"):
        check_csr(build_csr(ec.generate_private_key(ec.SECP384R1()), "n"))


def test_check_csr_refuses_rsa() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CertError, match="not an ECDSA key"):
        check_csr(_csr(key, hashes.SHA256()))


def test_check_csr_refuses_another_hash() -> None:
    with pytest.raises(CertError, match="SHA-256"):
        check_csr(_csr(generate_private_key(), hashes.SHA384()))


def test_check_csr_refuses_a_tampered_signature() -> None:
    der = bytearray(build_csr(generate_private_key(), "n"))
    der[-1] ^= 0x01  # the last byte is inside the signature's s value: still well-formed DER
    x509.load_der_x509_csr(bytes(der))  # parses
    with pytest.raises(CertError, match="signature is invalid"):
        check_csr(bytes(der))


def test_check_csr_refuses_a_csr_whose_key_was_swapped() -> None:
    """Signed by one key, carrying another: the proof of possession fails."""
    good = x509.load_der_x509_csr(build_csr(generate_private_key(), "n"))
    other = generate_private_key().public_key()
    spki_old = good.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_new = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = good.public_bytes(serialization.Encoding.DER).replace(spki_old, spki_new)
    with pytest.raises(CertError, match="signature is invalid"):
        check_csr(der)


def test_check_csr_refuses_oversized_and_garbage() -> None:
    with pytest.raises(CertError, match="too large"):
        check_csr(b"\x30" * (MAX_CSR_BYTES + 1))
    for garbage in (b"", b"not a csr", b"\x30\x03\x02\x01\x00", os.urandom(300)):
        with pytest.raises(CertError, match="not a valid DER"):
            check_csr(garbage)


# --- fingerprints --------------------------------------------------------------------------


def test_certificate_fingerprints_are_stable_and_pem_matches_der(ca: CertificateAuthority) -> None:
    cert = _server(ca)
    fp = cert_sha256(cert)
    assert fp == cert_sha256(cert) == cert_sha256(cert_der(cert))
    assert fp == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert len(fp) == 64 and fp == fp.lower()
    assert cert_sha256_pem(cert_pem(cert)) == fp
    assert cert_sha256_pem(cert_pem(cert).decode()) == fp
    assert cert_sha256_pem(cert_pem(cert) + cert_pem(ca.cert)) == fp  # the first of a chain
    assert cert_sha256(ca.cert) != fp
    for bad in (b"", b"-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n"):
        with pytest.raises(CertError):
            cert_sha256_pem(bad)


def test_spki_fingerprint_names_the_key(ca: CertificateAuthority) -> None:
    key, cert = _device(ca)
    assert spki_sha256(cert) == spki_sha256(key) == spki_sha256(key.public_key())
    assert spki_sha256(ca.cert) == spki_sha256(ca.key) != spki_sha256(cert)


def test_same_fingerprint_ignores_case_only() -> None:
    fp = hashlib.sha256(b"x").hexdigest()
    assert same_fingerprint(fp, fp.upper())
    assert not same_fingerprint(fp, fp[:-1] + ("0" if fp[-1] != "0" else "1"))
    assert not same_fingerprint(fp, fp[:-1])
    assert not same_fingerprint(fp, "é" * 64)


# --- key and certificate files -------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_key_is_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "new" / "deeper" / "k.key"
    write_private_key(path, key)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    assert spki_sha256(load_private_key(path)) == spki_sha256(key)
    assert os.listdir(path.parent) == ["k.key"]  # no temporary left behind


def test_modes_are_exact_whatever_the_umask(tmp_path: Path, ca: CertificateAuthority) -> None:
    """mkdir and open apply the umask: an odd one (here 0277) must not leave a 0500
    directory or a 0400 key behind."""
    old = os.umask(0o277)
    try:
        write_private_key(tmp_path / "d" / "k.key", generate_private_key())
        write_certificate(tmp_path / "e" / "c.crt", ca.cert)
    finally:
        os.umask(old)
    assert [_mode(tmp_path / p) for p in ("d", "d/k.key", "e", "e/c.crt")] == [
        0o700,
        0o600,
        0o700,
        0o644,
    ]


def test_write_private_key_never_replaces_a_key(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    first = generate_private_key()
    write_private_key(path, first)
    before = path.read_bytes()
    with pytest.raises(CertError, match="key exists"):
        write_private_key(path, generate_private_key())
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["k.key"]


def test_write_private_key_leaves_an_existing_directory_mode_alone(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o755)
    write_private_key(d / "k.key", generate_private_key())
    assert _mode(d) == 0o755


def test_load_private_key_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, generate_private_key())
    path.chmod(0o644)
    with pytest.raises(CertError) as info:
        load_private_key(path)
    assert info.value.hint == f"chmod 600 {path}" and str(path) in info.value.message
    path.chmod(0o600)
    load_private_key(path)


def test_load_private_key_names_the_file_and_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    with pytest.raises(CertError, match="cannot read"):
        load_private_key(missing)
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"hello")
    junk.chmod(0o600)
    with pytest.raises(CertError, match="does not hold a PEM private key"):
        load_private_key(junk)
    p384 = tmp_path / "p384.key"
    p384.write_bytes(keys.private_key_pem(ec.generate_private_key(ec.SECP384R1())))
    p384.chmod(0o600)
    with pytest.raises(CertError, match="not an ECDSA P-256 key") as info:
        load_private_key(p384)
    assert str(p384) in info.value.message


def test_write_certificate_replaces_atomically_with_mode_0644(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    path = tmp_path / "c" / "server.crt"
    first, second = _server(ca), _server(ca)
    write_certificate(path, first)
    assert _mode(path) == 0o644 and _mode(path.parent) == 0o700
    write_certificate(path, cert_pem(second))
    assert cert_sha256(load_certificate(path)) == cert_sha256(second)
    assert os.listdir(path.parent) == ["server.crt"]
    with pytest.raises(CertError):
        write_certificate(path, b"not pem")
    path.write_bytes(b"garbage")
    with pytest.raises(CertError, match=str(path)):
        load_certificate(path)


# --- the daemon's certs/ directory ---------------------------------------------------------

FILES = ("ca.key", "ca.crt", "server.key", "server.crt")


def _stats(d: Path) -> dict[str, tuple[int, int]]:
    return {n: ((d / n).stat().st_ino, (d / n).stat().st_mtime_ns) for n in FILES}


def test_load_or_create_creates_the_four_files(tmp_path: Path) -> None:
    d = tmp_path / "home" / "certs"
    pki = load_or_create(d, NAMES, NOW_MS)
    assert sorted(os.listdir(d)) == sorted(FILES)
    assert _mode(d) == 0o700
    assert [_mode(d / n) for n in FILES] == [0o600, 0o644, 0o600, 0o644]
    assert cert_sha256(load_certificate(d / "ca.crt")) == cert_sha256(pki.ca.cert)
    assert spki_sha256(load_private_key(d / "server.key")) == spki_sha256(pki.server_key)
    assert pki.server_cert.issuer == pki.ca.cert.subject
    assert san_names(pki.server_cert) == ["localhost", "127.0.0.1", "::1", "palyra-host.example"]
    assert pki.server_chain_pem() == cert_pem(pki.server_cert) + pki.ca_pem()
    assert serialization.load_pem_private_key(pki.server_key_pem(), None) is not None


def test_load_or_create_reuses_everything_it_made(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    first = load_or_create(d, NAMES, NOW_MS)
    before = _stats(d)
    time.sleep(0.01)
    second = load_or_create(d, NAMES, NOW_MS + DAY_MS)
    assert second.ca.spki_sha256 == first.ca.spki_sha256
    assert cert_sha256(second.ca.cert) == cert_sha256(first.ca.cert)
    assert cert_sha256(second.server_cert) == cert_sha256(first.server_cert)
    assert _stats(d) == before


def test_a_missing_ca_certificate_is_rebuilt_from_the_key(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    first = load_or_create(d, NAMES, NOW_MS)
    server_before = _stats(d)["server.crt"]
    (d / "ca.crt").unlink()
    second = load_or_create(d, NAMES, NOW_MS + 1000)
    assert (d / "ca.crt").exists()
    assert second.ca.spki_sha256 == first.ca.spki_sha256
    assert cert_sha256(second.ca.cert) != cert_sha256(first.ca.cert)
    # same key and name: the server certificate still chains, so it is kept
    assert _stats(d)["server.crt"] == server_before
    second.server_cert.verify_directly_issued_by(second.ca.cert)


def test_a_missing_ca_key_is_an_error_not_a_new_ca(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    load_or_create(d, NAMES, NOW_MS)
    (d / "ca.key").unlink()
    with pytest.raises(CertError, match="CA key missing") as info:
        load_or_create(d, NAMES, NOW_MS)
    assert "pair again" in info.value.hint
    assert not (d / "ca.key").exists()


def test_a_ca_certificate_of_another_key_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    load_or_create(d, NAMES, NOW_MS)
    write_certificate(d / "ca.crt", create_authority(NOW_MS).cert)
    with pytest.raises(CertError, match="does not belong to the CA key"):
        load_or_create(d, NAMES, NOW_MS)


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    d.mkdir()
    d.chmod(0o770)
    with pytest.raises(CertError) as info:
        load_or_create(d, NAMES, NOW_MS)
    assert info.value.hint == f"chmod 700 {d}"
    assert os.listdir(d) == []
    d.chmod(0o750)  # readable by the group is allowed: the keys themselves are 0600
    load_or_create(d, NAMES, NOW_MS)


def test_a_readable_key_in_certs_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    load_or_create(d, NAMES, NOW_MS)
    (d / "server.key").chmod(0o640)
    with pytest.raises(CertError, match="chmod 600"):
        load_or_create(d, NAMES, NOW_MS)


def test_the_loser_of_a_creation_race_uses_the_winners_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A competitor links its key in between our check and our link: ours is dropped."""
    d = tmp_path / "certs"
    winners: dict[str, ec.EllipticCurvePrivateKey] = {}
    real_generate = generate_private_key

    def generate_after_a_competitor() -> ec.EllipticCurvePrivateKey:
        name = "ca.key" if "ca.key" not in winners else "server.key"
        winners[name] = real_generate()
        write_private_key(d / name, winners[name])
        return real_generate()

    monkeypatch.setattr("certs.server_files.generate_private_key", generate_after_a_competitor)
    pki = load_or_create(d, NAMES, NOW_MS)
    assert pki.ca.spki_sha256 == spki_sha256(winners["ca.key"])
    assert spki_sha256(pki.server_key) == spki_sha256(winners["server.key"])


def test_concurrent_creators_agree_on_one_ca(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    results: list[DaemonPKI] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        barrier.wait()
        try:
            results.append(load_or_create(d, NAMES, NOW_MS))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(results) == 6
    on_disk = load_or_create(d, NAMES, NOW_MS)
    assert {r.ca.spki_sha256 for r in results} == {on_disk.ca.spki_sha256}
    assert {spki_sha256(r.server_key) for r in results} == {spki_sha256(on_disk.server_key)}
    assert not [n for n in os.listdir(d) if n.startswith(".")]


# --- renewal -------------------------------------------------------------------------------


def test_server_certificate_renewal_at_a_third_of_its_life(tmp_path: Path) -> None:
    pki = load_or_create(tmp_path / "certs", NAMES, NOW_MS)
    assert not server_needs_renewal(pki, NAMES, NOW_MS)
    assert not server_needs_renewal(pki.server_cert, ["LOCALHOST", "[::1]"], NOW_MS + 59 * DAY_MS)
    assert server_needs_renewal(pki, NAMES, NOW_MS + 61 * DAY_MS)  # 29 of 90 days left
    assert server_needs_renewal(pki, NAMES, NOW_MS + 91 * DAY_MS)  # expired
    assert server_needs_renewal(pki, NAMES, NOW_MS - 10 * 60_000)  # not yet valid
    assert server_needs_renewal(pki, [*NAMES, "nas.lan"], NOW_MS)
    with pytest.raises(CertError):
        server_needs_renewal(pki, ["bad name"], NOW_MS)

    later = NOW_MS + 61 * DAY_MS
    renewed = renew_server(pki, ["nas.lan", "192.168.1.9"], later)
    assert spki_sha256(renewed.server_key) == spki_sha256(pki.server_key)
    assert spki_sha256(renewed.server_cert) == spki_sha256(pki.server_key)
    assert san_names(renewed.server_cert) == [*san_names(pki.server_cert), "nas.lan", "192.168.1.9"]
    assert not_after_ms(renewed.server_cert) == later + SERVER_VALIDITY_DAYS * DAY_MS
    assert not server_needs_renewal(renewed, [*NAMES, "nas.lan"], later)
    on_disk = load_certificate(tmp_path / "certs" / "server.crt")
    assert cert_sha256(on_disk) == cert_sha256(renewed.server_cert)


def test_load_or_create_renews_a_stale_or_short_server_certificate(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    first = load_or_create(d, NAMES, NOW_MS)
    key_before = _stats(d)["server.key"]
    wider = load_or_create(d, [*NAMES, "10.0.0.7"], NOW_MS)
    assert "10.0.0.7" in san_names(wider.server_cert)
    later = load_or_create(d, ["localhost"], NOW_MS + 70 * DAY_MS)
    assert not_after_ms(later.server_cert) == NOW_MS + 160 * DAY_MS
    assert set(san_names(later.server_cert)) == {*san_names(first.server_cert), "10.0.0.7"}
    assert _stats(d)["server.key"] == key_before
    assert spki_sha256(later.server_cert) == spki_sha256(first.server_key)


def test_a_server_certificate_from_another_ca_is_reissued(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    pki = load_or_create(d, NAMES, NOW_MS)
    stranger = issue_server_certificate(
        create_authority(NOW_MS), pki.server_key.public_key(), [*NAMES, "evil.example"], NOW_MS
    )
    write_certificate(d / "server.crt", stranger)
    again = load_or_create(d, NAMES, NOW_MS)
    again.server_cert.verify_directly_issued_by(again.ca.cert)
    assert "evil.example" not in san_names(again.server_cert)


def test_an_ending_ca_certificate_is_reissued_for_the_same_key(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    pki = load_or_create(d, NAMES, NOW_MS)
    near_end = not_after_ms(pki.ca.cert) - 10 * DAY_MS
    again = load_or_create(d, NAMES, near_end)
    assert again.ca.spki_sha256 == pki.ca.spki_sha256
    assert not_after_ms(again.ca.cert) == near_end + CA_VALIDITY_DAYS * DAY_MS
    assert not_after_ms(again.server_cert) == near_end + SERVER_VALIDITY_DAYS * DAY_MS


# --- the node's checks ---------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> DaemonPKI:
    return load_or_create(tmp_path / "certs", NAMES, NOW_MS)


def _chain(pki: DaemonPKI) -> list[bytes]:
    return [cert_der(pki.server_cert), cert_der(pki.ca.cert)]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LocalHost", "::1", "[::1]"])
def test_verify_server_chain_accepts_the_daemon(pki: DaemonPKI, host: str) -> None:
    got = verify_server_chain(_chain(pki), host, NOW_MS, pki.ca.spki_sha256.upper())
    assert cert_sha256(got) == cert_sha256(pki.ca.cert)
    unpinned = verify_server_chain(_chain(pki), host, NOW_MS)
    assert cert_sha256(unpinned) == cert_sha256(pki.ca.cert)


def test_verify_server_chain_refuses_another_pin(pki: DaemonPKI) -> None:
    with pytest.raises(CertError, match="does not chain to the pinned CA"):
        verify_server_chain(_chain(pki), "localhost", NOW_MS, create_authority(NOW_MS).spki_sha256)


def test_verify_server_chain_checks_the_leaf_signature(pki: DaemonPKI) -> None:
    """An impostor appends the real CA (public) to its own leaf: the pin matches, the
    signature does not."""
    impostor_ca = create_authority(NOW_MS, common_name="Palyra daemon CA")
    leaf = issue_server_certificate(impostor_ca, generate_private_key().public_key(), NAMES, NOW_MS)
    chain = [cert_der(leaf), cert_der(pki.ca.cert)]
    assert leaf.issuer == pki.ca.cert.subject  # same name: only the signature tells them apart
    with pytest.raises(CertError, match="not signed by the pinned CA"):
        verify_server_chain(chain, "localhost", NOW_MS, pki.ca.spki_sha256)


def test_verify_server_chain_refuses_a_device_certificate(pki: DaemonPKI) -> None:
    """A device certificate chains to the same CA: only the EKU says it is no server."""
    _, device = _device(pki.ca)
    chain = [cert_der(device), cert_der(pki.ca.cert)]
    with pytest.raises(CertError, match="serverAuth"):
        verify_server_chain(chain, "localhost", NOW_MS, pki.ca.spki_sha256)


def test_verify_server_chain_refuses_a_host_it_does_not_name(pki: DaemonPKI) -> None:
    for host in ("evil.example", "127.0.0.2", "host.example", "*.example", "local host"):
        with pytest.raises(CertError, match="does not name"):
            verify_server_chain(_chain(pki), host, NOW_MS, pki.ca.spki_sha256)


def test_verify_server_chain_refuses_an_expired_or_future_leaf(pki: DaemonPKI) -> None:
    after = not_after_ms(pki.server_cert) + 1000
    with pytest.raises(CertError, match="has expired"):
        verify_server_chain(_chain(pki), "localhost", after, pki.ca.spki_sha256)
    before = not_before_ms(pki.server_cert) - 1000
    with pytest.raises(CertError, match="not valid yet"):
        verify_server_chain(_chain(pki), "localhost", before, pki.ca.spki_sha256)


def test_verify_server_chain_refuses_the_ca_as_leaf_and_junk(pki: DaemonPKI) -> None:
    with pytest.raises(CertError, match="CA certificate as its own"):
        verify_server_chain([cert_der(pki.ca.cert)], "localhost", NOW_MS, pki.ca.spki_sha256)
    with pytest.raises(CertError, match="no certificate"):
        verify_server_chain([], "localhost", NOW_MS, pki.ca.spki_sha256)
    with pytest.raises(CertError, match="unreadable"):
        verify_server_chain([b"junk"], "localhost", NOW_MS, pki.ca.spki_sha256)
    with pytest.raises(CertError, match="no CA certificate"):
        verify_server_chain([cert_der(pki.server_cert)], "localhost", NOW_MS)


def test_verify_device_certificate(pki: DaemonPKI) -> None:
    key, cert = _device(pki.ca, "node-7")
    assert verify_device_certificate(cert, pki.ca.cert, key.public_key(), NOW_MS) == "node-7"
    assert verify_device_certificate(cert_pem(cert), pki.ca.cert, key, NOW_MS) == "node-7"
    assert verify_device_certificate(cert_der(cert), pki.ca.cert, key, NOW_MS) == "node-7"
    with pytest.raises(CertError, match="another key"):
        verify_device_certificate(cert, pki.ca.cert, generate_private_key(), NOW_MS)
    with pytest.raises(CertError, match="not signed"):
        verify_device_certificate(cert, create_authority(NOW_MS).cert, key, NOW_MS)
    with pytest.raises(CertError, match="expired"):
        verify_device_certificate(cert, pki.ca.cert, key, NOW_MS + 2 * 3600_000)
    with pytest.raises(CertError, match="clientAuth"):
        verify_device_certificate(pki.server_cert, pki.ca.cert, pki.server_key, NOW_MS)


# --- real TLS ------------------------------------------------------------------------------


@dataclass
class _Served:
    port: int
    peer_der: bytes | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


@contextmanager
def _tls_server(context: ssl.SSLContext) -> Iterator[_Served]:
    """Accept one connection on 127.0.0.1, handshake (``error`` if it fails), say b"ok",
    wait for the client to go."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    served = _Served(port=listener.getsockname()[1])

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(5)
            with context.wrap_socket(conn, server_side=True) as tls:  # the handshake
                served.peer_der = tls.getpeercert(binary_form=True)
                # after it, a client may hang up without a word (fetch_presented_chain does)
                with suppress(OSError):
                    tls.sendall(b"ok")
                    tls.recv(1)  # until the client closes
        except OSError as exc:  # ssl.SSLError included: the handshake failed
            served.error = exc
        finally:
            served.done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.done.wait(5)
        listener.close()
        thread.join(5)


def _files(
    tmp_path: Path, name: str, chain: bytes, key: ec.EllipticCurvePrivateKey
) -> tuple[str, str]:
    crt, kf = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    crt.write_bytes(chain)
    write_private_key(kf, key)
    return str(crt), str(kf)


def _server_context(tmp_path: Path, pki: DaemonPKI, *, require_client: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_files(tmp_path, "server", pki.server_chain_pem(), pki.server_key))
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pki.ca_pem().decode())
    return context


@pytest.fixture
def live_pki(tmp_path: Path) -> DaemonPKI:
    """A PKI for the real clock: OpenSSL checks validity against it."""
    return load_or_create(tmp_path / "certs", NAMES, int(time.time() * 1000))


def test_the_presented_chain_verifies_with_the_pin(tmp_path: Path, live_pki: DaemonPKI) -> None:
    with _tls_server(_server_context(tmp_path, live_pki, require_client=False)) as served:
        chain = fetch_presented_chain("127.0.0.1", served.port, 5.0)
    assert served.error is None
    assert chain == [cert_der(live_pki.server_cert), cert_der(live_pki.ca.cert)]
    now = int(time.time() * 1000)
    ca = verify_server_chain(chain, "127.0.0.1", now, live_pki.ca.spki_sha256)
    assert spki_sha256(ca) == live_pki.ca.spki_sha256
    with pytest.raises(CertError, match="pinned CA"):
        verify_server_chain(chain, "127.0.0.1", now, create_authority(now).spki_sha256)


def _client_context(
    tmp_path: Path, pki: DaemonPKI, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> ssl.SSLContext:
    """The node's real channel: trusts only the daemon CA, checks the host name, presents its
    device certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=pki.ca_pem().decode())
    context.load_cert_chain(*_files(tmp_path, "device", cert_pem(cert), key))
    return context


def test_mutual_tls_with_a_device_certificate(tmp_path: Path, live_pki: DaemonPKI) -> None:
    now = int(time.time() * 1000)
    key = generate_private_key()
    cert = issue_device_certificate(live_pki.ca, key.public_key(), "dev1", now, 3600)
    client = _client_context(tmp_path, live_pki, key, cert)
    with (
        _tls_server(_server_context(tmp_path, live_pki, require_client=True)) as served,
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock,
        client.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.recv(2) == b"ok"
    assert served.error is None
    assert served.peer_der is not None
    assert cert_sha256(served.peer_der) == cert_sha256(cert)
    assert device_id_of(x509.load_der_x509_certificate(served.peer_der)) == "dev1"


def test_mutual_tls_refuses_a_certificate_from_another_ca(
    tmp_path: Path, live_pki: DaemonPKI
) -> None:
    now = int(time.time() * 1000)
    stranger = create_authority(now)
    key = generate_private_key()
    cert = issue_device_certificate(stranger, key.public_key(), "dev1", now, 3600)
    client = _client_context(tmp_path, live_pki, key, cert)
    got = b""
    with _tls_server(_server_context(tmp_path, live_pki, require_client=True)) as served:
        with (
            socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock,
            # TLS 1.3: the client may finish its handshake before the server refuses its
            # certificate, so the refusal shows up on read (or on the handshake)
            suppress(ssl.SSLError, ConnectionError),
            client.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
        ):
            got = tls.recv(2)
        served.done.wait(5)
    assert got != b"ok"
    assert isinstance(served.error, ssl.SSLError)
    assert served.peer_der is None


def test_public_names_are_re_exported() -> None:
    for name in certs.__all__:
        assert getattr(certs, name) is not None
    assert certs.load_or_create is load_or_create
    assert authority.MIN_DEVICE_TTL_S == 30
