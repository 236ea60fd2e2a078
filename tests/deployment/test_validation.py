"""Validation: compliance checks and champion vs challenger on real models and flights."""

from __future__ import annotations

import pytest

from lakeforge import Workspace
from lakeforge.events import VALIDATION_FAILED, VALIDATION_PASSED
from lakeforge.project._policy import Bounds, Checks, ValidationPolicy
from lakeforge.registry import ModelNotFoundError
from tests.deployment.conftest import train


def test_a_good_first_version_passes_every_check_and_is_recorded(cd_ws: Workspace) -> None:
    version = train(cd_ws, "dev.ml.v_good", tags={"team": "delays"})
    report = cd_ws.validate("dev.ml.v_good", version)
    assert report.passed, report.failed_checks
    checks = [r.check for r in report.results]
    assert checks[:4] == ["required_tags", "description", "signature", "lineage"]
    assert {
        "metric:training_accuracy_score",
        "max_size_mb",
        "max_latency_p95_ms",
        "forbidden_columns",
    } <= set(checks)
    # no champion yet: compared with the majority-class baseline
    assert "baseline:roc_auc:min_improvement" in checks
    latency = next(r for r in report.results if r.check == "max_latency_p95_ms")
    assert latency.value is not None and 0 < latency.value < 500
    mv = cd_ws.models.version("dev.ml.v_good", version)
    assert mv.tags["lakeforge.validation.status"] == "passed"
    assert mv.tags["lakeforge.validation.id"] == report.validation_id
    assert (
        f"Validation {report.validation_id} (enabled" in mv.description
        and "PASSED" in mv.description
    )
    rows = cd_ws.sql(f"""SELECT "check", passed FROM dev.system.validation_results
                         WHERE validation_id = '{report.validation_id}'""").to_pylist()
    assert len(rows) == len(report.results) and all(r["passed"] for r in rows)
    [event] = cd_ws.events.list(type="validation.*", subject="dev.ml.v_good")
    assert event.type == VALIDATION_PASSED and event.payload["version"] == version


def test_compliance_failures_are_named_and_dry_run_does_not_block(cd_ws: Workspace) -> None:
    version = train(cd_ws, "dev.ml.v_pii", extra_column="ssn")  # no team tag, a PII column
    report = cd_ws.validate("dev.ml.v_pii", version)
    assert report.blocking
    failed = {r.check: r.message for r in report.results if not r.passed}
    assert failed["required_tags"] == "missing tag(s): team"
    assert failed["forbidden_columns"] == "uses forbidden column(s): ssn"
    assert "lacks the model's input column(s) ssn" in failed["champion:data"]
    dry = cd_ws.validate("dev.ml.v_pii", version, mode="dry_run")
    assert not dry.passed and not dry.blocking
    mv = cd_ws.models.version("dev.ml.v_pii", version)
    assert mv.tags["lakeforge.validation.status"] == "failed (dry run)"
    assert mv.description.count("FAILED") == 2
    assert [e.type for e in cd_ws.events.list(subject="dev.ml.v_pii", type="validation.*")] == [
        VALIDATION_FAILED,
        VALIDATION_FAILED,
    ]
    assert cd_ws.validate("dev.ml.v_pii", version, mode="disabled").results == []


def test_a_threshold_on_a_metric_the_run_lacks_says_so(cd_ws: Workspace) -> None:
    version = train(cd_ws, "dev.ml.v_metric", tags={"team": "x"})
    policy = ValidationPolicy(checks=Checks(metrics={"test_f1": Bounds(min=0.5)}))
    report = cd_ws.validate("dev.ml.v_metric", version, policy=policy)
    [result] = report.results
    assert not result.passed
    assert "has no metric 'test_f1' (its metrics: " in result.message
    assert "training_accuracy_score" in result.message


def test_validating_a_missing_version_is_an_error(cd_ws: Workspace) -> None:
    train(cd_ws, "dev.ml.v_missing", tags={"team": "x"})
    with pytest.raises(
        ModelNotFoundError, match=r"dev.ml.v_missing has no version 42 \(versions: 1\)"
    ):
        cd_ws.validate("dev.ml.v_missing", 42)


def test_the_description_check_wants_words_written_by_a_person(cd_ws: Workspace) -> None:
    """Lakeforge's own 'Trained by run ...' and 'Validation ...' lines do not count."""
    policy = ValidationPolicy(checks=Checks(description=True))
    bare = train(cd_ws, "dev.ml.v_words", tags={"team": "x"}, description=None)
    assert cd_ws.models.version("dev.ml.v_words", bare).description.startswith("Trained by run")
    [first] = cd_ws.validate("dev.ml.v_words", bare, policy=policy).results
    assert not first.passed and "no description written by a person" in first.message
    [again] = cd_ws.validate("dev.ml.v_words", bare, policy=policy).results  # after a
    assert not again.passed  # validation line was appended to the description
    described = train(cd_ws, "dev.ml.v_words", tags={"team": "x"}, description="Late arrivals.")
    [ok] = cd_ws.validate("dev.ml.v_words", described, policy=policy).results
    assert ok.passed
