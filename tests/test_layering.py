"""Layering rules ARCHITECTURE.md states, checked on the source text."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Where product code lives; bench/ and tests/ may talk to SQLite directly.
PRODUCT_PACKAGES = ("palyrad", "palyra_cli", "routines", "certs", "node")
JOURNAL = ROOT / "palyrad" / "journal"
SQL_METHODS = {"execute", "executemany", "executescript"}


def _sql_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Where ``path`` imports sqlite3 or calls ``.execute*(``: ``file:line what`` strings."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    where = path.relative_to(root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sqlite3" or alias.name.startswith("sqlite3."):
                    found.append((node.lineno, f"{where}:{node.lineno} import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and (module == "sqlite3" or module.startswith("sqlite3.")):
                found.append((node.lineno, f"{where}:{node.lineno} from {module} import ..."))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_METHODS
        ):
            found.append((node.lineno, f"{where}:{node.lineno} .{node.func.attr}(...)"))
    return [what for _, what in sorted(found)]


def test_no_sql_outside_the_journal() -> None:
    """The journal package owns the schema and every query: no other product module opens
    SQLite or runs a statement (catch ``JournalError`` rather than ``sqlite3.Error``)."""
    offenders: list[str] = []
    checked = 0
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(JOURNAL):
                continue
            checked += 1
            offenders += _sql_uses(path)
    assert checked > 50  # the walk did find the product code
    assert offenders == []


def test_the_sql_check_sees_what_it_forbids(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sqlite3 as db\nfrom sqlite3 import Row\n"
        "def f(c):\n    c.execute('x')\n    c.cursor().executemany('x', [])\n"
    )
    assert [line.split(" ", 1)[1] for line in _sql_uses(probe, tmp_path)] == [
        "import sqlite3",
        "from sqlite3 import ...",
        ".execute(...)",
        ".executemany(...)",
    ]
