"""The local executor: each attempt in a subprocess of the runner, in its own process group.

Recoverable: the group is reported before the task begins, the task process dies with
the runner's thread, and its outcome is written to ``attempt.result`` before it exits.
"""

from __future__ import annotations

from lakeforge.jobs._process import Outcome, group_identity, run_attempt
from lakeforge.jobs.executors._base import Attempt, Executor, ExecutorCapabilities


class LocalExecutor(Executor):
    """Runs attempts as supervised subprocesses on this host (the default executor)."""

    name = "local"
    capabilities = ExecutorCapabilities(recoverable=True)

    def run(self, attempt: Attempt) -> Outcome:
        with attempt.log.open("a") as out:
            return run_attempt(
                attempt.spec,
                out,
                attempt.cancelled,
                result=attempt.result,
                started=lambda pid: attempt.started(group_identity(pid)),
            )
