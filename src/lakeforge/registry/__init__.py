"""The model registry per target: versions, aliases with promotion history, lineage, copies."""

from lakeforge.registry._registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    AliasEvent,
    Lineage,
    ModelNotFoundError,
    Registry,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "AliasEvent",
    "Lineage",
    "ModelNotFoundError",
    "Registry",
]
