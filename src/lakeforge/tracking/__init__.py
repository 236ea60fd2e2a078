"""Experiment tracking on MLflow, per target: runs with lineage, tuning, evaluation.

Names load on first use, so the registry and the CLI can use lineage constants and the
MLflow client without importing tuning and evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

if TYPE_CHECKING:
    from lakeforge.tracking._evaluate import EvaluationError, ModelType, evaluate
    from lakeforge.tracking._history import RunNotFoundError, RunSummary, get_run, list_runs
    from lakeforge.tracking._lineage import (
        DEPLOYED_COMMIT_ENV,
        DEPLOYED_DIRTY_ENV,
        DEPLOYMENT_ENV,
        TAG_COMMIT,
        TAG_COPIED_FROM,
        TAG_DATA,
        TAG_DEPLOYMENT,
        TAG_PIPELINE,
        TAG_RUN,
        GitInfo,
        TableRead,
        git_info,
    )
    from lakeforge.tracking._mlflow import (
        TrackingError,
        check_reachable,
        client_for,
        experiment_id,
        experiment_name,
        python_model_of,
        use_target,
    )
    from lakeforge.tracking._runs import ModelLoggingError, SignatureError, Tracker, TrainingRun
    from lakeforge.tracking._runs import _default_requirements as default_requirements
    from lakeforge.tracking._runs import _flavor as flavor_of
    from lakeforge.tracking._space import SearchSpace, SearchSpaceError, parse_space
    from lakeforge.tracking._tuning import (
        TAG_STATE,
        Direction,
        Objective,
        SpaceArg,
        TrialHandle,
        TrialRecord,
        TuningError,
        TuningResult,
        tune,
    )

_HOME: dict[str, tuple[str, str]] = {
    "EvaluationError": ("_evaluate", "EvaluationError"),
    "ModelType": ("_evaluate", "ModelType"),
    "evaluate": ("_evaluate", "evaluate"),
    "RunNotFoundError": ("_history", "RunNotFoundError"),
    "RunSummary": ("_history", "RunSummary"),
    "get_run": ("_history", "get_run"),
    "list_runs": ("_history", "list_runs"),
    "DEPLOYED_COMMIT_ENV": ("_lineage", "DEPLOYED_COMMIT_ENV"),
    "DEPLOYED_DIRTY_ENV": ("_lineage", "DEPLOYED_DIRTY_ENV"),
    "DEPLOYMENT_ENV": ("_lineage", "DEPLOYMENT_ENV"),
    "TAG_COMMIT": ("_lineage", "TAG_COMMIT"),
    "TAG_COPIED_FROM": ("_lineage", "TAG_COPIED_FROM"),
    "TAG_DATA": ("_lineage", "TAG_DATA"),
    "TAG_DEPLOYMENT": ("_lineage", "TAG_DEPLOYMENT"),
    "TAG_PIPELINE": ("_lineage", "TAG_PIPELINE"),
    "TAG_RUN": ("_lineage", "TAG_RUN"),
    "GitInfo": ("_lineage", "GitInfo"),
    "TableRead": ("_lineage", "TableRead"),
    "git_info": ("_lineage", "git_info"),
    "TrackingError": ("_mlflow", "TrackingError"),
    "check_reachable": ("_mlflow", "check_reachable"),
    "client_for": ("_mlflow", "client_for"),
    "experiment_id": ("_mlflow", "experiment_id"),
    "experiment_name": ("_mlflow", "experiment_name"),
    "python_model_of": ("_mlflow", "python_model_of"),
    "use_target": ("_mlflow", "use_target"),
    "ModelLoggingError": ("_runs", "ModelLoggingError"),
    "SignatureError": ("_runs", "SignatureError"),
    "Tracker": ("_runs", "Tracker"),
    "TrainingRun": ("_runs", "TrainingRun"),
    "default_requirements": ("_runs", "_default_requirements"),
    "flavor_of": ("_runs", "_flavor"),
    "SearchSpace": ("_space", "SearchSpace"),
    "SearchSpaceError": ("_space", "SearchSpaceError"),
    "parse_space": ("_space", "parse_space"),
    "TAG_STATE": ("_tuning", "TAG_STATE"),
    "Direction": ("_tuning", "Direction"),
    "Objective": ("_tuning", "Objective"),
    "SpaceArg": ("_tuning", "SpaceArg"),
    "TrialHandle": ("_tuning", "TrialHandle"),
    "TrialRecord": ("_tuning", "TrialRecord"),
    "TuningError": ("_tuning", "TuningError"),
    "TuningResult": ("_tuning", "TuningResult"),
    "tune": ("_tuning", "tune"),
}


__getattr__ = lazy_names(__name__, _HOME)


__all__ = [
    "DEPLOYED_COMMIT_ENV",
    "DEPLOYED_DIRTY_ENV",
    "DEPLOYMENT_ENV",
    "TAG_COMMIT",
    "TAG_COPIED_FROM",
    "TAG_DATA",
    "TAG_DEPLOYMENT",
    "TAG_PIPELINE",
    "TAG_RUN",
    "TAG_STATE",
    "Direction",
    "EvaluationError",
    "GitInfo",
    "ModelLoggingError",
    "ModelType",
    "Objective",
    "RunNotFoundError",
    "RunSummary",
    "SearchSpace",
    "SearchSpaceError",
    "SignatureError",
    "SpaceArg",
    "TableRead",
    "Tracker",
    "TrackingError",
    "TrainingRun",
    "TrialHandle",
    "TrialRecord",
    "TuningError",
    "TuningResult",
    "check_reachable",
    "client_for",
    "default_requirements",
    "evaluate",
    "experiment_id",
    "experiment_name",
    "flavor_of",
    "get_run",
    "git_info",
    "list_runs",
    "parse_space",
    "python_model_of",
    "tune",
    "use_target",
]
