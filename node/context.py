"""What every node operation gets from the command line, in one value.

The clock is passed in (never read directly below the command layer), so tests can move it
to make a code expire or a certificate fall due for renewal; notes go through one function
so the library never prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from node.home import NodeHome


@dataclass(frozen=True, slots=True)
class NodeContext:
    home: NodeHome
    now_ms: Callable[[], int]
    note: Callable[[str], None]
