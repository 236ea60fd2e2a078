"""Experiment tracking on MLflow, per target: runs with lineage, tuning, evaluation."""

from lakeforge.tracking._evaluate import EvaluationError, evaluate
from lakeforge.tracking._history import RunNotFoundError, RunSummary, get_run, list_runs
from lakeforge.tracking._lineage import GitInfo, TableRead, git_info
from lakeforge.tracking._mlflow import TrackingError, check_reachable, client_for, use_target
from lakeforge.tracking._runs import ModelLoggingError, SignatureError, Tracker, TrainingRun
from lakeforge.tracking._space import SearchSpace, SearchSpaceError, parse_space
from lakeforge.tracking._tuning import (
    TAG_STATE,
    TrialHandle,
    TrialRecord,
    TuningError,
    TuningResult,
    tune,
)

__all__ = [
    "TAG_STATE",
    "EvaluationError",
    "GitInfo",
    "ModelLoggingError",
    "RunNotFoundError",
    "RunSummary",
    "SearchSpace",
    "SearchSpaceError",
    "SignatureError",
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
    "evaluate",
    "get_run",
    "git_info",
    "list_runs",
    "parse_space",
    "tune",
    "use_target",
]
