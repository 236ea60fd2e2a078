"""Model-quality metrics: hand-computed values, scikit-learn's, and undefined cases."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics

from lakeforge.errors import LakeforgeError
from lakeforge.monitoring._quality import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    classification_metrics,
    regression_metrics,
)


def test_binary_by_hand() -> None:
    # tp=2 (rows 2, 5), fp=0, fn=1 (row 3), tn=2.
    got = classification_metrics([0, 1, 1, 0, 1], [0, 1, 0, 0, 1], [0.1, 0.9, 0.4, 0.2, 0.8])
    assert got["accuracy_score"] == pytest.approx(4 / 5)
    assert (got["precision"], got["recall"]) == (1.0, pytest.approx(2 / 3))
    assert got["f1_score"] == pytest.approx(0.8)
    assert got["roc_auc"] == 1.0  # every positive scored above every negative
    expected = -np.mean(np.log([0.9, 0.9, 0.4, 0.8, 0.8]))
    assert got["log_loss"] == pytest.approx(expected)


def test_positive_class_is_one_true_or_the_last_label() -> None:
    flags = classification_metrics(pa.array([True, True, False]), pa.array([True, False, False]))
    assert (flags["precision"], flags["recall"]) == (1.0, 0.5)
    words = classification_metrics(["no", "yes", "yes"], ["yes", "yes", "no"])
    assert (words["precision"], words["recall"]) == (0.5, 0.5)  # "yes" is positive
    chosen = classification_metrics(["no", "yes", "yes"], ["yes", "yes", "no"], pos_label="no")
    assert (chosen["precision"], chosen["recall"]) == (0.0, 0.0)
    only_zeros = classification_metrics([0, 0], [0, 1])
    assert only_zeros["precision"] == 0.0  # the positive class is still 1


def test_multiclass_is_macro_and_equals_sklearn() -> None:
    rng = np.random.default_rng(2)
    truth = rng.choice(["a", "b", "c"], 300)
    pred = np.where(rng.random(300) < 0.7, truth, rng.choice(["a", "b", "c"], 300))
    proba = rng.dirichlet([1, 1, 1], 300)
    got = classification_metrics(truth, pred, pa.array(proba.tolist()))
    assert got["precision"] == pytest.approx(metrics.precision_score(truth, pred, average="macro"))
    assert got["recall"] == pytest.approx(metrics.recall_score(truth, pred, average="macro"))
    assert got["f1_score"] == pytest.approx(metrics.f1_score(truth, pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(truth, proba, multi_class="ovr", labels=["a", "b", "c"])
    )
    assert got["log_loss"] == pytest.approx(metrics.log_loss(truth, proba, labels=["a", "b", "c"]))


def test_missing_labels_are_left_out_and_undefined_metrics_are_none() -> None:
    got = classification_metrics(pa.array([1, None, 1]), pa.array([1, 0, 0]), [0.9, 0.5, 0.3])
    assert got["accuracy_score"] == 0.5
    assert got["roc_auc"] is None  # one class present
    assert got["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.3])))
    assert classification_metrics([], []) == dict.fromkeys(CLASSIFICATION_METRICS)
    unseen = classification_metrics(["a", "b", "c"], ["a", "b", "b"], [[0.5, 0.5]] * 3)
    assert unseen["roc_auc"] is None and unseen["log_loss"] is None


def test_bad_classification_input_is_refused() -> None:
    with pytest.raises(LakeforgeError, match="differ in length"):
        classification_metrics([0, 1], [0])
    with pytest.raises(LakeforgeError, match="one probability per class"):
        classification_metrics(["a", "b", "c"], ["a", "b", "c"], [0.1, 0.2, 0.3])


def test_regression_equals_sklearn() -> None:
    truth = np.array([3.0, -0.5, 2.0, 7.0, np.nan])
    pred = np.array([2.5, 0.0, 2.0, 8.0, 1.0])
    got = regression_metrics(truth, pa.array(pred))
    t, p = truth[:4], pred[:4]
    assert got == {
        "mean_absolute_error": pytest.approx(0.5),
        "root_mean_squared_error": pytest.approx(np.sqrt(0.375)),
        "r2_score": pytest.approx(metrics.r2_score(t, p)),
        "mean_absolute_percentage_error": pytest.approx(
            metrics.mean_absolute_percentage_error(t, p)
        ),
    }
    assert regression_metrics([1.0], [2.0])["r2_score"] is None
    assert regression_metrics([], []) == dict.fromkeys(REGRESSION_METRICS)
