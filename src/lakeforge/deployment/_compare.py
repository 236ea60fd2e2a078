"""Champion vs challenger: score both on the same held-out data and compare per metric.

With no champion yet, the challenger is compared with a baseline heuristic (the
majority class, or the mean) and with absolute thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lakeforge.deployment._checks import CheckResult, bounds_text, within
from lakeforge.project import ChampionComparison, Relative

LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "mse"}


def load_scorer(path: Path) -> Any:
    """The model in its native flavor when it has one (to reach ``predict_proba``), else pyfunc."""
    import mlflow
    from mlflow.models import Model

    flavors = Model.load(str(path)).flavors
    for flavor in ("sklearn", "lightgbm", "xgboost"):
        if flavor in flavors:
            return getattr(mlflow, flavor).load_model(str(path))
    return mlflow.pyfunc.load_model(str(path))


def score(
    model: Any, features: pd.DataFrame, labels: pd.Series, model_type: str
) -> dict[str, float]:
    """Metrics of ``model`` on held-out rows."""
    from sklearn import metrics as m

    if model_type == "regressor":
        predicted = np.asarray(model.predict(features), dtype="float64")
        return _regression(labels, predicted)
    predicted = np.asarray(model.predict(features))
    proba = None
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(features))
    return _classification(labels, predicted, proba, m)


def baseline_scores(labels: pd.Series, model_type: str) -> dict[str, float]:
    """Metrics of the majority-class predictor (classifier) or the mean predictor (regressor)."""
    from sklearn import metrics as m

    if model_type == "regressor":
        return _regression(labels, np.full(len(labels), float(labels.mean())))
    majority = labels.mode().iloc[0]
    predicted = np.full(len(labels), majority)
    classes = np.sort(labels.unique())
    prior = np.array([(labels == c).mean() for c in classes])
    return _classification(labels, predicted, np.tile(prior, (len(labels), 1)), m)


def _regression(labels: pd.Series, predicted: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as m

    mse = float(m.mean_squared_error(labels, predicted))
    return {
        "rmse": mse**0.5,
        "mse": mse,
        "mae": float(m.mean_absolute_error(labels, predicted)),
        "r2": float(m.r2_score(labels, predicted)),
    }


def _classification(
    labels: pd.Series, predicted: np.ndarray, proba: Any, m: Any
) -> dict[str, float]:
    binary = labels.nunique() <= 2
    average = "binary" if binary else "macro"
    scores = {
        "accuracy": float(m.accuracy_score(labels, predicted)),
        "precision": float(m.precision_score(labels, predicted, average=average, zero_division=0)),
        "recall": float(m.recall_score(labels, predicted, average=average, zero_division=0)),
        "f1": float(m.f1_score(labels, predicted, average=average, zero_division=0)),
    }
    if proba is not None and proba.ndim == 2:
        positive = proba[:, 1] if binary and proba.shape[1] == 2 else proba
        if binary and labels.nunique() == 2:
            scores["roc_auc"] = float(m.roc_auc_score(labels, positive))
        scores["log_loss"] = float(m.log_loss(labels, proba, labels=np.sort(labels.unique())))
    return scores


def relative_checks(
    metric: str, rule: Relative, candidate: float, reference: float, against: str
) -> list[CheckResult]:
    """``min_improvement`` and ``max_regression`` of the candidate over a reference."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    gain = sign * (candidate - reference)
    detail = f"{metric}: candidate {candidate:.6g} vs {against} {reference:.6g} (gain {gain:+.6g})"
    results = []
    if rule.min_improvement is not None:
        results.append(
            CheckResult(
                f"{against}:{metric}:min_improvement",
                gain >= rule.min_improvement,
                detail,
                value=gain,
                threshold=f"gain >= {rule.min_improvement:g}",
            )
        )
    if rule.max_regression is not None:
        results.append(
            CheckResult(
                f"{against}:{metric}:max_regression",
                -gain <= rule.max_regression,
                detail,
                value=gain,
                threshold=f"loss <= {rule.max_regression:g}",
            )
        )
    return results


def compare(
    policy: ChampionComparison,
    data: pd.DataFrame,
    candidate: Path,
    champion: Path | None,
    features: list[str],
) -> list[CheckResult]:
    """All champion-vs-challenger (or baseline / absolute) results for one candidate."""
    if policy.label not in data.columns:
        return [
            CheckResult(
                "champion:data",
                False,
                f"held-out data has no label column {policy.label!r} "
                f"(columns: {', '.join(data.columns)})",
            )
        ]
    columns = features or [c for c in data.columns if c != policy.label]
    missing = [c for c in columns if c not in data.columns]
    if missing:
        return [
            CheckResult(
                "champion:data",
                False,
                f"held-out data lacks the model's input column(s) {', '.join(missing)}",
            )
        ]
    data = data.dropna(subset=[policy.label])
    if data.empty:
        return [CheckResult("champion:data", False, "held-out data has no labelled rows")]
    X, y = data[columns], data[policy.label]
    try:
        mine = score(load_scorer(candidate), X, y, policy.model_type)
    except (ValueError, TypeError) as exc:  # e.g. a regressor under a classifier's policy
        return [
            CheckResult(
                "champion:score",
                False,
                f"cannot score the version as a {policy.model_type} on the held-out data "
                f"(label {policy.label!r}): {exc}; is this the policy meant for this model? "
                "(targets.<t>.deployment.models gives a model its own)",
            )
        ]
    results: list[CheckResult] = []
    unknown = [k for k in (*policy.metrics, *policy.absolute) if k not in mine]
    if unknown:
        results.append(
            CheckResult(
                "champion:metrics",
                False,
                f"unknown metric(s) {', '.join(unknown)} for a {policy.model_type} "
                f"(available: {', '.join(sorted(mine))})",
            )
        )
    if champion is not None:
        theirs = score(load_scorer(champion), X, y, policy.model_type)
        for metric, rule in policy.metrics.items():
            if metric in mine:
                results += relative_checks(metric, rule, mine[metric], theirs[metric], "champion")
    elif policy.baseline != "none":
        base = baseline_scores(y, policy.model_type)
        for metric, rule in policy.metrics.items():
            if metric in mine and metric in base:
                results += relative_checks(metric, rule, mine[metric], base[metric], "baseline")
    for metric, bounds in policy.absolute.items():
        if metric in mine:
            results.append(
                CheckResult(
                    f"absolute:{metric}",
                    within(mine[metric], bounds),
                    f"{metric} = {mine[metric]:.6g}",
                    value=mine[metric],
                    threshold=bounds_text(bounds),
                )
            )
    if not results:
        results.append(
            CheckResult("champion", True, "no champion yet and no baseline or absolute thresholds")
        )
    return results
