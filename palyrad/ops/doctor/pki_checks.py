"""Checks of pairing's trust: the daemon's CA and server certificate with their key files
(``pki``), and the paired devices, pairing requests and windows (``devices``).

The certificates are judged as the daemon will treat them (``certs.server_files``): a
server certificate with a third of its life left is renewed by the daemon itself, and a CA
certificate within ``CA_RENEW_BEFORE_MS`` of its end is reissued from the same key at the
next start — neither is the operator's to fix, unless it has already expired.
``cryptography`` is imported only when there is a ``certs/`` to read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from palyrad.ops.doctor.check import DoctorCheck, duration, listed, plural, without_journal
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, fail, ok, warn
from palyrad.runtime.home_safety import UnsafeHome, chmod_private_file

DAY_MS = 86_400_000
CA_WARN_MS = 90 * DAY_MS
DEVICE_WARN_MS = 3 * DAY_MS
GUESSING_LOOKBACK_MS = 7 * DAY_MS  # windows closed by failed attempts this recently
CA_KEY, CA_CERT, SERVER_KEY, SERVER_CERT = "ca.key", "ca.crt", "server.key", "server.crt"


def private_key_files(certs_dir: Path) -> list[Path]:
    """The private keys in ``certs_dir``: ``*.key``, and any other PEM holding one."""
    found = []
    try:
        entries = sorted(os.scandir(certs_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not entry.is_file(follow_symlinks=False):
            continue
        if entry.name.endswith(".key"):
            found.append(Path(entry.path))
        elif entry.name.endswith(".pem"):
            try:
                with open(entry.path, "rb") as f:
                    head = f.read(4096)
            except OSError:
                continue
            if b"PRIVATE KEY-----" in head:
                found.append(Path(entry.path))
    return found


def _open_keys(certs_dir: Path) -> list[tuple[Path, int]]:
    """Private key files others may read or write, with their modes."""
    out = []
    for path in private_key_files(certs_dir):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        if mode & 0o077:
            out.append((path, mode))
    return out


class PkiCheck(DoctorCheck):
    """The CA and server certificate exist together with their keys, are valid, and the
    keys are 0600 (node_rpc refuses a key others can read)."""

    check_id = "pki"

    def run(self, ctx: DoctorContext) -> CheckResult:
        from certs.checks import issued_by, not_after_ms, not_before_ms
        from certs.errors import CertError
        from certs.keys import load_certificate
        from certs.server_files import lost_ca_key

        certs_dir = ctx.home.certs_dir
        names = (CA_KEY, CA_CERT, SERVER_KEY, SERVER_CERT)
        present = {n for n in names if os.path.lexists(certs_dir / n)}
        if not present:
            return ok(self.check_id, "not configured (created at the first daemon start)")
        lost = lost_ca_key(certs_dir)
        if lost is not None:
            return fail(self.check_id, str(lost), lost.hint or "restore the CA key")
        now = ctx.now_ms
        fails: list[str] = []
        warns: list[str] = []
        hints: list[str] = []
        repairable = False
        for path, mode in _open_keys(certs_dir):
            fails.append(f"the private key {path} can be read by other users (mode {mode:04o})")
            hints.append(f"chmod 600 {path} (or: palyra doctor --repair)")
            repairable = True
        ca = None
        if CA_CERT in present:
            try:
                ca = load_certificate(certs_dir / CA_CERT)
            except CertError as exc:
                fails.append(str(exc))
                hints.append(exc.hint or f"move {certs_dir / CA_CERT} aside")
        if ca is not None:
            left = not_after_ms(ca) - now
            if left < 0:
                fails.append(f"the CA certificate expired {duration(-left)} ago")
                hints.append("palyra daemon restart (it reissues the CA certificate from its key)")
            elif left < CA_WARN_MS:
                warns.append(f"the CA certificate expires in {duration(left)}")
                hints.append("palyra daemon restart (it reissues it from the same key)")
        elif CA_CERT not in present:
            warns.append("the CA certificate is missing (rebuilt from ca.key at the next start)")
            hints.append("palyra daemon restart")
        server_note = ""
        if SERVER_CERT in present:
            try:
                server = load_certificate(certs_dir / SERVER_CERT)
            except CertError as exc:
                warns.append(f"{exc} (issued again at the next start)")
                hints.append("palyra daemon restart")
            else:
                start, end = not_before_ms(server), not_after_ms(server)
                if end < now:
                    fails.append(f"the server certificate expired {duration(now - end)} ago")
                    hints.append("palyra daemon restart (it issues a new one)")
                elif ca is not None and not issued_by(server, ca):
                    warns.append("the server certificate was not issued by this CA")
                    hints.append("palyra daemon restart (it issues a new one)")
                elif 3 * (end - now) < end - start:
                    server_note = "; server certificate due for renewal (palyrad renews it)"
                else:
                    server_note = f"; server certificate valid for {duration(end - now)}"
        if fails:
            return fail(
                self.check_id,
                listed(fails, 2),
                "; ".join(dict.fromkeys(hints)),
                repairable=repairable,
                details=fails + warns,
            )
        if warns:
            return warn(self.check_id, listed(warns, 2), "; ".join(dict.fromkeys(hints)))
        ca_left = f"CA valid for {duration(not_after_ms(ca) - now)}" if ca is not None else "CA"
        return ok(self.check_id, f"{ca_left}{server_note}; keys 0600")

    def repair(self, ctx: DoctorContext) -> list[str]:
        """chmod 600 every private key others can read or write."""
        done = []
        for path, _mode in _open_keys(ctx.home.certs_dir):
            try:
                chmod_private_file(path)  # on the checked fd, never through a symlink
            except UnsafeHome as exc:
                done.append(str(exc))
                continue
            done.append(f"chmod 600 {path}")
        return done


class DevicesCheck(DoctorCheck):
    """Paired devices whose certificate expired or soon will (a node renews at 2/3 of its
    lifetime, so expiring means it has not connected), pending pairing requests, and
    pairing windows closed by too many failed attempts (someone guessing the PIN)."""

    check_id = "devices"

    def run(self, ctx: DoctorContext) -> CheckResult:
        journal = ctx.journal
        if journal is None:
            return without_journal(ctx, self.check_id)
        now = ctx.now_ms
        active = [d for d in journal.devices.all() if d.state == "active"]
        problems: list[str] = []
        hints: list[str] = []
        expired = [d for d in active if d.cert_expires_ms <= now]
        expiring = [d for d in active if now < d.cert_expires_ms <= now + DEVICE_WARN_MS]
        if expired:
            names = [f"{d.name} ({d.device_id})" for d in expired]
            problems.append(
                f"{plural(len(expired), 'device')} with an expired certificate: {listed(names)}"
            )
            hints.append(
                f"pair it again (palyra node pair-code), or remove it: palyra node remove"
                f" {expired[0].device_id}"
            )
        if expiring:
            names = [
                f"{d.name} ({d.device_id}, in {duration(d.cert_expires_ms - now)})"
                for d in expiring
            ]
            problems.append(
                f"{plural(len(expiring), 'device')} whose certificate expires soon and has not"
                f" renewed it (not connected): {listed(names)}"
            )
            hints.append("run any palyra-node command on that device (it renews)")
        requests = journal.pairing.pending_requests(now)
        if requests:
            ids = [f"{r.request_id} ({r.device_name})" for r in requests]
            problems.append(f"{plural(len(requests), 'pairing request')} waiting: {listed(ids)}")
            hints.append(
                f"compare the key fingerprint (palyra node pending), then: palyra node approve"
                f" {requests[0].request_id}"
            )
        guessed = [
            w
            for w in journal.pairing.windows()
            if w.close_reason == "failures"
            and w.closed_ms is not None
            and now - w.closed_ms <= GUESSING_LOOKBACK_MS
        ]
        if guessed:
            w = guessed[0]
            peers = ", ".join(w.failure_peers) or "unknown"
            problems.append(
                f"possible PIN guessing: pairing window {w.window_id} closed after"
                f" {w.failures} failed attempts {duration(now - (w.closed_ms or now))} ago"
                f" (from {peers})"
            )
            hints.append(
                "if that was not you, keep [rpc] listen on 127.0.0.1 or a trusted network;"
                " open a new window when ready: palyra node pair-code"
            )
        if problems:
            return warn(self.check_id, "; ".join(problems), "; ".join(hints), details=problems)
        if not active:
            return ok(self.check_id, "no paired devices")
        soonest = min(d.cert_expires_ms for d in active)
        return ok(
            self.check_id,
            f"{plural(len(active), 'paired device')}, certificates valid (the first expires in"
            f" {duration(soonest - now)})",
        )
