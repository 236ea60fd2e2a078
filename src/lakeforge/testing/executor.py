"""The conformance suite every jobs :class:`~lakeforge.jobs.executors.Executor` must pass.

Shaped like the online store suite: :func:`check_executor` runs every check,
:func:`executor_checks` yields ``(name, check)`` pairs and
:func:`parametrize_executor_checks` turns them into a ``pytest.mark.parametrize``. A
check takes a *factory* that makes the executor under test (``lambda:
open_executor("mine", target)``) and runs real task attempts on it: a task module
written to a temporary folder, processes that hang, a cancel flag that is a file. So
the executor's workers must share this machine's file system (a local cluster will do).

Checks beyond the core contract run only for executors that declare the capability
(:class:`~lakeforge.jobs.executors.ExecutorCapabilities`), not by name.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from lakeforge.jobs import process_exited
from lakeforge.jobs.executors import (
    Attempt,
    AttemptSpec,
    Executor,
    ExecutorCapabilities,
    Outcome,
    kill_recorded_group,
    read_outcome,
)
from lakeforge.testing._support import WAIT_S

__all__ = [
    "ExecutorCheck",
    "ExecutorFactory",
    "check_executor",
    "executor_checks",
    "parametrize_executor_checks",
]

#: Makes the executor under test.
ExecutorFactory = Callable[[], Executor]
#: One conformance check: raises (an ``AssertionError`` mostly) when the executor fails it.
ExecutorCheck = Callable[[ExecutorFactory], None]
TIMEOUT_S = 5  # room for a task process to start and spawn a child on a busy machine
MODULE = "lf_executor_conformance_tasks"
TASKS = """
import os, subprocess, sys, time
from pathlib import Path

def _publish(path, value):
    tmp = Path(path + ".tmp")
    tmp.write_text(str(value))
    tmp.replace(path)

def echo(value):
    from lakeforge.jobs import job_context, task_values
    print("output of echo:", value, flush=True)
    print("and on stderr", file=sys.stderr, flush=True)
    return {"value": value, "upstream": task_values(), "task": job_context()["task"]}

def fail(message):
    print("about to fail", flush=True)
    raise ValueError(message)

def hang(pid_file, child_file):
    child = subprocess.Popen(["sleep", "300"])  # in the task's process group
    _publish(child_file, child.pid)
    _publish(pid_file, os.getpid())  # last: once it is there, both are
    time.sleep(300)
"""


@dataclass(frozen=True)
class FileFlag:
    """A picklable cancel check: true once ``path`` exists."""

    path: str

    def __call__(self) -> bool:
        return os.path.exists(self.path)


# -- helpers --------------------------------------------------------------------------------


class _Folder:
    """A temporary folder with the task module, where attempts are made and their files go."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / f"{MODULE}.py").write_text(textwrap.dedent(TASKS))
        self.identities: list[str | None] = []

    def attempt(
        self,
        key: str,
        function: str,
        parameters: dict[str, Any] | None = None,
        *,
        upstream: dict[str, dict[str, Any]] | None = None,
        timeout_s: float | None = None,
        started: Callable[[str | None], None] | None = None,
    ) -> Attempt:
        spec = AttemptSpec(
            task=key,
            python=function if ":" in function else f"{MODULE}:{function}",
            script=None,
            parameters=parameters or {},
            upstream_values=upstream or {},
            context={"job": "conformance", "run_id": 0, "task": key, "code_dir": str(self.root)},
            code_dir=str(self.root),
            target="conformance",
            timeout_s=timeout_s,
        )
        return Attempt(
            spec,
            log=self.root / f"{key}.log",
            result=self.root / f"{key}.result.json",
            cancelled=FileFlag(str(self.root / f"{key}.cancel")),
            started=started or self.identities.append,
        )

    def hang(self, key: str, **options: Any) -> tuple[Attempt, Path, Path]:
        pid, child = self.root / f"{key}.pid", self.root / f"{key}.child"
        attempt = self.attempt(
            key, "hang", {"pid_file": str(pid), "child_file": str(child)}, **options
        )
        return attempt, pid, child


@contextmanager
def _folder() -> Iterator[_Folder]:
    with tempfile.TemporaryDirectory(prefix="lf-executor-check-") as root:
        yield _Folder(Path(root))


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {WAIT_S} s for {what}")
        time.sleep(0.05)


def _pid(path: Path) -> int:
    _wait_for(path.exists, f"the task to write {path.name}")
    return int(path.read_text())


def _assert_all_gone(*pids: int) -> None:
    for pid in pids:
        _wait_for(functools.partial(process_exited, pid), f"process {pid} to be killed")


# -- the checks -----------------------------------------------------------------------------


def _values_and_output(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        attempt = folder.attempt("echo", "echo", {"value": 7}, upstream={"before": {"n": 1}})
        outcome = factory().run(attempt)
        assert outcome == Outcome(
            "succeeded", None, {"value": 7, "upstream": {"before": {"n": 1}}, "task": "echo"}
        ), outcome
        log = attempt.log.read_text()
        assert "output of echo: 7" in log and "and on stderr" in log, log


def _output_is_appended(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        attempt = folder.attempt("echo", "echo", {"value": 1})
        attempt.log.write_text("--- earlier attempt\n")
        factory().run(attempt)
        log = attempt.log.read_text()
        assert log.startswith("--- earlier attempt\n") and "output of echo: 1" in log, log


def _failing_task_reports_its_error(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        attempt = folder.attempt("fail", "fail", {"message": "conformance failure"})
        outcome = factory().run(attempt)
        assert outcome.status == "failed" and outcome.values == {}, outcome
        assert "ValueError: conformance failure" in (outcome.error or ""), outcome
        log = attempt.log.read_text()
        assert "about to fail" in log and "Traceback" in log, log


def _unimportable_task_fails(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        outcome = factory().run(folder.attempt("nothing", "lf_no_such_module_here:run"))
        assert outcome.status == "failed", outcome
        assert "cannot import module 'lf_no_such_module_here'" in (outcome.error or ""), outcome


def _timeout_kills_the_task_and_its_children(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        attempt, pid_file, child_file = folder.hang("slow", timeout_s=TIMEOUT_S)
        outcome = factory().run(attempt)
        assert outcome.status == "timed_out", outcome
        assert f"timed out after {TIMEOUT_S} s" in (outcome.error or ""), outcome
        assert pid_file.exists(), "the task did not start within its timeout"
        _assert_all_gone(int(pid_file.read_text()), int(child_file.read_text()))


def _cancel_leaves_no_orphans(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        attempt, pid_file, child_file = folder.hang("hang", timeout_s=WAIT_S * 2)
        outcomes: list[Outcome | BaseException] = []

        def run() -> None:
            try:
                outcomes.append(factory().run(attempt))
            except BaseException as exc:  # reported below
                outcomes.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        pids = _pid(pid_file), _pid(child_file)
        (folder.root / "hang.cancel").touch()  # the attempt's cancel flag
        thread.join(timeout=WAIT_S)
        assert not thread.is_alive(), f"run() did not return {WAIT_S} s after the cancel"
        [outcome] = outcomes
        assert isinstance(outcome, Outcome) and outcome.status == "canceled", outcome
        _assert_all_gone(*pids)


def _outcome_is_recorded_for_recovery(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        attempt = folder.attempt("echo", "echo", {"value": 3})
        outcome = factory().run(attempt)
        assert outcome.status == "succeeded", outcome
        assert read_outcome(attempt.result) == outcome, "the outcome file does not match"
        [identity] = folder.identities
        assert identity is not None, "started() got no process group identity"


def _killed_runner(factory: ExecutorFactory, folder: _Folder) -> None:
    """The body of a runner process that the check kills: runs a hanging attempt."""
    identity_file = folder.root / "identity"

    def started(identity: str | None) -> None:
        identity_file.write_text(identity or "")

    attempt, _, _ = folder.hang("orphan", started=started)
    factory().run(attempt)


def _dead_runner_leaves_nothing_recovery_cannot_kill(factory: ExecutorFactory) -> None:
    with _folder() as folder:
        runner = multiprocessing.get_context("fork").Process(
            target=_killed_runner, args=(factory, folder), daemon=True
        )
        runner.start()
        try:
            task = _pid(folder.root / "orphan.pid")
            child = _pid(folder.root / "orphan.child")
            identity = (folder.root / "identity").read_text()
        finally:
            assert runner.pid is not None
            os.kill(runner.pid, signal.SIGKILL)  # kill -9 of the runner alone
            runner.join()
        _wait_for(lambda: process_exited(task), f"task process {task} to die with its runner")
        assert identity, "started() got no process group identity"
        assert kill_recorded_group(identity), "recovery could not kill the task's group"
        _assert_all_gone(child)


@dataclass(frozen=True)
class _Check:
    name: str
    run: ExecutorCheck
    needs: tuple[str, ...] = ()  # ExecutorCapabilities fields that must be True


_CHECKS = (
    _Check("check_values_and_output", _values_and_output),
    _Check("check_output_is_appended", _output_is_appended),
    _Check("check_failing_task_reports_its_error", _failing_task_reports_its_error),
    _Check("check_unimportable_task_fails", _unimportable_task_fails),
    _Check(
        "check_timeout_kills_the_task_and_its_children", _timeout_kills_the_task_and_its_children
    ),
    _Check("check_cancel_leaves_no_orphans", _cancel_leaves_no_orphans),
    _Check(
        "check_outcome_is_recorded_for_recovery",
        _outcome_is_recorded_for_recovery,
        needs=("recoverable",),
    ),
    _Check(
        "check_dead_runner_leaves_nothing_recovery_cannot_kill",
        _dead_runner_leaves_nothing_recovery_cannot_kill,
        needs=("recoverable",),
    ),
)
assert {n for c in _CHECKS for n in c.needs} <= {f.name for f in fields(ExecutorCapabilities)}


def executor_checks(
    capabilities: ExecutorCapabilities | None = None,
) -> Iterator[tuple[str, ExecutorCheck]]:
    """``(name, check)`` for every check an executor with ``capabilities`` must pass."""
    declared = capabilities or ExecutorCapabilities()
    for check in _CHECKS:
        if all(getattr(declared, need) for need in check.needs):
            yield check.name, check.run


def parametrize_executor_checks(
    capabilities: ExecutorCapabilities | None = None,
) -> pytest.MarkDecorator:
    """``pytest.mark.parametrize("check", ...)`` over :func:`executor_checks`, by name
    (pass the executor class's ``capabilities``). The test calls ``check(factory)``."""
    pairs = list(executor_checks(capabilities))
    return pytest.mark.parametrize("check", [c for _, c in pairs], ids=[n for n, _ in pairs])


def check_executor(
    factory: ExecutorFactory, capabilities: ExecutorCapabilities | None = None
) -> None:
    """Run every check the executor must pass, given its declared capabilities (by
    default its class's); the first failure raises, with a note naming the check."""
    declared = capabilities or type(factory()).capabilities
    for name, check in executor_checks(declared):
        try:
            check(factory)
        except BaseException as exc:
            exc.add_note(f"executor conformance check {name} failed")
            raise
