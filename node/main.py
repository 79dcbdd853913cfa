"""``palyra-node``: the device side of pairing (SPEC §4.4).

Pairing and the mTLS node client arrive with the node RPC work; until then the command exists
(so the distribution's entry points are real) and says plainly that it cannot pair yet.
"""

from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="PALYRA_NODE_HOME", metavar="DIR", help="Node home.")
def cli(home: str | None) -> None:
    """Palyra node: pair with a daemon and watch its results (not available yet)."""


@cli.command("pair", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def pair(args: tuple[str, ...]) -> None:
    """Pair with a palyrad (arrives with the node RPC work)."""
    click.echo(
        "error: pairing is not available in this version of Palyra "
        "(it arrives with the node RPC work; see palyra daemon status)",
        err=True,
    )
    sys.exit(1)


def main() -> None:
    cli(prog_name="palyra-node")
