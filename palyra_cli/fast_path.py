"""``palyra routines run-now ID`` without click: the one command with a latency budget.

The SPEC gives run-now 100 ms from the keystroke to a running process. Python's own start,
click's import (~30 ms with cached bytecode; it pulls in ``inspect``), SQLite and the journal
module leave too little of it on a loaded two-core machine. So the plain shape
``palyra [--home DIR] routines run-now ID [--json] [--payload JSON] [--home DIR]`` is first
offered to a running daemon's request socket
(``palyrad.services.scheduler.control_socket``) — one JSON line out, the decision back —
with nothing imported but ``socket`` and ``json``.

It is a shortcut, never a second implementation: any other shape, no daemon listening, and
every answer that needs a message (unknown or disabled routine, bad payload) return None, and
the click command handles the request — with the same library call, so behaviour and
messages stay in one place. Nothing is recorded when the shortcut hands over. The output is
built by the functions the click command uses too.
"""

from __future__ import annotations

# `typing` itself is ~4 ms of import; mypy honours a module-level TYPE_CHECKING constant.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

NOT_RUNNING_NOTE = "note: palyrad is not running; the change applies when it starts"


# Error replies given before anything is recorded (palyrad.services.scheduler.handle_request).
NOTHING_RECORDED = frozenset({"refused", "bad_payload", "bad_request", "unknown_op"})


def run_now_result(run_id: str, status: str, error_kind: str | None) -> dict[str, Any]:
    """``palyra routines run-now --json``'s document."""
    return {"run_id": run_id, "status": status, "error_kind": error_kind}


def run_now_line(result: dict[str, Any]) -> str:
    """``palyra routines run-now``'s one line of text."""
    extra = f" ({result['error_kind']})" if result.get("error_kind") else ""
    return f"{result['run_id']} {result['status']}{extra}"


def parse_run_now(argv: Sequence[str]) -> tuple[str | None, str, bool, str | None] | None:
    """(home, routine id, --json, --payload) for exactly the shape served here, else None.

    ``--home`` may come before ``routines`` or after the id (as click accepts it); nothing
    else is recognised, so anything unusual — ``--help``, a typo, an option click would
    reject — gets click's handling and messages."""
    args = list(argv)
    home: str | None = None

    def take(i: int, name: str) -> tuple[str | None, int]:
        tok = args[i]
        if tok == name:
            return (args[i + 1], i + 2) if i + 1 < len(args) else (None, i)
        if tok.startswith(name + "="):
            return tok[len(name) + 1 :], i + 1
        return None, i

    i = 0
    if args[:1] and (args[0] == "--home" or args[0].startswith("--home=")):
        home, i = take(0, "--home")
        if home is None:
            return None
    if args[i : i + 2] != ["routines", "run-now"] or len(args) < i + 3:
        return None
    routine_id = args[i + 2]
    if not routine_id or routine_id.startswith("-"):
        return None
    as_json = False
    payload: str | None = None
    i += 3
    while i < len(args):
        tok = args[i]
        if tok == "--json":
            as_json, i = True, i + 1
            continue
        for name in ("--home", "--payload"):
            value, j = take(i, name)
            if j != i:
                if value is None:
                    return None
                if name == "--home":
                    home = value
                else:
                    payload = value
                i = j
                break
        else:
            return None
    return home, routine_id, as_json, payload


def run_now_fast(argv: Sequence[str]) -> int | None:
    """Serve ``routines run-now`` without click; the exit code, or None to hand over."""
    parsed = parse_run_now(argv)
    if parsed is None:
        return None
    home_arg, routine_id, as_json, payload = parsed
    import sys

    from palyrad.runtime.control_client import NotListening, request, run_now_request
    from palyrad.runtime.home import resolve_home
    from routines.errors import InvalidInput

    try:
        run_dir = resolve_home(home_arg) / "run"
    except InvalidInput:  # a blank --home or $PALYRA_HOME: click reports it
        return None
    try:
        reply = request(run_dir, run_now_request(routine_id, payload))
    except NotListening:
        return None  # no daemon: the click command journals the trigger and says so
    except TimeoutError:
        sys.stderr.write(
            f"error: the daemon did not answer in time (see: palyra routines logs {routine_id})\n"
        )
        return 1
    if not reply.get("ok"):
        if reply.get("error") in NOTHING_RECORDED:
            return None  # click asks again and reports it with the usual message
        # The daemon failed while taking it: it may be recorded, so never ask twice.
        sys.stderr.write(
            f"error: the daemon could not take the trigger ({reply.get('error')}) "
            f"(see: palyra routines logs {routine_id})\n"
        )
        return 1
    result = run_now_result(reply["run_id"], reply["status"], reply.get("error_kind"))
    if as_json:
        import json  # the same bytes as the click command's orjson output, without its import

        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(run_now_line(result) + "\n")
    sys.stdout.flush()
    return 0
