"""Online model serving: registry-driven endpoints with hot swap and inference tables.

Endpoints are declared in ``lakeforge.yaml`` (see :class:`lakeforge.project.EndpointSpec`) and run
by ``lakeforge serve``. The heavy parts (uvicorn, MLflow, Prometheus) load only when a
server starts, so the project file can be validated without them.
"""

from __future__ import annotations

from lakeforge.project import (
    AuthSpec,
    EndpointSpec,
    EntitySpec,
    InferenceTableSpec,
    ServedEntitySpec,
)

__all__ = [
    "AuthSpec",
    "EndpointSpec",
    "EntitySpec",
    "InferenceTableSpec",
    "ServedEntitySpec",
]
