"""A registered model pinned for scoring, and the scorer each worker process runs.

:func:`resolve_model` pins ``models:/name@alias`` to a version, downloads its artifacts
once (cached by name, version and source) and loads the model once, so a model that
cannot load fails before any data is read. :class:`Scorer` scores Arrow batches with
serving's type handling: integers widened to the signature's floats, the same messages
for missing or mistyped columns; rows the model fails on go to an errors table.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.features.online import OnlineStore

Features = Literal["offline", "online"]

#: Columns every scored row carries after the kept columns and the prediction(s).
META_COLUMNS = ("model_name", "model_version", "model_alias", "scored_at", "input_version")
_SCORED_AT = pa.timestamp("us", tz="UTC")
ERRORS_SCHEMA = pa.schema(
    [
        pa.field("row", pa.string()),
        pa.field("error", pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("input_version", pa.int64()),
        pa.field("scored_at", _SCORED_AT),
    ]
)
_URI = re.compile(
    r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$"
)
_PROBES = 8  # single rows tried before bisecting a failed batch


@dataclass(frozen=True)
class ModelRef:
    """A registered model version pinned for one scoring run."""

    name: str  # registered name as the registry spells it
    version: str  # pinned version
    alias: str | None  # the alias the URI named (None for a version URI)
    uri: str  # 'models:/<name>/<version>' (pinned)
    local_path: str  # downloaded model directory, loadable in any process

    @property
    def label(self) -> str:
        """``name vN @alias`` for logs and summaries."""
        return f"{self.name} v{self.version}" + (f" @{self.alias}" if self.alias else "")


# The model resolve_model loaded to check it, handed to the first in-process Scorer
# (a version loaded once in this process is not loaded again to be checked).
_checked: dict[str, Any] = {}


def resolve_model(ws: Workspace, model_uri: str) -> ModelRef:
    """Pin ``model_uri`` (``models:/name@alias``, ``models:/name/3``, ``name@alias``,
    ``name/3``) to a version, download it once and load it once.

    A model that cannot load raises :class:`LakeforgeError` with its reason.
    """
    match = _URI.fullmatch(model_uri.strip())
    if match is None:
        raise LakeforgeError(
            f"model URI {model_uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS "
            "(the models:/ prefix is optional, e.g. dev.ml.delay@champion)"
        )
    ref = match["name"] + (f"/{match['version']}" if match["version"] else f"@{match['alias']}")
    version = ws.models.resolve(ref)
    name, number = str(version.name), str(version.version)
    local = _download(ws, name, number, f"{version.source}|{version.creation_timestamp}")
    pinned = ModelRef(name, number, match["alias"], f"models:/{name}/{number}", local)
    if local not in _imports:  # not loaded in this process yet
        _checked.clear()
        _checked[local] = load_pyfunc(pinned)
    return pinned


def _download(ws: Workspace, name: str, version: str, source: str) -> str:
    """The model's artifacts in a local folder, downloaded on first use (atomic rename)."""
    import mlflow

    from lakeforge.tracking import use_target

    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    if ws.target.is_local:
        cache = Path(ws.target.path(".cache", "models"))
    else:
        cache = Path(tempfile.gettempdir()) / "lakeforge-models" / ws.project.name / ws.target.name
    folder = cache / name / f"{version}-{digest}"
    if folder.is_dir():
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder.parent))
    try:
        with use_target(ws.target):
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(staging)
            )
        try:
            staging.rename(folder)
        except OSError:  # another process cached it first
            if not folder.is_dir():
                raise
    except Exception as exc:
        raise LakeforgeError(
            f"model {name} v{version} could not be downloaded: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(folder)


def load_pyfunc(ref: ModelRef) -> Any:
    """``ref``'s pyfunc model; a model that cannot load raises with its reason."""
    import mlflow

    before = set(sys.modules)
    try:
        model = mlflow.pyfunc.load_model(ref.local_path)
    except Exception as exc:
        raise LakeforgeError(
            f"model {ref.name} v{ref.version} cannot load: {type(exc).__name__}: {exc}"
        ) from None
    loader = model.metadata.flavors.get("python_function", {}).get("loader_module")
    new = {name.partition(".")[0] for name in set(sys.modules) - before}
    _imports[ref.local_path] = sorted(new | ({loader} if loader else set()))
    return model


# Packages loading each model imported (when it was the first to need them): what a
# worker process can import before it forks, saving each worker the time.
_imports: dict[str, list[str]] = {}


def preload_modules(ref: ModelRef) -> list[str]:
    """Modules worth importing once in a fork server for workers that load ``ref``."""
    return ["lakeforge.inference._model", "mlflow.pyfunc", *_imports.get(ref.local_path, [])]


@dataclass
class ScoredBatch:
    """One batch scored: the output rows, and the rows that failed with their reasons."""

    output: pa.Table
    errors: pa.Table


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str
    required: bool


class Scorer:
    """Scores Arrow batches with one model version; picklable before :meth:`load`.

    One per worker process, which loads the model once. ``keep`` names the input columns
    the output carries (None: all of them).
    """

    def __init__(
        self,
        ref: ModelRef,
        *,
        keep: Sequence[str] | None,
        prediction: str = "prediction",
        features: Features = "offline",
        fail_fast: bool = False,
        project_dir: str,
        target: str,
    ) -> None:
        if features not in ("offline", "online"):
            raise ValueError(f"features must be 'offline' or 'online', got {features!r}")
        self.ref = ref
        self.keep = None if keep is None else list(keep)
        self.prediction = prediction
        self.features = features
        self.fail_fast = fail_fast
        self.project_dir = project_dir
        self.target = target
        self._model: Any = None
        self._store: OnlineStore | None = None
        self._columns: list[_Column] | None = None
        self._predicted: list[pa.Field] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_store": None}

    # -- loading ----------------------------------------------------------------------

    def load(self) -> None:
        """Load the model (once; later calls do nothing), attaching the online store."""
        if self._model is not None:
            return
        model = _checked.pop(self.ref.local_path, None) or load_pyfunc(self.ref)
        if self.features == "online":
            attach = getattr(_python_model(model), "use_online_store", None)
            if attach is not None:
                self._store = self._open_store()
                attach(self._store)
        self._columns = _signature_columns(model)
        self._model = model

    def _open_store(self) -> OnlineStore:
        from lakeforge.features.online import open_online_store
        from lakeforge.project import Project

        project = Project.load(self.project_dir)
        target = project.target(self.target)
        return open_online_store(target.online_store, namespace=f"{project.name}.{target.name}")

    def close(self) -> None:
        """Close the online store, if one was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    # -- checks -----------------------------------------------------------------------

    def check_input(self, schema: pa.Schema) -> None:
        """Refuse input without the signature's required columns, or with columns of a
        type the signature does not take: serving's messages."""
        from mlflow.exceptions import MlflowException
        from mlflow.models.utils import _enforce_schema

        from lakeforge.features import missing_inputs_message, widen_to_signature

        self.load()
        missing = [c for c in self.keep or [] if c not in schema.names]
        if missing:
            raise LakeforgeError(
                f"kept column(s) {', '.join(missing)} are not in the input "
                f"(columns: {', '.join(schema.names)})"
            )
        taken = [c for c in self._kept_names(schema) if c in self._added_names()]
        if taken:
            raise LakeforgeError(
                f"the input already has column(s) {', '.join(taken)}, which scoring adds; "
                "pass prediction=/--prediction, or keys=/--keys to keep fewer columns"
            )
        columns = self._columns or []
        if any(c.required and c.name not in schema.names for c in columns):
            triples = [(c.name, c.kind, c.required) for c in columns]
            raise LakeforgeError(missing_inputs_message(triples, schema.names))
        input_schema = self._model.metadata.get_input_schema()
        if input_schema is None or input_schema.is_tensor_spec():
            return
        empty = _model_frame(_naive_utc(schema.empty_table()), columns)
        try:
            _enforce_schema(widen_to_signature(empty, input_schema), input_schema)
        except MlflowException as exc:
            raise LakeforgeError(exc.message) from None

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The schema of the output for input of ``schema``: the prediction column(s) as
        the model returns them for its input example (null type when it has none)."""
        self.load()
        kept = [schema.field(n) for n in self._kept_names(schema)]
        if self._predicted is None:
            self._predicted = self._example_fields()
        return pa.schema([*kept, *self._predicted, *_meta_fields()])

    def _example_fields(self) -> list[pa.Field]:
        from lakeforge.features import scoring_env, widen_to_signature

        example = getattr(self._model, "input_example", None)
        try:
            frame = example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)
            with scoring_env(self.project_dir, self.target):
                predictions = self._model.predict(
                    widen_to_signature(frame, self._model.metadata.get_input_schema())
                )
            arrays = _prediction_arrays(predictions, len(frame), self.prediction)
        except Exception:  # no example, or one the model fails on: learnt when scoring
            return [pa.field(self.prediction, pa.null())]
        return [pa.field(name, array.type) for name, array in arrays]

    def needed_columns(self, schema: pa.Schema) -> list[str]:
        """The input columns scoring reads: the kept ones and those the model takes
        (every column for a model without a column signature)."""
        self.load()
        if self._columns is None:
            return list(schema.names)
        wanted = set(self._kept_names(schema)) | {c.name for c in self._columns}
        return [name for name in schema.names if name in wanted]

    def _kept_names(self, schema: pa.Schema) -> list[str]:
        return list(schema.names) if self.keep is None else self.keep

    def _added_names(self) -> set[str]:
        return {self.prediction, *META_COLUMNS}

    # -- scoring ----------------------------------------------------------------------

    def score(
        self,
        batch: pa.Table | pa.RecordBatch,
        *,
        input_version: int | None,
        scored_at: datetime,
    ) -> ScoredBatch:
        """Score ``batch``; rows the model fails on go to ``errors`` (``fail_fast``: raise)."""
        from lakeforge.features import scoring_env

        self.load()
        data = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        meta = _Meta(self.ref, input_version, scored_at)
        failed: list[tuple[int, str]] = []
        index = np.arange(data.num_rows)
        with scoring_env(self.project_dir, self.target):
            predictions = self._predict_rows(data, index, failed)
        if failed:
            failed.sort()
            bad = np.array([i for i, _ in failed], dtype=np.int64)
            good = np.setdiff1d(index, bad, assume_unique=True)
        else:
            good = index
        kept = data.select(self._kept_names(data.schema))
        if len(good) != data.num_rows:
            kept = kept.take(pa.array(good))
        output = _assemble(kept, predictions, self.prediction, meta)
        return ScoredBatch(output, _errors(data, failed, meta))

    def _predict_rows(
        self, data: pa.Table, rows: np.ndarray, failed: list[tuple[int, str]]
    ) -> list[tuple[np.ndarray, Any]]:
        """Predictions for ``rows`` of ``data`` as (rows, predictions) pieces in row order;
        the rows that fail are added to ``failed``."""
        part = data if len(rows) == data.num_rows else data.take(pa.array(rows))
        try:
            return [(rows, self._predict(part))]
        except Exception as exc:
            reason = _reason(exc)
            if self.fail_fast:
                raise LakeforgeError(
                    f"scoring with {self.ref.label} failed (fail_fast): {reason}"
                ) from None
            first = exc
        if len(rows) == 1:
            failed.append((int(rows[0]), reason))
            return []
        gaps = self._gaps(part)
        if gaps is not None and gaps.any() and not gaps.all():
            failed.extend((int(r), self._gap_reason(part, i)) for i, r in _where(gaps, rows))
            return self._predict_rows(data, rows[~gaps], failed)
        if gaps is not None and gaps.all():
            failed.extend((int(r), self._gap_reason(part, i)) for i, r in _where(gaps, rows))
            return []
        self._probe(data, rows, first)
        middle = len(rows) // 2
        return [
            *self._predict_rows(data, rows[:middle], failed),
            *self._predict_rows(data, rows[middle:], failed),
        ]

    def _probe(self, data: pa.Table, rows: np.ndarray, first: Exception) -> None:
        """Before bisecting, score a few single rows: a model that fails on every one is
        broken (not its input), and scoring stops with its reason."""
        picks = np.unique(np.linspace(0, len(rows) - 1, num=min(_PROBES, len(rows)), dtype=int))
        for pick in picks:
            try:
                self._predict(data.take(pa.array([rows[pick]])))
            except Exception:  # this row fails too: keep looking for one that scores
                continue
            return
        raise LakeforgeError(
            f"scoring with {self.ref.label} failed on every row tried ({len(picks)} of a "
            f"batch of {len(rows)}): {_reason(first)}"
        )

    def _predict(self, part: pa.Table) -> Any:
        from lakeforge.features import widen_to_signature

        schema = self._model.metadata.get_input_schema()
        frame = _model_frame(_naive_utc(part), self._columns)
        predictions = self._model.predict(widen_to_signature(frame, schema))
        return _prediction_arrays(predictions, part.num_rows, self.prediction)

    def _gaps(self, part: pa.Table) -> np.ndarray | None:
        """Rows with a null or non-finite value in a required column (None: no signature)."""
        required = [
            c.name for c in self._columns or [] if c.required and c.name in part.column_names
        ]
        if not required:
            return None
        mask = np.zeros(part.num_rows, dtype=bool)
        for name in required:
            mask |= _gap_mask(part.column(name))
        return mask

    def _gap_reason(self, part: pa.Table, row: int) -> str:
        names = [
            c.name
            for c in self._columns or []
            if c.required
            and c.name in part.column_names
            and _gap_mask(part.column(c.name).slice(row, 1))[0]
        ]
        return (
            "the model failed on null or non-finite values (NaN, Infinity) in required "
            f"column(s) {', '.join(map(repr, names))}; send values it accepts"
        )


@dataclass(frozen=True)
class _Meta:
    ref: ModelRef
    input_version: int | None
    scored_at: datetime


def _meta_fields() -> list[pa.Field]:
    return [
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("model_alias", pa.string()),
        pa.field("scored_at", _SCORED_AT),
        pa.field("input_version", pa.int64()),
    ]


def _assemble(
    kept: pa.Table, pieces: list[tuple[np.ndarray, Any]], prediction: str, meta: _Meta
) -> pa.Table:
    """Kept columns + prediction column(s) + the model and run columns."""
    if pieces:
        names = [name for name, _ in pieces[0][1]]
        columns = [
            pa.chunked_array([arrays[i][1] for _, arrays in pieces]) for i in range(len(names))
        ]
    else:
        names, columns = [prediction], [pa.chunked_array([], pa.null())]
    table = kept
    for name, column in zip(names, columns, strict=True):
        table = table.append_column(name, column)
    n = table.num_rows
    values = (meta.ref.name, meta.ref.version, meta.ref.alias, meta.scored_at, meta.input_version)
    for field, value in zip(_meta_fields(), values, strict=True):
        table = table.append_column(field, pa.repeat(pa.scalar(value, field.type), n))
    return table


def _errors(data: pa.Table, failed: list[tuple[int, str]], meta: _Meta) -> pa.Table:
    rows = data.take(pa.array([i for i, _ in failed], pa.int64())).to_pylist()
    n = len(failed)
    return pa.Table.from_arrays(
        [
            pa.array([json.dumps(r, default=str, sort_keys=True) for r in rows], pa.string()),
            pa.array([why for _, why in failed], pa.string()),
            pa.repeat(pa.scalar(meta.ref.name), n),
            pa.repeat(pa.scalar(meta.ref.version), n),
            pa.repeat(pa.scalar(meta.input_version, pa.int64()), n),
            pa.repeat(pa.scalar(meta.scored_at, _SCORED_AT), n),
        ],
        schema=ERRORS_SCHEMA,
    )


def _prediction_arrays(predictions: Any, rows: int, name: str) -> list[tuple[str, pa.Array]]:
    """The model's output as named Arrow arrays of ``rows`` values each."""
    if isinstance(predictions, pd.DataFrame):
        if predictions.shape[1] == 1:
            found = [(name, predictions.iloc[:, 0].to_numpy())]
        else:
            found = [(f"{name}_{c}", predictions[c].to_numpy()) for c in predictions.columns]
    else:
        values = predictions.to_numpy() if isinstance(predictions, pd.Series) else predictions
        array = np.asarray(values)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim == 2:
            found = [(f"{name}_{i}", array[:, i]) for i in range(array.shape[1])]
        else:
            found = [(name, array)]
    arrays = [(n, pa.array(v.tolist() if v.dtype == object else v)) for n, v in found]
    for _, array in arrays:
        if len(array) != rows:
            raise LakeforgeError(
                f"the model returned {len(array)} predictions for {rows} rows; batch scoring "
                "needs one prediction per row"
            )
    return arrays


def _signature_columns(model: Any) -> list[_Column] | None:
    """The model's named input columns (None: no column signature)."""
    schema = model.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    return [
        _Column(
            spec.name,
            getattr(spec.type, "name", str(spec.type)),
            bool(getattr(spec, "required", True)),
        )
        for spec in schema.inputs
    ]


def _model_frame(data: pa.Table, columns: list[_Column] | None) -> pd.DataFrame:
    """The columns the model takes (all of them without a signature), as pandas."""
    if columns is not None:
        data = data.select([c.name for c in columns if c.name in data.column_names])
    return data.to_pandas()


def _naive_utc(data: pa.Table) -> pa.Table:
    """Time-zone-aware timestamps as naive UTC (MLflow signatures carry no time zone)."""
    for index, field in enumerate(data.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            naive = pc.cast(data.column(index), pa.timestamp(field.type.unit))
            data = data.set_column(index, field.name, naive)
    return data


def _gap_mask(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    gaps = pc.is_null(column, nan_is_null=True)
    if pa.types.is_floating(column.type):
        gaps = pc.or_(gaps, pc.is_inf(column))
    return np.asarray(gaps.to_numpy(zero_copy_only=False), dtype=bool)


def _where(mask: np.ndarray, rows: np.ndarray) -> Iterator[tuple[int, int]]:
    for i in np.flatnonzero(mask):
        yield int(i), int(rows[i])


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}".strip()


def _python_model(model: Any) -> Any:
    """The PythonModel inside a loaded pyfunc (None for other flavors)."""
    try:
        return model.unwrap_python_model()
    except Exception:  # MLflow raises for flavors that are not a PythonModel
        return None
