"""The feature store: feature tables, point-in-time training sets, and the online store."""

from lakeforge.features._lookups import (
    FeatureFunction,
    FeatureLookup,
    get_function,
    register_function,
)
from lakeforge.features._publish import PublishResult, online_store, publish_table
from lakeforge.features._tables import FeatureTableInfo, FeatureTables
from lakeforge.features._training import TrainingSet, create_training_set

__all__ = [
    "FeatureFunction",
    "FeatureLookup",
    "FeatureTableInfo",
    "FeatureTables",
    "PublishResult",
    "TrainingSet",
    "create_training_set",
    "get_function",
    "online_store",
    "publish_table",
    "register_function",
]
