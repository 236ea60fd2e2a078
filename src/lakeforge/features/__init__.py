"""The feature store: feature tables, point-in-time training sets, and the online store."""

from typing import TYPE_CHECKING

from lakeforge.features._lookups import (
    FeatureFunction,
    FeatureLookup,
    get_function,
    register_function,
)
from lakeforge.features._publish import PublishResult, online_store, publish_table
from lakeforge.features._tables import FeatureTableInfo, FeatureTables
from lakeforge.features._training import TrainingSet, create_training_set

if TYPE_CHECKING:
    from lakeforge.features._models import FeatureAwareModel

__all__ = [
    "FeatureAwareModel",
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


def __getattr__(name: str) -> object:
    """Import :class:`FeatureAwareModel` lazily: it needs MLflow, the rest does not."""
    if name == "FeatureAwareModel":
        from lakeforge.features._models import FeatureAwareModel

        return FeatureAwareModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
