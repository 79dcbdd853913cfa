"""``palyra``: the operator's command line.

``routines run-now`` on a running daemon is served by ``fast_path`` before click is even
imported (it has a 100 ms budget, process start included); everything else, and every
case the shortcut hands back, goes to the click application in ``palyra_cli.app``.
"""

from __future__ import annotations

import sys


def main() -> None:
    from palyra_cli.fast_path import run_now_fast

    code = run_now_fast(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from palyra_cli.app import cli

    cli(prog_name="palyra")
