"""The model registry per target: versions, aliases with promotion history, lineage, copies."""

from lakeforge.registry._audit import write_audit
from lakeforge.registry._gate import CHAMPION, GATED_ALIASES, PREVIOUS, ApprovalGrant
from lakeforge.registry._registry import (
    CHALLENGER,
    OUTSIDE_ACTOR,
    AliasEvent,
    Lineage,
    ModelNotFoundError,
    Registry,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "GATED_ALIASES",
    "OUTSIDE_ACTOR",
    "PREVIOUS",
    "AliasEvent",
    "ApprovalGrant",
    "Lineage",
    "ModelNotFoundError",
    "Registry",
    "write_audit",
]
