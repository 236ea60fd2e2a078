"""Lakeforge: the Big Book of MLOps reference architecture as runnable software.

Public names are imported on first use, so ``import lakeforge`` (and the CLI's start)
does not pay for Arrow, DuckDB, SQLAlchemy and MLflow until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lakeforge._lazy import lazy_names
from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace, connect
    from lakeforge.lakehouse import (
        Expectation,
        TableName,
        expect,
        expect_or_drop,
        expect_or_fail,
    )
    from lakeforge.project import Project, Target, init_project

__version__ = "0.1.0"

_PUBLIC = {
    "Workspace": "_workspace",
    "connect": "_workspace",
    "Expectation": "lakehouse",
    "TableName": "lakehouse",
    "expect": "lakehouse",
    "expect_or_drop": "lakehouse",
    "expect_or_fail": "lakehouse",
    "Project": "project",
    "Target": "project",
    "init_project": "project",
}
_SUBPACKAGES = {
    "bundle",
    "cli",
    "deployment",
    "events",
    "features",
    "jobs",
    "lakehouse",
    "project",
    "registry",
    "serving",
    "state",
    "tracking",
}


_public = lazy_names(__name__, _PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"lakeforge.{name}")
    return _public(name)


__all__ = [
    "Expectation",
    "LakeforgeError",
    "Project",
    "TableName",
    "Target",
    "Workspace",
    "__version__",
    "connect",
    "expect",
    "expect_or_drop",
    "expect_or_fail",
    "init_project",
]
