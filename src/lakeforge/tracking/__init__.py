"""Experiment tracking on MLflow, per target: runs with lineage, tuning, evaluation."""

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
    "tune",
    "use_target",
]
