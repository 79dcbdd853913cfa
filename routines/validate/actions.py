"""A routine's ``action`` (SPEC §2.2): what a run does.

Each kind is a function of the ``Checker`` registered in ``ACTION_KINDS`` with the keys it
allows; a new kind is its function plus one line there. ``timeout_ms`` is common to every
kind and checked once, before the kind's own keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from routines.jsonpos import Path
from routines.model import (
    DEFAULT_TIMEOUT_MS,
    MAX_PROMPT_BYTES,
    Action,
    CommandAction,
    PromptAction,
    SkillAction,
)
from routines.validate.primitives import MISSING, Checker, describe


def parse_action(cx: Checker, v: Any, p: Path) -> Action | None:
    """The action at ``p``, or None with the errors reported."""
    tagged = cx.tagged(v, p, "kind", ACTION_KEYS, "action kind")
    if tagged is None:
        return None
    o, kind = tagged
    n = len(cx.errors)
    timeout = (
        cx.ms(o, "timeout_ms", p, DEFAULT_TIMEOUT_MS, 1)
        if "timeout_ms" in o
        else DEFAULT_TIMEOUT_MS
    )
    action = _PARSE[kind](cx, o, p, timeout)
    return action if len(cx.errors) == n else None


def _command(cx: Checker, o: dict[str, Any], p: Path, timeout: int) -> Action | None:
    n = len(cx.errors)
    argv = o.get("argv", MISSING)
    shell = o.get("shell", MISSING)
    argv_t: tuple[str, ...] | None = None
    shell_s: str | None = None
    if argv is MISSING and shell is MISSING:
        cx.missing(p, "argv", ' (a command needs "argv" (a list) or "shell" (a string))')
    elif argv is not MISSING and shell is not MISSING:
        cx.err((*p, "shell"), 'give either "argv" or "shell", not both', at_key=True)
    elif argv is not MISSING:
        argv_t = cx.str_list(o, "argv", p, (), required=True, nonempty=True)
        if argv_t is not None and not argv_t[0]:
            cx.err((*p, "argv", 0), "the program name must not be empty")
    else:
        shell_s = cx.string(shell, (*p, "shell"))
    cwd = cx.opt_string(o, "cwd", p) if "cwd" in o else None
    env = _env(cx, o, p) if "env" in o else ()
    if len(cx.errors) != n:
        return None
    return CommandAction(argv=argv_t, shell=shell_s, cwd=cwd, env=env, timeout_ms=timeout)


def _env(cx: Checker, o: dict[str, Any], p: Path) -> tuple[tuple[str, str], ...]:
    v = o.get("env", MISSING)
    if v is MISSING:
        return ()
    if v is None:
        cx.null(p, "env")
        return ()
    ep = (*p, "env")
    e = cx.obj(v, ep)
    if e is None:
        return ()
    if not e:
        return ()
    n = len(cx.errors)
    for name, value in e.items():
        if not name or "=" in name or "\x00" in name:
            cx.err((*ep, name), f"invalid environment variable name {describe(name)}", at_key=True)
        elif type(value) is not str:
            cx.err((*ep, name), f"must be a string, got {describe(value)}")
        elif "\x00" in value:
            cx.err((*ep, name), "must not contain NUL characters")
    if len(cx.errors) != n:
        return ()  # only strings may be shared below (an object or array is not hashable)
    st = cx.strings
    return tuple(sorted((st.setdefault(k, k), st.setdefault(v, v)) for k, v in e.items()))


def _prompt(cx: Checker, o: dict[str, Any], p: Path, timeout: int) -> Action | None:
    n = len(cx.errors)
    prompt = cx.req_string(o, "prompt", p)
    if prompt is not None and len(prompt) * 4 > MAX_PROMPT_BYTES:
        size = len(prompt.encode("utf-8", "surrogatepass"))
        if size > MAX_PROMPT_BYTES:
            cx.err(
                (*p, "prompt"),
                f"is {size} bytes; the limit is {MAX_PROMPT_BYTES} bytes (16 KiB)",
            )
    if len(cx.errors) != n or prompt is None:
        return None
    return PromptAction(prompt=prompt, timeout_ms=timeout)


def _skill(cx: Checker, o: dict[str, Any], p: Path, timeout: int) -> Action | None:
    n = len(cx.errors)
    skill_id = cx.req_string(o, "skill_id", p)
    args = cx.str_list(o, "args", p, ())
    if len(cx.errors) != n or skill_id is None or args is None:
        return None
    return SkillAction(skill_id=skill_id, args=args, timeout_ms=timeout)


# kind → (its keys, its check, given the timeout). The order is the order messages list them in.
ACTION_KINDS: dict[
    str,
    tuple[frozenset[str], Callable[[Checker, dict[str, Any], Path, int], Action | None]],
] = {
    "command": (frozenset({"kind", "argv", "shell", "cwd", "env", "timeout_ms"}), _command),
    "prompt": (frozenset({"kind", "prompt", "timeout_ms"}), _prompt),
    "skill": (frozenset({"kind", "skill_id", "args", "timeout_ms"}), _skill),
}
ACTION_KEYS = {kind: keys for kind, (keys, _) in ACTION_KINDS.items()}
_PARSE = {kind: check for kind, (_, check) in ACTION_KINDS.items()}
