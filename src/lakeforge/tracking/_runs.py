"""Training runs with lineage recorded automatically, and model logging with registration."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError
from lakeforge.events import MODEL_VERSION_CREATED, Outbox
from lakeforge.lakehouse import TableName
from lakeforge.tracking._lineage import (
    TAG_DATA,
    TAG_PIPELINE,
    TAG_PROJECT,
    TAG_RUN,
    TAG_TARGET,
    TableRead,
    git_info,
    mlflow_dataset,
    python_environment,
)
from lakeforge.tracking._mlflow import experiment_id, experiment_name, use_target

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from lakeforge.lakehouse import Lakehouse
    from lakeforge.project import Project, Target
    from lakeforge.state import StateStore

AUTOLOG_FLAVORS = ("sklearn", "lightgbm", "xgboost")
KEY_METRICS_TAG_PREFIX = "lakeforge.metric."


class SignatureError(LakeforgeError):
    """A model logged without a signature and without an input example to infer it from."""


class ModelLoggingError(LakeforgeError):
    """A model that MLflow refuses to log as given (e.g. types its safe format distrusts)."""


@dataclass
class TrainingRun:
    """The active MLflow run of a training pipeline and the table versions it has read."""

    run: Run
    client: MlflowClient
    reads: dict[tuple[TableName, int], TableRead] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    @property
    def data_versions(self) -> dict[str, int]:
        """``{table: version}`` for every table read so far."""
        return {str(table): version for table, version in self.reads}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log metrics on this run."""
        import mlflow

        mlflow.log_metrics(metrics, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters on this run."""
        import mlflow

        mlflow.log_params(params)

    def record_read(self, table: TableName, dt: DeltaTable) -> None:
        """Log a table snapshot as an MLflow dataset input, once per version."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        read = TableRead(
            table, dt.version(), dt.table_uri, _arrow_schema(dt), str(dt.metadata().id)
        )
        key = (table, read.version)
        if key in self.reads:
            return
        self.reads[key] = read
        # Through the client and this run's id: a nested run may be the active one.
        context = InputTag(key=MLFLOW_DATASET_CONTEXT, value="training")
        entity = mlflow_dataset(read)._to_mlflow_entity()
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, tags=[context])])
        self.client.set_tag(self.run_id, TAG_DATA, json.dumps(self.data_versions, sort_keys=True))


def _arrow_schema(dt: DeltaTable) -> Any:
    import pyarrow as pa

    return pa.schema(dt.schema().to_arrow())


class Tracker:
    """Experiment tracking for one target: runs, lineage, autolog and model logging."""

    def __init__(
        self,
        project: Project,
        target: Target,
        lakehouse: Lakehouse,
        state: StateStore | None = None,
    ) -> None:
        self.project = project
        self.target = target
        self.lakehouse = lakehouse
        self.state = state  # where ``model_version.created`` events go
        self._active: list[TrainingRun] = []

    @property
    def active_run(self) -> TrainingRun | None:
        return self._active[-1] if self._active else None

    @contextmanager
    def start_run(
        self,
        pipeline: str = "train",
        *,
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        autolog: bool = True,
        nested: bool = False,
    ) -> Iterator[TrainingRun]:
        """Open an MLflow run in experiment ``<project>/<pipeline>`` of this target.

        Inside the block every lakehouse table read is logged as a dataset input with its
        exact Delta version; the git commit, branch and dirty flag, the target and the
        Python environment are recorded; scikit-learn, LightGBM and XGBoost are autologged
        (parameters and metrics; models are logged explicitly with :meth:`log_model`).
        """
        import mlflow

        with use_target(self.target) as client:
            exp = experiment_id(client, self.target, experiment_name(self.project.name, pipeline))
            run_tags = {
                TAG_PROJECT: self.project.name,
                TAG_TARGET: self.target.name,
                TAG_PIPELINE: pipeline,
                **git_info(self.project.directory).tags(),
                **(tags or {}),
            }
            nested = nested or bool(self._active)
            with mlflow.start_run(
                experiment_id=exp, run_name=run_name, tags=run_tags, nested=nested
            ) as run:
                training = TrainingRun(run, client)
                if params:
                    mlflow.log_params(params)
                if not nested:
                    mlflow.log_text(python_environment(), "environment/requirements.txt")
                self._active.append(training)
                self.lakehouse.read_listeners.append(training.record_read)
                if autolog and not nested:
                    _autolog(enable=True)
                try:
                    yield training
                finally:
                    if autolog and not nested:
                        _autolog(enable=False)
                    self.lakehouse.read_listeners.remove(training.record_read)
                    self._active.pop()

    def log_model(
        self,
        model: Any,
        name: str,
        *,
        input_example: Any = None,
        signature: Any = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        pip_requirements: list[str] | None = None,
        **flavor_options: Any,
    ) -> Any:
        """Log ``model`` on the active run and register it as a new version of ``name``.

        ``name`` is ``catalog.schema.model`` in this target's catalog. The signature is
        inferred from ``input_example`` when not given; a model with neither is refused.
        The version gets a description and tags: git commit, data versions, run metrics.
        ``flavor_options`` go to the MLflow flavor's ``log_model`` (e.g. scikit-learn's
        ``skops_trusted_types``). Returns the MLflow ``ModelVersion``.
        """
        import mlflow

        training = self.active_run
        if training is None:
            raise LakeforgeError(
                "log_model needs an active run", hint="call it inside `with ws.start_run(...):`"
            )
        model_name = self.model_name(name)
        flavor, model_arg = _flavor(model)
        if signature is None:
            if input_example is None:
                raise SignatureError(
                    f"model {model_name} has no signature and no input example",
                    hint="pass input_example=X[:5] (the signature is inferred from it) or "
                    "signature=mlflow.models.infer_signature(X, model.predict(X))",
                )
            signature = mlflow.models.infer_signature(input_example, _predict(model, input_example))
        requirements = pip_requirements or _default_requirements(flavor)
        with model_logging_errors(model):
            info = flavor.log_model(
                **{model_arg: model},
                name="model",
                signature=signature,
                input_example=input_example,
                registered_model_name=str(model_name),
                pip_requirements=requirements,
                **flavor_options,
            )
        version = str(info.registered_model_version)
        client = training.client
        run = client.get_run(training.run_id)
        version_tags = {
            TAG_RUN: training.run_id,
            TAG_DATA: json.dumps(training.data_versions, sort_keys=True),
            **{k: v for k, v in run.data.tags.items() if k.startswith("lakeforge.git.")},
            **{f"{KEY_METRICS_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in run.data.metrics.items()},
            **(tags or {}),
        }
        for key, value in version_tags.items():
            client.set_model_version_tag(str(model_name), version, key, value)
        commit = run.data.tags.get("lakeforge.git.commit", "no git commit")
        client.update_model_version(
            str(model_name),
            version,
            description=description
            or f"Trained by run {training.run_id} at commit {commit[:12]} on "
            + (", ".join(f"{t}@v{v}" for t, v in training.data_versions.items()) or "no tables"),
        )
        if self.state is not None:
            Outbox(self.state).emit(
                MODEL_VERSION_CREATED,
                str(model_name),
                {
                    "version": int(version),
                    "run_id": training.run_id,
                    "data_versions": training.data_versions,
                },
            )
        return client.get_model_version(str(model_name), version)

    def model_name(self, name: str) -> TableName:
        """Parse a model name; models live in this target's catalog."""
        model = TableName.parse(name, default_catalog=self.target.catalog, kind="model")
        self.lakehouse.owner_of(model, write=True)
        return model


def _autolog(*, enable: bool) -> None:
    import importlib.util

    import mlflow

    for flavor in AUTOLOG_FLAVORS:
        library = "sklearn" if flavor == "sklearn" else flavor
        if importlib.util.find_spec(library) is None:
            continue
        module = getattr(mlflow, flavor)
        if enable:
            module.autolog(log_models=False, log_datasets=False, silent=True)
        else:
            module.autolog(disable=True)


def _flavor(model: Any) -> tuple[Any, str]:
    import mlflow

    if isinstance(model, mlflow.pyfunc.PythonModel):
        return mlflow.pyfunc, "python_model"
    package = type(model).__module__.split(".", 1)[0]
    if package == "lightgbm":
        return mlflow.lightgbm, "lgb_model"
    if package == "xgboost":
        return mlflow.xgboost, "xgb_model"
    if package == "sklearn" or hasattr(model, "get_params"):
        return mlflow.sklearn, "sk_model"
    raise LakeforgeError(
        f"cannot log a model of type {type(model).__name__}: supported are scikit-learn, "
        "LightGBM and XGBoost models and mlflow.pyfunc.PythonModel"
    )


def _predict(model: Any, example: Any) -> Any:
    if hasattr(model, "predict"):
        try:
            return model.predict(example)
        except TypeError:  # PythonModel.predict(context, model_input)
            return model.predict(None, example)
    return None


def _default_requirements(flavor: Any) -> list[str] | None:
    """The flavor's pinned requirements; skips MLflow's slow import-tracing inference."""
    getter = getattr(flavor, "get_default_pip_requirements", None)
    return list(getter()) if getter is not None else None


def log_unregistered(
    model: Any, name: str, *, input_example: Any, options: Mapping[str, Any]
) -> Any:
    """Log ``model`` on the active run with its MLflow flavor, unregistered; its ``ModelInfo``."""
    import mlflow

    flavor, model_arg = _flavor(model)
    signature = None
    if input_example is not None:
        signature = mlflow.models.infer_signature(input_example, _predict(model, input_example))
    with model_logging_errors(model):
        return flavor.log_model(
            **{model_arg: model},
            name=name,
            signature=signature,
            input_example=input_example,
            pip_requirements=_default_requirements(flavor),
            **options,
        )


@contextmanager
def model_logging_errors(model: Any) -> Iterator[None]:
    """Turn skops' refusal of a model's types into an error that says what to pass."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        found = re.search(r"Untrusted types found in the file: (\[.*?\])", str(exc))
        if found is None:
            raise
        raise ModelLoggingError(
            f"MLflow's safe (skops) format refuses the {type(model).__name__} model: it "
            f"holds types not trusted by default: {found.group(1)}",
            hint=f"once you have checked them, pass skops_trusted_types={found.group(1)} "
            "(model_options={'skops_trusted_types': [...]} for tune and evaluate)",
        ) from None
