"""One MLflow tracking store and registry per target.

MLflow's fluent API (``mlflow.start_run``, autolog, ``log_model``) reads process-global
URIs; :func:`use_target` points them at one target for the length of a block and puts
the previous ones back, so one process can work with several targets (e.g. a copy
from dev to staging).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from lakeforge.project import Target

_REACH_TIMEOUT_S = 3.0
_checked: set[str] = set()


class TrackingError(LakeforgeError):
    """The target's MLflow store cannot be used (unreachable, misconfigured)."""


def require_mlflow() -> None:
    """Fail with the extra to install when MLflow is missing."""
    try:
        import mlflow  # noqa: F401
    except ModuleNotFoundError:
        raise LakeforgeError(
            "experiment tracking needs MLflow", hint="pip install 'lakeforge[ml]'"
        ) from None


def check_reachable(uri: str) -> None:
    """Fail within seconds, with a clear message, when a tracking URI does not answer."""
    if uri in _checked:
        return
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=_REACH_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"cannot reach the MLflow tracking server at {uri}: {reason}",
                hint="start the server or fix mlflow_tracking_uri in lakeforge.yaml",
            ) from None
    elif scheme in ("postgresql", "mysql", "mssql"):
        import sqlalchemy as sa

        connect_args = {"connect_timeout": int(_REACH_TIMEOUT_S)}
        engine = sa.create_engine(uri, connect_args=connect_args)
        try:
            with engine.connect():
                pass
        except sa.exc.SQLAlchemyError as exc:
            reason = getattr(exc, "orig", exc)
            raise TrackingError(
                f"cannot reach the MLflow backend store {engine.url!r}: {reason}"
            ) from None
        finally:
            engine.dispose()
    elif scheme == "sqlite":
        database = uri.split(":///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    _checked.add(uri)


def client_for(target: Target) -> MlflowClient:
    """An MLflow client on the target's tracking store and registry (checked reachable)."""
    require_mlflow()
    from mlflow import MlflowClient

    check_reachable(target.mlflow_tracking_uri)
    return MlflowClient(target.mlflow_tracking_uri, target.mlflow_tracking_uri)


# What MLflow's fluent setters write to os.environ (for subprocesses), and our own quiet
# downloads: set inside use_target only, then put back as the caller had them.
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_BLOCK_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@contextmanager
def use_target(target: Target) -> Iterator[MlflowClient]:
    """Point MLflow's global tracking and registry URIs at ``target`` inside the block.

    Afterwards MLflow's URIs and the process environment are exactly as before: the
    caller's own settings (or their absence) are put back, nothing is left set.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    client = client_for(target)
    # The values set with mlflow.set_*_uri (None when never set): the public getters
    # return resolved defaults, which would then stay set.
    previous = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    environment = {name: os.environ.get(name) for name in (*_URI_ENV, *_BLOCK_ENV)}
    for name, setting in _BLOCK_ENV.items():
        os.environ.setdefault(name, setting)  # per-file progress bars are noise here
    mlflow.set_tracking_uri(target.mlflow_tracking_uri)
    mlflow.set_registry_uri(target.mlflow_tracking_uri)
    try:
        yield client
    finally:
        # None (never set) is what each setter had: it unsets without writing os.environ.
        mlflow.set_tracking_uri(previous[0])  # type: ignore[arg-type]
        mlflow.set_registry_uri(previous[1])  # type: ignore[arg-type]
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _uses_server(uri: str) -> bool:
    return uri.split(":", 1)[0].lower() in ("http", "https", "databricks")


def experiment_id(client: MlflowClient, target: Target, name: str) -> str:
    """The id of experiment ``name``, created with an artifact location under the target."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if not _uses_server(target.mlflow_tracking_uri):
        location = (
            f"{target.mlflow_artifact_root.rstrip('/')}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
        )
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # created concurrently by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def experiment_name(project: str, pipeline: str) -> str:
    """Experiments are named per project and pipeline: ``<project>/<pipeline>``."""
    return f"{project}/{pipeline}"


def python_model_of(pyfunc: Any) -> Any:
    """The ``PythonModel`` inside a loaded pyfunc, logged as an object or from code (None
    for other flavors, for which MLflow raises)."""
    from mlflow.exceptions import MlflowException

    try:
        return pyfunc.unwrap_python_model()
    except MlflowException:
        return None
