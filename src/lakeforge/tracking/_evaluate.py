"""Model evaluation on held-out data: ``mlflow.models.evaluate`` on a run of the target.

Metrics and plots land on the active run (a training run, a tuning parent) or on a new
run of pipeline ``evaluate``. A Python model is first logged on that run with its
flavor, unregistered, since MLflow evaluates logged models; a model URI or a
registered ``ModelVersion`` is used as is.
"""

from __future__ import annotations

import importlib.util
import numbers
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lakeforge.errors import LakeforgeError
from lakeforge.tracking._runs import _flavor, log_unregistered

if TYPE_CHECKING:
    import pandas as pd

    from lakeforge.tracking._runs import Tracker

ModelType = Literal["classifier", "regressor"]
EVALUATED_MODEL = "evaluated_model"
_PLOT_POINTS = 5_000


class EvaluationError(LakeforgeError):
    """An evaluation that cannot run: bad data, unknown target column, unsupported model."""


def evaluate(
    tracker: Tracker,
    model_or_uri: Any,
    data: Any,
    *,
    targets: str,
    model_type: ModelType,
    evaluators: str | list[str] | None = None,
    metric_prefix: str = "",
    model_options: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Evaluate a model on held-out ``data`` and log metrics and plots to the run.

    ``model_or_uri`` is a model URI (``runs:/...``, ``models:/name/1``), a registered
    ``ModelVersion``, a logged ``ModelInfo``, or a fitted scikit-learn, LightGBM or
    XGBoost model (logged first as artifact ``evaluated_model``). ``data`` is a pandas
    DataFrame or an Arrow table holding the feature columns and the ``targets`` column.
    Classifiers get accuracy, precision, recall, F1, log loss, ROC AUC and PR AUC with
    ROC, precision-recall, lift, calibration and confusion-matrix plots; regressors get
    MAE, MSE, RMSE, R², MAPE and max error with predicted-vs-actual and residual plots.
    ``metric_prefix`` (e.g. ``"test_"``) keeps several evaluations on one run apart;
    ``model_options`` go to the flavor's ``log_model`` (e.g. ``skops_trusted_types``).
    Returns the metrics.

    Probability metrics and plots (log loss, ROC and PR AUC, ROC, PR, lift and calibration
    curves) need a model MLflow can ask for probabilities: a scikit-learn or XGBoost
    flavor. LightGBM models (MLflow's ``lightgbm`` flavor) get the label metrics and the
    confusion matrix only.
    """
    if model_type not in ("classifier", "regressor"):
        raise EvaluationError(f"model_type must be 'classifier' or 'regressor', got {model_type!r}")
    frame = _frame(data)
    if targets not in frame.columns:
        raise EvaluationError(
            f"target column {targets!r} is not in the data; columns: {', '.join(map(str, frame.columns))}"
        )
    if len(frame) == 0:
        raise EvaluationError("the evaluation data has no rows")
    if frame.shape[1] < 2:
        raise EvaluationError(f"the evaluation data has no feature columns besides {targets!r}")
    if not _is_reference(model_or_uri):
        try:
            _flavor(model_or_uri)  # an unsupported model fails before a run is opened
        except LakeforgeError as exc:
            raise EvaluationError(exc.message) from None
    prefix, options = metric_prefix, model_options or {}
    if tracker.active_run is not None:
        return _evaluate(model_or_uri, frame, targets, model_type, evaluators, prefix, options)
    with tracker.start_run("evaluate", autolog=False):
        return _evaluate(model_or_uri, frame, targets, model_type, evaluators, prefix, options)


def _evaluate(
    model_or_uri: Any,
    frame: pd.DataFrame,
    targets: str,
    model_type: ModelType,
    evaluators: str | list[str] | None,
    prefix: str,
    options: Mapping[str, Any],
) -> dict[str, float]:
    import mlflow

    model = _model_uri(model_or_uri, frame.drop(columns=[targets]), options)
    _import_quietly("xgboost")  # MLflow's classifier evaluator imports it when installed
    result = mlflow.models.evaluate(  # type: ignore[no-untyped-call]
        model,
        frame,
        targets=targets,
        model_type=model_type,
        evaluators=evaluators,
        evaluator_config={"metric_prefix": prefix} if prefix else None,
        custom_artifacts=[_regression_plots(prefix)] if model_type == "regressor" else None,
    )
    return {
        name: float(value)
        for name, value in result.metrics.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def _frame(data: Any) -> pd.DataFrame:
    """Evaluation data as pandas: pandas as is, Arrow (or polars) converted."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    to_pandas = getattr(data, "to_pandas", None)
    if to_pandas is None:
        raise EvaluationError(
            f"evaluation data must be a pandas DataFrame or an Arrow table, got {type(data).__name__}"
        )
    frame = to_pandas()
    if not isinstance(frame, pd.DataFrame):
        raise EvaluationError(f"{type(data).__name__}.to_pandas() did not return a DataFrame")
    return frame


def _is_reference(model: Any) -> bool:
    """Whether ``model`` is passed to MLflow as is: a URI, a loaded or logged model, a function."""
    import mlflow
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

    if isinstance(model, str | mlflow.pyfunc.PyFuncModel | ModelVersion | ModelInfo):
        return True
    return not hasattr(model, "predict") and callable(model)


def _model_uri(model: Any, features: pd.DataFrame, options: Mapping[str, Any]) -> Any:
    """What ``mlflow.models.evaluate`` takes: a URI, a ``PyFuncModel``, or a function."""
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

    if isinstance(model, ModelVersion):
        return f"models:/{model.name}/{model.version}"
    if isinstance(model, ModelInfo):
        return model.model_uri
    if _is_reference(model):
        return model
    example = features.head(5)
    info = log_unregistered(model, EVALUATED_MODEL, input_example=example, options=options)
    return info.model_uri


def _import_quietly(module: str) -> None:
    """Import ``module`` if installed, without the ImportWarning MLflow's import hooks raise."""
    if module in sys.modules or importlib.util.find_spec(module) is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        importlib.import_module(module)


def _regression_plots(prefix: str) -> Any:
    """A custom artifact for MLflow: predicted-vs-actual and residual plots (PNG)."""

    def regression_plots(
        eval_df: pd.DataFrame, _metrics: dict[str, Any], artifacts_dir: str
    ) -> dict[str, str]:
        from matplotlib.figure import Figure

        sample = eval_df.sample(min(len(eval_df), _PLOT_POINTS), random_state=0)
        actual, predicted = sample["target"], sample["prediction"]
        paths = {}
        fig = Figure(figsize=(6, 5))
        ax = fig.subplots()
        ax.scatter(actual, predicted, s=4, alpha=0.4)
        low, high = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
        ax.plot([low, high], [low, high], color="black", linewidth=1)
        ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
        paths[f"{prefix}predicted_vs_actual_plot"] = _save(fig, artifacts_dir, "pva.png")
        fig = Figure(figsize=(6, 5))
        ax = fig.subplots()
        ax.scatter(predicted, actual - predicted, s=4, alpha=0.4)
        ax.axhline(0, color="black", linewidth=1)
        ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals")
        paths[f"{prefix}residuals_plot"] = _save(fig, artifacts_dir, "residuals.png")
        return paths

    return regression_plots


def _save(fig: Any, directory: str, name: str) -> str:
    path = str(Path(directory) / name)
    fig.savefig(path, bbox_inches="tight")
    return path
