"""The executor contract: run one task attempt, to its outcome, a timeout or a cancel.

An executor gets an :class:`Attempt` (what to run, where its output goes, how to tell a
cancel) and returns the attempt's :class:`~lakeforge.jobs._process.Outcome`. It must:

- append the task's output (stdout and stderr) to ``attempt.log``;
- return the task's values when it succeeds, and ``failed`` with the task's error when it
  raises or cannot start;
- stop the task, and every process it started, once ``attempt.spec.timeout_s`` has passed
  (``timed_out``) or ``attempt.cancelled()`` turns true (``canceled``): nothing is left
  running when ``run`` returns.

An executor with the capability ``recoverable`` also promises what lets a run survive
its runner's death (see ``lakeforge.jobs._recovery``): the task runs on this host, in a
process group it reports through ``attempt.started`` before the task begins, that group's
leader dies with the runner, and the outcome is written to ``attempt.result`` before the
task process exits. ``lakeforge.testing.check_executor`` checks all of it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from lakeforge.jobs._process import AttemptSpec, Outcome

if TYPE_CHECKING:
    from lakeforge.project import Target


@dataclass(frozen=True)
class ExecutorCapabilities:
    """What an executor guarantees beyond the core contract.

    ``recoverable``: a runner killed at any point (kill -9) leaves no task process of it
    that recovery cannot kill, and loses no outcome of a task that had finished (the
    local executor); a remote executor whose tasks outlive their runner's host is not.
    """

    recoverable: bool = False


@dataclass(frozen=True)
class Attempt:
    """One attempt of a task, as the runner hands it to an executor.

    ``cancelled`` is polled while the task runs; an executor that supervises the task
    elsewhere may ship it there, so the runner's is picklable (it reads the state store).
    """

    spec: AttemptSpec
    log: Path  # the output is appended here
    result: Path  # where a recoverable executor's task process leaves its outcome
    cancelled: Callable[[], bool]
    started: Callable[[str | None], None]  # the task's process group (``group_identity``)


class Executor(abc.ABC):
    """Runs task attempts for the jobs engine; built with the target the run is on."""

    name: ClassVar[str]
    capabilities: ClassVar[ExecutorCapabilities] = ExecutorCapabilities()

    def __init__(self, target: Target) -> None:
        self.target = target

    @abc.abstractmethod
    def run(self, attempt: Attempt) -> Outcome:
        """Run ``attempt`` to its outcome (see the module docstring for the contract)."""


#: Makes an executor for a target: an :class:`Executor` subclass, or a function.
ExecutorBuilder = Callable[["Target"], Executor]
