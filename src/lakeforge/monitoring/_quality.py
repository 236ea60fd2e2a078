"""Model quality of one window, by scikit-learn: the profile_metrics ':table' columns.

Rows where the label or the prediction is missing are left out. A metric that is not
defined on the rows given (ROC AUC with one class present, R² of one row, anything on
no rows) is None rather than a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sklearn import metrics

from lakeforge.errors import LakeforgeError
from lakeforge.project import CLASSIFICATION_METRICS, REGRESSION_METRICS

ArrayLike: TypeAlias = pa.Array | pa.ChunkedArray | npt.NDArray[Any] | Sequence[Any]


def classification_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    y_score: ArrayLike | None = None,
    *,
    pos_label: Any = None,
) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 (binary: of the positive class; multiclass: macro),
    and from ``y_score`` ROC AUC and log loss.

    Binary ``y_score`` is the positive class's probability per row; multiclass, one row of
    probabilities per row with columns in sorted label order. The positive class is
    ``pos_label``, else ``1``/``True`` when the labels are those, else the last label in
    sorted order.
    """
    truth, pred = _column(y_true), _column(y_pred)
    score = None if y_score is None else _scores(y_score)
    _same_length(truth, pred, score)
    keep = ~(_missing(truth) | _missing(pred))
    if score is not None:
        keep &= ~np.isnan(score).reshape(len(score), -1).any(axis=1)
    truth, pred = _tidy(truth[keep]), _tidy(pred[keep])
    score = None if score is None else score[keep]
    result: dict[str, float | None] = dict.fromkeys(CLASSIFICATION_METRICS)
    if len(truth) == 0:
        return result
    classes = np.unique(np.concatenate([truth, pred]))
    binary = len(classes) <= 2 and (score is None or score.ndim == 1)
    result["accuracy_score"] = float(metrics.accuracy_score(truth, pred))
    if binary:
        positive = _positive(classes, pos_label)
        result.update(
            precision=_binary(metrics.precision_score, truth, pred, positive),
            recall=_binary(metrics.recall_score, truth, pred, positive),
            f1_score=_binary(metrics.f1_score, truth, pred, positive),
        )
        if score is not None:
            hits = truth == positive
            if 0 < hits.sum() < len(hits):
                result["roc_auc"] = float(metrics.roc_auc_score(hits, score))
            result["log_loss"] = float(metrics.log_loss(hits, score, labels=[False, True]))
        return result
    for name, fn in (
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1_score", metrics.f1_score),
    ):
        result[name] = float(fn(truth, pred, average="macro", labels=classes, zero_division=0))
    if score is not None:
        if score.ndim != 2:
            raise LakeforgeError(
                f"multiclass scores need one probability per class ({len(classes)} classes), "
                "got one number per row",
                hint="log the predicted probabilities as a list per row",
            )
        if score.shape[1] == len(classes):
            # Columns follow the sorted classes; with a class unseen in this window they
            # cannot be attributed, and the two metrics stay None.
            if len(np.unique(truth)) == len(classes):
                result["roc_auc"] = float(
                    metrics.roc_auc_score(truth, score, multi_class="ovr", labels=classes)
                )
            result["log_loss"] = float(metrics.log_loss(truth, score, labels=classes))
    return result


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float | None]:
    """MAE, RMSE, R² and MAPE (scikit-learn's: a fraction, zeros in the truth guarded by
    machine epsilon)."""
    truth = _column(y_true).astype(np.float64)
    pred = _column(y_pred).astype(np.float64)
    _same_length(truth, pred, None)
    keep = ~(np.isnan(truth) | np.isnan(pred))
    truth, pred = truth[keep], pred[keep]
    result: dict[str, float | None] = dict.fromkeys(REGRESSION_METRICS)
    if len(truth) == 0:
        return result
    result.update(
        mean_absolute_error=float(metrics.mean_absolute_error(truth, pred)),
        root_mean_squared_error=float(metrics.root_mean_squared_error(truth, pred)),
        mean_absolute_percentage_error=float(metrics.mean_absolute_percentage_error(truth, pred)),
    )
    if len(truth) > 1:
        result["r2_score"] = float(metrics.r2_score(truth, pred))
    return result


def _column(values: ArrayLike) -> npt.NDArray[Any]:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return np.asarray(values.to_numpy(zero_copy_only=False))
    return np.asarray(values)


def _scores(values: ArrayLike) -> npt.NDArray[np.float64]:
    """Probabilities as floats: one per row, or (from list cells) one row per row."""
    column = _column(values)
    if column.dtype == object:
        cells = [np.nan if cell is None else cell for cell in column]
        if any(isinstance(cell, Sequence | np.ndarray) for cell in cells):
            width = max(len(cell) for cell in cells if not isinstance(cell, float))
            column = np.array(
                [[np.nan] * width if isinstance(cell, float) else list(cell) for cell in cells]
            )
    return np.asarray(column, dtype=np.float64)


def _tidy(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Without its missing values an object column (from nullable Arrow) gets a real dtype."""
    return np.array(values.tolist()) if values.dtype == object else values


def _missing(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype == object:
        return np.array([v is None or (isinstance(v, float) and v != v) for v in values], bool)
    return np.zeros(len(values), bool)


def _same_length(
    truth: npt.NDArray[Any], pred: npt.NDArray[Any], score: npt.NDArray[Any] | None
) -> None:
    lengths = {len(truth), len(pred)} | ({len(score)} if score is not None else set())
    if len(lengths) > 1:
        raise LakeforgeError(
            f"labels, predictions and scores differ in length ({sorted(lengths)})",
            hint="pass one value per row for each",
        )


def _positive(classes: npt.NDArray[Any], pos_label: Any) -> Any:
    if pos_label is not None:
        return pos_label
    if set(classes.tolist()) <= {0, 1}:  # also False/True and 0.0/1.0
        return classes.dtype.type(1)
    return classes[-1]


def _binary(fn: Any, truth: npt.NDArray[Any], pred: npt.NDArray[Any], positive: Any) -> float:
    return float(fn(truth, pred, pos_label=positive, average="binary", zero_division=0))
