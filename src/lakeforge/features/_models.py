"""Feature-aware models: a model packaged with its feature spec, scored from keys alone.

``log_model(model, name, training_set=ts)`` wraps the trained model in an MLflow pyfunc
that carries ``feature_spec.json``. Scoring (:func:`lakeforge.inference.score_batch`,
or the pyfunc itself loaded in any process that knows the project and target) looks the
features up with the same point-in-time code as training; columns already in the input
override the looked-up values. After :meth:`FeatureAwareModel.use_online_store` the
pyfunc reads the latest published rows from that online store instead (for serving).

The model's signature requires the lookup keys (and lookup timestamps); the features
are optional inputs, so a caller may send any of them to override the lookup.

The scoring process finds the project from ``$LAKEFORGE_PROJECT_DIR`` (else the current
folder) and the target from ``$LAKEFORGE_TARGET`` (else the project's default).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from mlflow.pyfunc.model import PythonModel

from lakeforge.errors import LakeforgeError
from lakeforge.features._lookups import FeatureFunction, FeatureLookup, apply_functions
from lakeforge.features._online_lookup import OnlineFeatureLookup
from lakeforge.features._training import TrainingSet, create_training_set
from lakeforge.lakehouse import Lakehouse, can_cast, materialize, to_arrow
from lakeforge.project import TARGET_ENV, Project

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.features.online import OnlineStore

_SIGNATURE_TYPES = {  # MLflow column types that a narrower number may be widened into
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
}
SPEC_FILE = "feature_spec.json"
PROJECT_ENV = "LAKEFORGE_PROJECT_DIR"
TAG_FEATURE_TABLES = "lakeforge.feature_tables"
TAG_FEATURES = "lakeforge.features"  # {feature table: [features the model uses]}


def lookups_from_spec(
    spec: dict[str, Any], present: set[str]
) -> list[FeatureLookup | FeatureFunction]:
    """The lookups of a feature spec, without the features the input already provides."""
    found: list[FeatureLookup | FeatureFunction] = []
    for lookup in spec["lookups"]:
        features = [f for f in lookup["features"] if f["output_name"] not in present]
        if not features:
            continue
        window = lookup["lookback_window_seconds"]
        found.append(
            FeatureLookup(
                table_name=lookup["table_name"],
                lookup_key=lookup["lookup_key"],
                timestamp_lookup_key=lookup["timestamp_lookup_key"],
                lookback_window=None if window is None else timedelta(seconds=window),
                feature_names=[f["name"] for f in features],
                rename_outputs={
                    f["name"]: f["output_name"] for f in features if f["output_name"] != f["name"]
                }
                or None,
                default_values={
                    f["name"]: f["default"] for f in features if f["default"] is not None
                }
                or None,
            )
        )
    found += [
        FeatureFunction(f["udf_name"], f["input_bindings"], f["output_name"])
        for f in spec["functions"]
        if f["output_name"] not in present
    ]
    return found


def feature_frame(lakehouse: Lakehouse, spec: dict[str, Any], df: Any) -> pd.DataFrame:
    """The model's input columns for ``df``: looked up, unless ``df`` already has them."""
    data = _aware_timestamps(lakehouse, spec, materialize(to_arrow(df, what="scoring input")))
    lookups = lookups_from_spec(spec, set(data.column_names))
    if not lookups:
        return data.to_pandas()
    frame = create_training_set(lakehouse, data, lookups, label=None).load_df(format="pandas")
    assert isinstance(frame, pd.DataFrame)
    return frame


def _timestamp_tz(lakehouse: Lakehouse, lookup: dict[str, Any]) -> str | None:
    """The time zone of a lookup's timestamp key (in the spec since it was recorded there)."""
    if "timestamp_tz" in lookup:
        return cast(str | None, lookup["timestamp_tz"])
    return lakehouse.schema(lookup["table_name"]).field(lookup["timestamp_key"]).type.tz


def _aware_timestamps(lakehouse: Lakehouse, spec: dict[str, Any], data: pa.Table) -> pa.Table:
    """Naive lookup timestamps are UTC (MLflow signatures carry no time zone)."""
    for lookup in spec["lookups"]:
        column = lookup["timestamp_lookup_key"]
        if column is None or column not in data.column_names:
            continue
        kind = data.schema.field(column).type
        if pa.types.is_timestamp(kind) and kind.tz is None and _timestamp_tz(lakehouse, lookup):
            index = data.schema.get_field_index(column)
            data = data.set_column(
                index, column, pc.cast(data.column(column), pa.timestamp(kind.unit, tz="UTC"))
            )
    return data


def _naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """An input example MLflow can put in a signature: time-zone-aware columns as naive UTC."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def _model_columns(spec: dict[str, Any]) -> list[str]:
    excluded = set(spec["label"]) | set(spec["exclude_columns"])
    return [c for c in spec["model_columns"] if c not in excluded]


class FeatureAwareModel(PythonModel):
    """Looks features up for the keys it is given, then calls the trained model.

    By default it reads the offline feature tables point-in-time, opening the project
    from ``$LAKEFORGE_PROJECT_DIR`` (else the project it was trained in) on
    ``$LAKEFORGE_TARGET`` (else the target it was trained on) when a lookup is needed.
    After :meth:`use_online_store` it reads the latest rows of that online store.
    """

    def load_context(self, context: Any) -> None:
        self.spec = json.loads(Path(context.artifacts["feature_spec"]).read_text())
        self.inner = mlflow.pyfunc.load_model(context.artifacts["inner_model"])
        self._columns = _model_columns(self.spec)
        self._online: OnlineFeatureLookup | None = None
        self._lookups: dict[frozenset[str], list[FeatureLookup | FeatureFunction]] = {}
        self._opened: tuple[tuple[str, str], Lakehouse] | None = None

    def use_online_store(self, store: OnlineStore) -> None:
        """Look features up in ``store`` from now on (latest row per key, one read per table).

        Timestamps in the input are then not used; each lookup's ``lookback_window``
        becomes the read's TTL. The caller keeps ``store`` open while scoring and closes it.
        """
        self._online = OnlineFeatureLookup(self.spec, store)

    # No type hints on purpose: MLflow reads them as a (list[...]-only) input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if self._online is not None:
            return self.inner.predict(self._online.frame(pd.DataFrame(model_input), self._columns))
        return self.inner.predict(self._offline_frame(model_input)[self._columns])

    def _offline_frame(self, model_input: Any) -> pd.DataFrame:
        present = frozenset(str(c) for c in getattr(model_input, "columns", []))
        lookups = self._lookups.get(present)
        if lookups is None:
            lookups = self._lookups[present] = lookups_from_spec(self.spec, set(present))
        if not any(isinstance(lookup, FeatureLookup) for lookup in lookups):
            functions = [f for f in lookups if isinstance(f, FeatureFunction)]
            return apply_functions(pd.DataFrame(model_input).copy(), functions)
        return feature_frame(self._lakehouse(), self.spec, model_input)

    def _lakehouse(self) -> Lakehouse:
        """The feature tables' lakehouse: ``$LAKEFORGE_PROJECT_DIR`` on ``$LAKEFORGE_TARGET``,
        else the project and target the model was trained in; opened once per pair."""
        project_dir = os.environ.get(PROJECT_ENV) or self.spec["project_dir"]
        target = os.environ.get(TARGET_ENV) or self.spec["target"]
        if self._opened is None or self._opened[0] != (project_dir, target):
            project = Project.load(project_dir)
            self._opened = ((project_dir, target), Lakehouse(project, project.target(target)))
        return self._opened[1]


def log_feature_model(
    ws: Workspace,
    model: Any,
    name: str,
    *,
    training_set: TrainingSet,
    input_example: Any = None,
    **flavor_options: Any,
) -> Any:
    """Log ``model`` with ``training_set``'s feature spec as a feature-aware pyfunc version."""
    from lakeforge.tracking import default_requirements, flavor_of

    spec = training_set.feature_spec
    features = training_set.load_df(format="pandas")
    assert isinstance(features, pd.DataFrame)
    excluded = set(training_set.label) | set(training_set.exclude_columns)
    fitted = getattr(model, "feature_names_in_", None)  # scikit-learn knows what it was fit on
    model_columns = (
        [str(c) for c in fitted]
        if fitted is not None
        else [c for c in training_set.columns if c not in excluded]
    )
    spec |= {
        "model_columns": model_columns,
        "project_dir": str(ws.project.directory),
        "target": ws.target.name,
    }
    keys = [c for c in spec["input_columns"] if c not in set(training_set.label)]
    sample = features.head(5).reset_index(drop=True)
    missing = [k for k in keys if k not in sample.columns]
    if missing:  # keys left out of the training data with exclude_columns
        head = training_set.input_head(len(sample))
        if head is None:
            raise LakeforgeError(
                f"log_model: the training set excludes {', '.join(missing)} and its input "
                "was streamed, so no example of the keys is at hand; pass input_example="
            )
        sample[missing] = head.select(missing).to_pandas()
    example = _naive_utc(sample[keys]) if input_example is None else input_example
    flavor, model_arg = flavor_of(model)
    with tempfile.TemporaryDirectory(prefix="lf-fmodel-") as tmp:
        inner = Path(tmp) / "inner"
        options = {"pip_requirements": default_requirements(flavor), **flavor_options}
        flavor.save_model(**{model_arg: model}, path=str(inner), **options)  # no slow inference
        spec_file = Path(tmp) / SPEC_FILE
        spec_file.write_text(json.dumps(spec, indent=2, sort_keys=True))
        stamps = {lk["timestamp_lookup_key"] for lk in spec["lookups"]} - {None}
        signature = _signature(sample, keys, model_columns, model, stamps - set(model_columns))
        used: dict[str, list[str]] = {}
        for lookup in spec["lookups"]:
            used.setdefault(lookup["table_name"], []).extend(f["name"] for f in lookup["features"])
        return ws.tracking.log_model(
            FeatureAwareModel(),
            name,
            input_example=example,
            signature=signature,
            artifacts={"inner_model": str(inner), "feature_spec": str(spec_file)},
            tags={
                TAG_FEATURE_TABLES: json.dumps(sorted(used)),
                TAG_FEATURES: json.dumps(used, sort_keys=True),
            },
            pip_requirements=[f"mlflow=={mlflow.__version__}", *_inner_requirements(inner)],
        )


def _signature(
    head: pd.DataFrame, keys: list[str], model_columns: list[str], model: Any, stamps: set[str]
) -> Any:
    """Keys required; lookup timestamps (``stamps``: only point-in-time scoring needs them)
    and the model's other inputs (overrides) optional."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, Schema

    optional = [c for c in model_columns if c not in keys]
    inferred = infer_signature(
        _naive_utc(head[keys + optional]), model.predict(head[model_columns])
    )
    inputs = Schema(
        [
            ColSpec(spec.type, spec.name, required=spec.name in keys and spec.name not in stamps)
            for spec in inferred.inputs.inputs
        ]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs)


def _inner_requirements(path: Path) -> list[str]:
    requirements = path / "requirements.txt"
    if not requirements.exists():
        return []
    return [
        line
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.startswith("mlflow")
    ]


def widen_to_signature(frame: pd.DataFrame, schema: Any) -> pd.DataFrame:
    """``frame`` with numeric columns widened to the types of the MLflow input ``schema``.

    The lakehouse's rule for appends (:func:`~lakeforge.lakehouse._arrow.can_cast`):
    integers into floats, narrower into wider integers or floats, never a narrowing.
    MLflow's schema enforcement refuses int64 into a double column; serving takes it.
    Other columns are left for MLflow's enforcement to judge.
    """
    if schema is None or schema.is_tensor_spec() or not frame.columns.is_unique:
        return frame
    widened: dict[str, Any] = {}
    for spec in schema.inputs:
        target = _SIGNATURE_TYPES.get(getattr(spec.type, "name", ""))
        if target is None or spec.name not in frame.columns:
            continue
        column = frame[spec.name]
        if not isinstance(column.dtype, np.dtype) or column.dtype.kind not in "iuf":
            continue
        source = pa.from_numpy_dtype(column.dtype)
        if source != target and can_cast(source, target):
            # Arrow's cast, as appends do: checked (uint64 beyond int64 raises, never wraps)
            widened[spec.name] = pc.cast(pa.array(column), target).to_numpy(zero_copy_only=False)
    return frame.assign(**widened) if widened else frame


def missing_inputs_message(columns: Sequence[tuple[str, str, bool]], present: Sequence[str]) -> str:
    """Why input without the signature's required columns is refused: every
    ``(name, type, required)`` column expected, the missing ones, and the extra ones.

    Serving's 400 and batch scoring's error share this text.
    """
    expected = ", ".join(f"{name} ({kind})" for name, kind, _ in columns)
    if not present:
        return f"the input is empty: no rows, no columns (expected: {expected})"
    names = {name for name, _, _ in columns}
    missing = [name for name, _, required in columns if required and name not in present]
    extra = [name for name in present if name not in names]
    return f"Model is missing inputs {missing} (expected: {expected})" + (
        f"; extra inputs: {extra}" if extra else ""
    )


@contextmanager
def scoring_env(project_dir: str, target: str) -> Iterator[None]:
    """Point a feature-aware model's offline lookups at ``project_dir`` on ``target``
    inside the block (the environment is put back afterwards)."""
    previous = {k: os.environ.get(k) for k in (PROJECT_ENV, TARGET_ENV)}
    os.environ[PROJECT_ENV] = project_dir
    os.environ[TARGET_ENV] = target
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
