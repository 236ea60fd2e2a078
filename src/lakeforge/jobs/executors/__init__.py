"""Executors: where the jobs engine runs task attempts, chosen by name.

A job's (or task's) ``executor:`` names one: ``local`` (the default: subprocesses of the
runner) or ``ray`` (a Ray cluster; ``pip install 'lakeforge[ray]'``, imported only when a task runs on
it), built in, or one an
installed package declares under the ``lakeforge.executors`` entry-point group as
``name = "package.module:Builder"``, a callable ``(target) -> Executor`` (usually an
:class:`Executor` subclass). Its backend is imported only when a task runs on it. An
executor passes ``lakeforge.testing.check_executor``. A recoverable one's task leaves
its outcome where :func:`read_outcome` finds it and reports a process group that
:func:`kill_recorded_group` (crash recovery) kills.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from lakeforge.jobs._errors import JobError
from lakeforge.jobs._process import AttemptSpec, Outcome, kill_recorded_group, read_outcome
from lakeforge.jobs.executors._base import (
    Attempt,
    Executor,
    ExecutorBuilder,
    ExecutorCapabilities,
)
from lakeforge.jobs.executors._local import LocalExecutor
from lakeforge.jobs.executors._ray import RayExecutor
from lakeforge.project import EXECUTORS_GROUP, executor_entry_points

if TYPE_CHECKING:
    from lakeforge.project import Target

__all__ = [
    "EXECUTORS_GROUP",
    "Attempt",
    "AttemptSpec",
    "Executor",
    "ExecutorBuilder",
    "ExecutorCapabilities",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "executor_names",
    "kill_recorded_group",
    "open_executor",
    "read_outcome",
]


def executor_names() -> list[str]:
    """The names ``executor:`` accepts: built in and installed, sorted."""
    return sorted(executor_entry_points())


def open_executor(name: str, target: Target) -> Executor:
    """The executor ``name`` for ``target``; its module is imported here, on first use."""
    found = executor_entry_points().get(name)
    if found is None:
        raise JobError(
            f"unknown executor {name!r} (executors: {', '.join(executor_names())})",
            hint=f"install the package that declares it under {EXECUTORS_GROUP!r}",
        )
    try:
        builder = cast(ExecutorBuilder, found.load())
    except ImportError as exc:
        raise JobError(f"executor {name!r} ({found.value}) cannot be imported: {exc}") from None
    return builder(target)
