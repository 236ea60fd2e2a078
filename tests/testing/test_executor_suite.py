"""The executor conformance suite catches broken executors, and names the failed check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge.jobs.executors import Attempt, LocalExecutor, Outcome
from lakeforge.project import Target
from lakeforge.testing import check_executor


class _DropsValues(LocalExecutor):
    """A broken executor: a task's values never reach the runner."""

    def run(self, attempt: Attempt) -> Outcome:
        outcome = super().run(attempt)
        return Outcome(outcome.status, outcome.error, {})


class _ForgetsTheOutcomeFile(LocalExecutor):
    """Claims to be recoverable, but its tasks leave no outcome for recovery to read."""

    def run(self, attempt: Attempt) -> Outcome:
        outcome = super().run(attempt)
        attempt.result.unlink(missing_ok=True)
        return outcome


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    (tmp_path / "lakeforge.yaml").write_text("name: p\ntargets:\n  dev: {}\n")
    with lakeforge.connect("dev", project_dir=tmp_path) as ws:
        yield ws.target


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_DropsValues, "check_values_and_output"),
        (_ForgetsTheOutcomeFile, "check_outcome_is_recorded_for_recovery"),
    ],
)
@pytest.mark.slow
def test_the_executor_suite_fails_a_broken_executor(
    target: Target, broken: type[LocalExecutor], check: str
) -> None:
    with pytest.raises(AssertionError) as info:
        check_executor(lambda: broken(target))
    assert f"executor conformance check {check} failed" in getattr(info.value, "__notes__", [])
