"""The ``webhooks`` check: the listener is up and reachable, and every webhook routine's
secret is usable, as the running daemon would find it.

Which routines have a webhook trigger comes from what the daemon applied (``STATE_WEBHOOKS``
in the journal), not the file on disk: a request is served by the applied definitions. A
``secret_file`` is checked exactly as the listener reads it (``read_secret``: no symlink,
owner, mode, length). A ``secret_env`` lives in the *daemon's* environment, which is not
doctor's: it is read from ``/proc/<node_rpc pid>/environ`` (same user, Linux), and when that
cannot be read the variable is not judged rather than judged from the wrong environment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

from palyrad.domain import webhook_routes
from palyrad.journal import STATE_WEBHOOKS
from palyrad.ops.doctor.check import DoctorCheck, listed, plural
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.daemon_checks import LOG_HINT, reach
from palyrad.ops.doctor.report import CheckResult, fail, ok, warn
from palyrad.runtime.webhook_secrets import SecretUnavailable, read_secret
from routines.model import WebhookTrigger


def process_environ(pid: int) -> Mapping[str, str] | None:
    """A process's environment as it was at its start, or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep:
            with contextlib.suppress(UnicodeDecodeError):
                env[name.decode()] = value.decode("utf-8", "surrogateescape")
    return env


class WebhooksCheck(DoctorCheck):
    """The webhook listener is up and reachable; each webhook routine's secret is usable."""

    check_id = "webhooks"

    def run(self, ctx: DoctorContext) -> CheckResult:
        journal = ctx.journal
        routes = webhook_routes.parse(journal.state.get(STATE_WEBHOOKS)) if journal else {}
        status = ctx.status
        rpc = status.process("node_rpc") if status.running else None
        address = status.endpoints.get("webhook") if status.running else None
        if not routes:
            where = f"; listener {address}" if address else ""
            return ok(self.check_id, f"no webhook routines{where}")
        problems: list[str] = []
        hints: list[str] = []
        if status.running:
            if address is None:
                problems.append(
                    f"the webhook listener is not up (port {ctx.config.webhook_port} could not"
                    " be bound)"
                )
                hints.append("free the port or set another [webhooks] port in palyra.toml")
            else:
                why = reach(address)
                if why is not None:
                    problems.append(f"the webhook listener {address} is unreachable: {why}")
        env = process_environ(rpc.pid) if rpc is not None and rpc.pid else None
        unusable, unjudged = [], 0
        for rid, route in sorted(routes.items()):
            reason = _secret_problem(route.trigger, env)
            if reason is None:
                continue
            if reason == "":
                unjudged += 1
                continue
            unusable.append(f"{rid}: {reason}")
        if unusable:
            problems.append(
                f"{plural(len(unusable), 'webhook routine')} answer 503: {listed(unusable, 5)}"
            )
            hints.append(
                "chmod 600 the secret file (owned by the daemon's user, 16+ bytes), or set the"
                " variable in the daemon's environment and restart it"
            )
        if problems:
            return fail(self.check_id, "; ".join(problems), "; ".join([*hints, LOG_HINT]))
        n = plural(len(routes), "webhook routine")
        note = f" ({unjudged} secret variables not checked: daemon not running)" if unjudged else ""
        if not status.running:
            return warn(
                self.check_id, f"{n}, but the daemon is not running{note}", "palyra daemon start"
            )
        return ok(self.check_id, f"{n}, secrets usable, listener {address} reachable{note}")


def _secret_problem(trigger: WebhookTrigger, env: Mapping[str, str] | None) -> str | None:
    """Why the listener would answer 503, None when it would not, "" when unknowable here."""
    if trigger.secret_env is not None and env is None:
        return ""
    try:
        read_secret(trigger, env or {})
    except SecretUnavailable as exc:
        return exc.reason
    return None
