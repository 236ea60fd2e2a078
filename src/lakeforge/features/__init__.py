"""The feature store: feature tables, point-in-time training sets, and the online store."""

import importlib
from typing import TYPE_CHECKING

from lakeforge.features._lookups import (
    FeatureFunction,
    FeatureLookup,
    get_function,
    register_function,
)
from lakeforge.features._publish import PublishMode, PublishResult, online_store, publish_table
from lakeforge.features._tables import FeatureTableInfo, FeatureTables
from lakeforge.features._training import TrainingSet, create_training_set

if TYPE_CHECKING:
    from lakeforge.features._models import (
        FeatureAwareModel,
        log_feature_model,
        score_batch,
        widen_to_signature,
    )

# Served on first use: they need MLflow, the rest of the feature store does not.
_WITH_MLFLOW = ("FeatureAwareModel", "log_feature_model", "score_batch", "widen_to_signature")

__all__ = [
    "FeatureAwareModel",
    "FeatureFunction",
    "FeatureLookup",
    "FeatureTableInfo",
    "FeatureTables",
    "PublishMode",
    "PublishResult",
    "TrainingSet",
    "create_training_set",
    "get_function",
    "log_feature_model",
    "online_store",
    "publish_table",
    "register_function",
    "score_batch",
    "widen_to_signature",
]


def __getattr__(name: str) -> object:
    """Import the MLflow-backed names (:class:`FeatureAwareModel`, scoring) lazily."""
    if name in _WITH_MLFLOW:
        return getattr(importlib.import_module("lakeforge.features._models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
