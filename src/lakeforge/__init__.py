"""Lakeforge: the Big Book of MLOps reference architecture as runnable software."""

from lakeforge._workspace import Workspace, connect
from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import (
    Expectation,
    TableName,
    expect,
    expect_or_drop,
    expect_or_fail,
)
from lakeforge.project import Project, Target, init_project

__version__ = "0.1.0"

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
