"""The node's home (SPEC §4.4): its key, certificate, pinned CA and the daemon's address.

``--home``, else ``$PALYRA_NODE_HOME``, else ``~/.palyra-node``; created 0700.

Layout::

    <home>/identity            -> identity.<random>   (a symlink: the one commit point)
    <home>/identity.<random>/  0700
        device.key             0600, PKCS#8 PEM (never leaves the device)
        device.crt             the device certificate the daemon issued
        ca.crt                 the daemon's CA, pinned at pairing
        node.json              {device_id, name, host, node_port, tls_name, paired_at_ms}
    <home>/lock                flock: pairing and renewal serialise here

Why a symlink to a directory: an identity is four files that must match (a key with its
certificate, a certificate with its CA and address). Replacing them one by one could leave,
after a crash, a key next to another key's certificate: a node that can never connect again.
So a new identity (pairing again, or a renewed certificate) is written complete into a fresh
directory, fsynced, and made current by renaming one symlink over the old one (``rename`` is
atomic); a crash leaves either the old identity or the new one, plus at worst an orphaned
directory that the next store removes. A reader resolves the link once and reads all four
files from that one directory, so it never mixes two identities either.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.authority import not_after_ms, not_before_ms
from certs.errors import CertError
from certs.fingerprints import cert_sha256, spki_sha256
from certs.keys import cert_pem, load_certificate, load_private_key, private_key_pem
from node.errors import PAIR_HINT, NodeError, invalid, not_paired
from palyra_proto.pairing import format_address
from routines.errors import storage_error

ENV_HOME = "PALYRA_NODE_HOME"
DEFAULT_HOME = "~/.palyra-node"
LINK = "identity"
KEY_FILE = "device.key"
CERT_FILE = "device.crt"
CA_FILE = "ca.crt"
INFO_FILE = "node.json"
_DIR_NAME = re.compile(r"identity\.[0-9a-f]{16}")
_LOAD_ATTEMPTS = 3  # a concurrent store may delete the directory a reader just resolved


def resolve_home(explicit: str | None) -> Path:
    """``--home``, else ``$PALYRA_NODE_HOME``, else ``~/.palyra-node``. A blank value is exit 2,
    not "not given": falling back to the default would act on another device's identity."""
    if explicit is not None:
        if not explicit.strip():
            raise invalid("--home is empty", "give a directory, e.g. --home ~/.palyra-node")
        raw = explicit
    else:
        env = os.environ.get(ENV_HOME)
        if env is not None and not env.strip():
            raise invalid(f"${ENV_HOME} is empty", "set it to a directory, or unset it")
        raw = env or DEFAULT_HOME
    return Path(raw).expanduser().absolute()


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What node.json holds: who this device is and where its daemon listens."""

    device_id: str
    name: str
    host: str
    node_port: int
    tls_name: str | None  # the server name to verify when ``host`` is not in its SAN
    paired_at_ms: int

    @property
    def address(self) -> str:
        return format_address(self.host, self.node_port)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "name": self.name,
            "host": self.host,
            "node_port": self.node_port,
            "tls_name": self.tls_name,
            "paired_at_ms": self.paired_at_ms,
        }

    @classmethod
    def from_json(cls, data: Any) -> NodeInfo:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        tls_name = data.get("tls_name")
        info = cls(
            device_id=data["device_id"],
            name=data["name"],
            host=data["host"],
            node_port=data["node_port"],
            tls_name=tls_name or None,
            paired_at_ms=data["paired_at_ms"],
        )
        if not (
            isinstance(info.device_id, str)
            and isinstance(info.name, str)
            and isinstance(info.host, str)
            and isinstance(info.node_port, int)
            and 1 <= info.node_port <= 65535
            and (info.tls_name is None or isinstance(info.tls_name, str))
            and isinstance(info.paired_at_ms, int)
        ):
            raise ValueError("a field has the wrong type")
        return info


@dataclass(frozen=True, slots=True)
class Identity:
    """A paired device: its key, its certificate, the daemon's CA and where to reach it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    ca: x509.Certificate
    info: NodeInfo

    def __repr__(self) -> str:  # the key is a secret
        return f"Identity(device_id={self.info.device_id!r}, cert={self.cert_sha256[:16]})"

    @property
    def cert_sha256(self) -> str:
        return cert_sha256(self.cert)

    @property
    def not_before_ms(self) -> int:
        return not_before_ms(self.cert)

    @property
    def not_after_ms(self) -> int:
        return not_after_ms(self.cert)

    def with_certificate(self, cert: x509.Certificate) -> Identity:
        return replace(self, cert=cert)


class NodeHome:
    """The node's home directory; every path and every identity read or write goes here."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def at(cls, explicit: str | None = None) -> NodeHome:
        return cls(resolve_home(explicit))

    def __repr__(self) -> str:
        return f"NodeHome({str(self.root)!r})"

    @property
    def link(self) -> Path:
        return self.root / LINK

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    # ---------------------------------------------------------------------------------
    # the directory

    def ensure(self) -> NodeHome:
        """Create the home 0700 if missing; refuse one that others may write to (they could
        swap the identity link and make this device talk to their daemon)."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(self.root)
        except OSError as exc:
            raise storage_error(exc, "cannot create the node home") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise NodeError(f"the node home {self.root} is not a directory", "use another --home")
        self._check_private(st)
        return self

    def _check_private(self, st: os.stat_result, path: Path | None = None) -> None:
        where = self.root if path is None else path
        if st.st_mode & 0o022:
            raise NodeError(
                f"the node home {where} is writable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o})",
                f"chmod 700 {where}",
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the home's lock: two commands renewing at once would present a superseded
        certificate, and the daemon revokes a device that does that (SPEC §5)."""
        self.ensure()
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise storage_error(exc, "cannot open the node home's lock") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # ---------------------------------------------------------------------------------
    # reading

    def load_identity(self) -> Identity | None:
        """The current identity, or None when this home was never paired. ``NodeError`` when
        it is there but cannot be used (a damaged or too-open key, a mismatched pair)."""
        for attempt in range(_LOAD_ATTEMPTS):
            directory = self._current_dir()
            if directory is None:
                return None
            try:
                # Every command, not only pairing: in a home others can write, anyone could
                # swap the identity link and point this device at their own daemon.
                self._check_private(os.stat(self.root))
                self._check_private(os.stat(directory), directory)
                return self._read_dir(directory)
            except FileNotFoundError:
                if attempt == _LOAD_ATTEMPTS - 1:
                    raise NodeError(
                        f"the identity in {self.root} is incomplete", PAIR_HINT
                    ) from None
        return None  # pragma: no cover - the loop returns or raises

    def require_identity(self) -> Identity:
        identity = self.load_identity()
        if identity is None:
            raise not_paired()
        return identity

    def _current_dir(self) -> Path | None:
        try:
            target = os.readlink(self.link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not a symlink
                raise NodeError(
                    f"{self.link} is not what palyra-node wrote (not a symlink)",
                    f"move it aside, then {PAIR_HINT}",
                ) from exc
            raise storage_error(exc, "cannot read the node identity") from exc
        if not _DIR_NAME.fullmatch(target):
            raise NodeError(
                f"{self.link} points outside the node home ({target!r})",
                f"move it aside, then {PAIR_HINT}",
            )
        return self.root / target

    def _read_dir(self, directory: Path) -> Identity:
        for name in (KEY_FILE, CERT_FILE, CA_FILE, INFO_FILE):
            if not (directory / name).exists():
                raise FileNotFoundError(errno.ENOENT, "missing", str(directory / name))
        try:
            key = load_private_key(directory / KEY_FILE)
            cert = load_certificate(directory / CERT_FILE)
            ca = load_certificate(directory / CA_FILE)
        except CertError as exc:
            if not (directory / KEY_FILE).exists():
                raise FileNotFoundError(errno.ENOENT, "missing", str(directory)) from exc
            raise NodeError(exc.message, exc.hint or PAIR_HINT) from exc
        try:
            info = NodeInfo.from_json(orjson.loads((directory / INFO_FILE).read_bytes()))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise storage_error(exc, "cannot read the node identity") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(f"{directory / INFO_FILE} is damaged ({exc})", PAIR_HINT) from exc
        if spki_sha256(key) != spki_sha256(cert):
            raise NodeError(f"the key and certificate in {directory} do not match", PAIR_HINT)
        return Identity(key=key, cert=cert, ca=ca, info=info)

    # ---------------------------------------------------------------------------------
    # writing

    def store_identity(self, identity: Identity) -> None:
        """Make ``identity`` the current one, atomically (see the module docstring). Callers
        that replace a live identity (renewal) hold ``locked()``."""
        self.ensure()
        directory = self.root / f"identity.{secrets.token_hex(8)}"
        try:
            os.mkdir(directory, 0o700)
            _write_new(directory / KEY_FILE, private_key_pem(identity.key), 0o600)
            _write_new(directory / CERT_FILE, cert_pem(identity.cert), 0o644)
            _write_new(directory / CA_FILE, cert_pem(identity.ca), 0o644)
            info = orjson.dumps(identity.info.to_json(), option=orjson.OPT_INDENT_2) + b"\n"
            _write_new(directory / INFO_FILE, info, 0o644)
            _fsync_dir(directory)
            tmp_link = self.root / f".{directory.name}.link"
            os.symlink(directory.name, tmp_link)
            os.replace(tmp_link, self.link)
            _fsync_dir(self.root)
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise storage_error(exc, "cannot store the node identity") from exc
        self._remove_stale(keep=directory.name)

    def _remove_stale(self, keep: str) -> None:
        """Directories and temporary links of earlier identities (or of a crashed store)."""
        for entry in self.root.iterdir():
            name = entry.name
            stale_dir = _DIR_NAME.fullmatch(name) and name != keep
            stale_link = name.startswith(".identity.") and name.endswith(".link")
            if stale_link:
                with contextlib.suppress(OSError):
                    entry.unlink()
            elif stale_dir and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never over an existing file) with ``mode`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask said
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
