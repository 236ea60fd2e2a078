"""The feature store: feature tables, point-in-time training sets, and the online store."""

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names
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
        missing_inputs_message,
        scoring_env,
        widen_to_signature,
    )

# Served on first use: they need MLflow, the rest of the feature store does not.
# The MLflow-backed names load on first use.
_WITH_MLFLOW = (
    "FeatureAwareModel",
    "log_feature_model",
    "missing_inputs_message",
    "scoring_env",
    "widen_to_signature",
)

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
    "missing_inputs_message",
    "online_store",
    "publish_table",
    "register_function",
    "scoring_env",
    "widen_to_signature",
]


__getattr__ = lazy_names(__name__, dict.fromkeys(_WITH_MLFLOW, "_models"))
