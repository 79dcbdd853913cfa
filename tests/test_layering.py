"""The package boundaries of ARCHITECTURE.md, read from the code's imports (ast).

Imports inside ``if TYPE_CHECKING:`` are annotations, not dependencies, and are ignored;
every other import counts, including the lazy ones inside functions (they still load the
module when that path runs). A rule here is a decision written down: to change one, change
ARCHITECTURE.md and docs/structure.md with it.

And no SQL outside the journal package: no ``sqlite3`` import, no ``.execute*(`` call.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("routines", "certs", "palyra_proto", "palyrad", "palyra_cli", "node")
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}

# What each top-level package may import besides the standard library and itself.
ALLOWED: dict[str, frozenset[str]] = {
    # pure libraries: their own dependencies only
    "routines": frozenset({"cronsim", "orjson"}),
    "certs": frozenset({"cryptography"}),
    "palyra_proto": frozenset({"grpc", "google", "spake2", "grpc_tools"}),
    # the daemon: the pure libraries, the wire contract, its own dependencies
    "palyrad": frozenset(
        {
            "routines",
            "certs",
            "palyra_proto",
            "orjson",
            "watchdog",
            "cryptography",
            "grpc",
            "click",
            "h11",
        }
    ),
    # the command: the daemon's operator library (checked below), the pure libraries
    "palyra_cli": frozenset({"palyrad", "routines", "certs", "click", "orjson", "segno"}),
    # the device: never the daemon or the operator CLI
    "node": frozenset(
        {"certs", "routines", "palyra_proto", "click", "grpc", "cryptography", "orjson"}
    ),
}

# Inside palyrad: which areas each area may import (besides itself).
PALYRAD_AREAS: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "journal": frozenset({"domain"}),
    "runtime": frozenset({"domain"}),
    "seams": frozenset({"domain"}),
    "ops": frozenset({"domain", "journal", "runtime", "seams"}),
    "services": frozenset({"domain", "journal", "runtime", "seams", "ops"}),
    "supervisor": frozenset({"domain", "runtime", "services.registry"}),
    "main": frozenset({"runtime", "supervisor", "ops"}),
    "__main__": frozenset({"main"}),
}

# What palyra_cli may use of palyrad: the operator library and the values and handles it
# takes and returns; the journal is opened in one place (common.py) and handed to ops.
CLI_MAY_IMPORT = ("palyrad.ops", "palyrad.domain", "palyrad.runtime")
CLI_JOURNAL_OPENER = "palyra_cli/common.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(module, line) of every runtime import, skipping ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            if node.module == "palyrad":  # `from palyrad import x`
                for alias in node.names:
                    yield f"palyrad.{alias.name}", node.lineno
        yield from _imports(node)


def _files(root: Path, package: str) -> Iterator[tuple[Path, str]]:
    for path in sorted((root / package).rglob("*.py")):
        yield path, path.relative_to(root).as_posix()


def _palyrad_area(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "services" and parts[2] == "registry":
        return "services.registry"
    return parts[1] if len(parts) > 1 else ""


def _violations(root: Path = ROOT) -> list[str]:
    bad: list[str] = []
    for package in PACKAGES:
        if not (root / package).is_dir():
            continue
        for path, rel in _files(root, package):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            own_area = _palyrad_area(rel[:-3].replace("/", ".")) if package == "palyrad" else ""
            for module, line in _imports(tree):
                top = module.split(".")[0]
                where = f"{rel}:{line} imports {module}"
                if top in STDLIB or top == package:
                    if package == "palyrad" and top == "palyrad":
                        area = _palyrad_area(module)
                        mine = own_area.split(".")[0]
                        allowed = PALYRAD_AREAS.get(mine, frozenset())
                        if area and area.split(".")[0] != mine and area not in allowed:
                            bad.append(f"{where} (palyrad.{mine} may import {sorted(allowed)})")
                    continue
                if top not in ALLOWED[package]:
                    bad.append(f"{where} ({package} may import {sorted(ALLOWED[package])})")
                elif package == "palyra_cli" and top == "palyrad":
                    if module.startswith(CLI_MAY_IMPORT) or (
                        module == "palyrad.journal" and rel == CLI_JOURNAL_OPENER
                    ):
                        continue
                    bad.append(f"{where} (the CLI uses palyrad through {CLI_MAY_IMPORT})")
    return bad


def test_imports_respect_the_package_boundaries() -> None:
    assert _violations() == []


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The rules can fail: each kind of violation in a small fake tree is reported, and
    imports under ``if TYPE_CHECKING:`` are not."""
    files = {
        "node/client.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    import palyrad.journal\ndef f() -> None:\n    import palyrad.ops\n",
        "routines/x.py": "import click\n",
        "palyra_cli/cmd.py": "from palyrad.services.scheduler import service\n",
        "palyrad/journal/q.py": "from palyrad.ops import triggers\n",
        "palyrad/supervisor/s.py": "from palyrad.services.registry import SERVICES\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = [v.split(" (")[0] for v in _violations(tmp_path)]
    assert found == [
        "routines/x.py:1 imports click",
        "palyrad/journal/q.py:1 imports palyrad.ops",
        "palyra_cli/cmd.py:1 imports palyrad.services.scheduler",
        "node/client.py:5 imports palyrad.ops",
    ]


# --- no SQL outside the journal -------------------------------------------------------------

JOURNAL = "palyrad/journal/"
SQL_METHODS = frozenset({"execute", "executemany", "executescript"})


def _sql_uses(path: Path, rel: str) -> list[str]:
    """Where a file imports sqlite3 or calls ``.execute(``, ``.executemany(`` or
    ``.executescript(`` (comments and strings do not count: the ast is read)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlite3":
                    found.append((node.lineno, f"{rel}:{node.lineno} import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] == "sqlite3":
                found.append((node.lineno, f"{rel}:{node.lineno} from {node.module} import"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_METHODS
        ):
            found.append((node.lineno, f"{rel}:{node.lineno} .{node.func.attr}("))
    return [what for _, what in sorted(found)]


def _sql_outside_the_journal(root: Path = ROOT) -> list[str]:
    bad: list[str] = []
    for package in PACKAGES:  # bench/ and tests/ may read the journal file directly
        if (root / package).is_dir():
            for path, rel in _files(root, package):
                if not rel.startswith(JOURNAL):
                    bad += _sql_uses(path, rel)
    return bad


def test_no_sql_outside_the_journal() -> None:
    """The journal package owns the schema and every query (ARCHITECTURE.md "The journal"):
    code elsewhere calls its domains, and catches ``JournalError``, not ``sqlite3.Error``."""
    assert _sql_outside_the_journal() == []


def test_the_sql_check_sees_what_it_forbids(tmp_path: Path) -> None:
    files = {
        "palyrad/ops/x.py": "import sqlite3 as db\nfrom sqlite3 import Row\n"
        "def f(c):\n    c.execute('x')\n    c.cursor().executemany('x', [])\n",
        "palyra_cli/y.py": "def g(db):\n    db.executescript('')  # .execute( in a comment\n",
        "palyrad/journal/runs.py": "import sqlite3\ndef h(db):\n    db.execute('x')\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert _sql_outside_the_journal(tmp_path) == [
        "palyrad/ops/x.py:1 import sqlite3",
        "palyrad/ops/x.py:2 from sqlite3 import",
        "palyrad/ops/x.py:4 .execute(",
        "palyrad/ops/x.py:5 .executemany(",
        "palyra_cli/y.py:2 .executescript(",
    ]


def test_the_cli_status_choice_is_run_status() -> None:
    """The CLI spells the statuses out (start-up budget); they must be RunStatus's."""
    from palyra_cli.routine_cmds import _STATUS_CHOICE
    from routines.kinds import RunStatus

    assert list(_STATUS_CHOICE.choices) == [s.value for s in RunStatus]
