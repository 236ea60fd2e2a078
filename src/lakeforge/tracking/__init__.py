"""Experiment tracking on MLflow, per target: runs with lineage, tuning, evaluation."""

from lakeforge.tracking._lineage import GitInfo, TableRead, git_info
from lakeforge.tracking._mlflow import TrackingError, check_reachable, client_for, use_target
from lakeforge.tracking._runs import SignatureError, Tracker, TrainingRun

__all__ = [
    "GitInfo",
    "SignatureError",
    "TableRead",
    "Tracker",
    "TrackingError",
    "TrainingRun",
    "check_reachable",
    "client_for",
    "git_info",
    "use_target",
]
