"""Online model serving: registry-driven endpoints with hot swap and inference tables.

Endpoints are declared in ``lakeforge.yaml`` (see :class:`lakeforge.project.EndpointSpec`) and run
by ``lakeforge serve``. The heavy parts (uvicorn, MLflow, Prometheus, delta-rs) load only
when a server starts, so the project file can be validated without them: the server
functions below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'lakeforge.serving' has no attribute {name!r}")
    module, attribute = home
    value = getattr(importlib.import_module(f"lakeforge.serving.{module}"), attribute)
    globals()[name] = value
    return value


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
