"""Lakeforge: the Big Book of MLOps reference architecture as runnable software.

Public names are imported on first use, so ``import lakeforge`` (and the CLI's start)
does not pay for Arrow, DuckDB, SQLAlchemy and MLflow until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "Workspace": "lakeforge._workspace",
    "connect": "lakeforge._workspace",
    "Expectation": "lakeforge.lakehouse",
    "TableName": "lakeforge.lakehouse",
    "expect": "lakeforge.lakehouse",
    "expect_or_drop": "lakeforge.lakehouse",
    "expect_or_fail": "lakeforge.lakehouse",
    "Project": "lakeforge.project",
    "Target": "lakeforge.project",
    "init_project": "lakeforge.project",
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


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"lakeforge.{name}")
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
