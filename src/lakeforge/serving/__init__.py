"""Online model serving: registry-driven endpoints with hot swap and inference tables.

Endpoints are declared in ``lakeforge.yaml`` (see :class:`lakeforge.project.EndpointSpec`) and run
by ``lakeforge serve``. The heavy parts (uvicorn, MLflow, Prometheus, delta-rs) load only
when a server starts, so the project file can be validated without them: the server
functions below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names
from lakeforge.project import (
    AuthSpec,
    EndpointSpec,
    EntitySpec,
    InferenceTableSpec,
    ServedEntitySpec,
)

if TYPE_CHECKING:
    from lakeforge.serving._inference_log import create_table as create_inference_table
    from lakeforge.serving._server import endpoint_for_model, prepare, select_endpoints, serve

_HOME = {
    "create_inference_table": ("_inference_log", "create_table"),
    "endpoint_for_model": ("_server", "endpoint_for_model"),
    "prepare": ("_server", "prepare"),
    "select_endpoints": ("_server", "select_endpoints"),
    "serve": ("_server", "serve"),
}


__getattr__ = lazy_names(__name__, _HOME)


__all__ = [
    "AuthSpec",
    "EndpointSpec",
    "EntitySpec",
    "InferenceTableSpec",
    "ServedEntitySpec",
    "create_inference_table",
    "endpoint_for_model",
    "prepare",
    "select_endpoints",
    "serve",
]
