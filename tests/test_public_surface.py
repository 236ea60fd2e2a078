"""Packages talk through each other's facades, and the facades stay light to import.

A package's ``_private`` modules are its own: another package imports what it needs from
the owner's ``__init__`` (its ``__all__``), so a private module can move or split without
breaking importers. The import-linter contracts (``test_architecture.py``) guard the
direction of imports; this guards their entry points.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "lakeforge"

FACADES = [
    "lakeforge.bundle",
    "lakeforge.deployment",
    "lakeforge.events",
    "lakeforge.features",
    "lakeforge.jobs",
    "lakeforge.inference",
    "lakeforge.lakehouse",
    "lakeforge.llm",
    "lakeforge.monitoring",
    "lakeforge.project",
    "lakeforge.rag",
    "lakeforge.registry",
    "lakeforge.serving",
    "lakeforge.tracking",
    "lakeforge.vectors",
]


def _package_of(module: str) -> str:
    """``lakeforge.features`` for ``lakeforge.features._models``; top-level modules are their own."""
    return ".".join(module.split(".")[:2])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _cross_package_private_imports() -> list[tuple[str, str, str]]:
    """(importing file:line, importing package, imported module) for every reach-in."""
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        importer = _package_of(_module_name(path))
        for line, module in _imported(ast.parse(path.read_text())):
            parts = module.split(".")
            if parts[0] != "lakeforge" or len(parts) < 3:
                continue  # a top-level module (lakeforge._workspace) is the root's own
            owner = _package_of(module)
            private = any(p.startswith("_") for p in parts[2:])
            if private and owner != importer:
                hits.append((f"{rel}:{line}", importer, module))
    return hits


def test_no_package_imports_another_packages_private_modules() -> None:
    hits = _cross_package_private_imports()
    assert hits == [], "import these from the owning package's facade instead:\n" + "\n".join(
        f"  {where}: {module}" for where, _, module in hits
    )


@pytest.mark.parametrize("facade", FACADES)
def test_facade_exports_resolve(facade: str) -> None:
    """Every name a facade lists imports, and every lazily served name is listed."""
    module = importlib.import_module(facade)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == [], f"{facade}.__all__ lists names it does not export: {missing}"
    lazy = getattr(module, "_HOME", {})
    unlisted = sorted(set(lazy) - set(module.__all__))
    assert unlisted == [], f"{facade} serves {unlisted} lazily but leaves them out of __all__"


def _runtime_imports(path: Path) -> list[str]:
    """Modules imported at module level, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_duckdb_helpers_are_a_leaf_of_the_lakehouse() -> None:
    """Connection helpers import nothing else of the lakehouse, so any module may use them."""
    imports = _runtime_imports(PACKAGE / "lakehouse" / "_duckdb.py")
    inside = [m for m in imports if m.startswith("lakeforge.lakehouse")]
    assert inside == [], f"lakehouse/_duckdb.py imports {inside} at module level"
    from lakeforge.lakehouse import connect_duckdb, register_snapshot

    con = connect_duckdb()
    try:
        threshold = con.sql("SELECT current_setting('asof_loop_join_threshold')").fetchall()
    finally:
        con.close()
    assert threshold == [(0,)]
    assert callable(register_snapshot)


def _loaded_after(statement: str, candidates: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys; {statement}; print(' '.join(m for m in {candidates!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=SRC.parent
    )
    return done.stdout.split()


HEAVY = ("duckdb", "mlflow", "deltalake", "pandas", "polars", "uvicorn")


@pytest.mark.parametrize(
    ("statement", "heavy"),
    [
        ("import lakeforge", (*HEAVY, "pyarrow", "sqlalchemy")),
        ("import lakeforge.cli", HEAVY),
        ("import lakeforge.lakehouse", (*HEAVY, "pyarrow", "sqlalchemy")),
        ("import lakeforge.serving", HEAVY),
    ],
)
def test_facades_do_not_import_heavy_libraries(statement: str, heavy: tuple[str, ...]) -> None:
    assert _loaded_after(statement, heavy) == []
