"""A routine's ``delivery`` (SPEC §2.3): where a run's result goes once it ends.

The ``mode`` picks the keys that apply; a key of another mode is reported as not used by
this one (rather than as unknown), since that is the likelier mistake.
"""

from __future__ import annotations

from typing import Any, Final

from routines.jsonpos import Path
from routines.model import Delivery, SilentPolicy
from routines.validate.primitives import Checker, enum_table, hint

DEFAULT_DELIVERY: Final = Delivery()

_DELIVERY_KEYS: dict[str, frozenset[str]] = {
    "logs_only": frozenset({"mode"}),
    "file": frozenset({"mode", "path"}),
    "channel": frozenset({"mode", "channel", "silent_policy", "failure_channel"}),
}
_ALL_DELIVERY_KEYS = frozenset().union(*_DELIVERY_KEYS.values())
_SILENT: dict[str, SilentPolicy] = enum_table(SilentPolicy)


def parse_delivery(cx: Checker, o: dict[str, Any], p: Path) -> Delivery:
    """``delivery`` of the routine at ``p``; logs only when absent or invalid."""
    d = cx.opt_obj(o, "delivery", p)
    if d is None:
        return DEFAULT_DELIVERY
    dp = (*p, "delivery")
    mode = "logs_only"
    if "mode" in d:
        got = cx.kind(d, "mode", dp, _DELIVERY_KEYS)
        if got is None:
            return DEFAULT_DELIVERY
        mode = got
    allowed = _DELIVERY_KEYS[mode]
    if not d.keys() <= allowed:
        for key in d:
            if key in allowed:
                continue
            if key in _ALL_DELIVERY_KEYS:
                cx.err((*dp, key), f'"{key}" is not used by delivery mode "{mode}"', at_key=True)
            else:
                cx.err(
                    (*dp, key),
                    f'unknown key "{key}"' + hint(key, _ALL_DELIVERY_KEYS),
                    at_key=True,
                )
    if mode == "logs_only":
        return DEFAULT_DELIVERY
    if mode == "file":
        path = cx.req_string(d, "path", dp, ' (delivery mode "file" writes results to it)')
        return DEFAULT_DELIVERY if path is None else Delivery(mode="file", path=path)
    channel = cx.req_string(d, "channel", dp, ' (delivery mode "channel" needs a channel name)')
    silent = cx.enum(d, "silent_policy", dp, _SILENT, SilentPolicy.NOISY)
    failure = cx.opt_string(d, "failure_channel", dp)
    if channel is None:
        return DEFAULT_DELIVERY
    return Delivery(
        mode="channel",
        channel=channel,
        silent_policy=silent,
        failure_channel=failure,
    )
