"""The scorer each worker process runs over Arrow batches, with one pinned model version.

:class:`Scorer` scores Arrow batches with serving's type handling: integers widened to
the signature's floats, the same messages for missing or mistyped columns; rows the
model fails on go to an errors table. A model whose column signature is all floats (most
tabular models) takes serving's fast path: the batch's columns as one 2-D block, handed
to the flavor's predict function, exactly what MLflow's schema enforcement would give it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError
from lakeforge.inference._load import ModelRef, give_back, take_model

if TYPE_CHECKING:
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
_PROBES = 8  # single rows tried before bisecting a failed batch


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
        self._fast: _FastPath | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_store": None, "_fast": None}

    # -- loading ----------------------------------------------------------------------

    def load(self) -> None:
        """Load the model (once; later calls do nothing), attaching the online store."""
        if self._model is not None:
            return
        model = take_model(self.ref)
        if self.features == "online":
            from lakeforge.tracking import python_model_of

            attach = getattr(python_model_of(model), "use_online_store", None)
            if attach is not None:
                self._store = self._open_store()
                attach(self._store)
        self._columns = _signature_columns(model)
        self._fast = _FastPath.of(model, self._columns)
        self._model = model

    def _open_store(self) -> OnlineStore:
        from lakeforge.features.online import open_online_store
        from lakeforge.project import Project

        project = Project.load(self.project_dir)
        target = project.target(self.target)
        return open_online_store(target.online_store, namespace=f"{project.name}.{target.name}")

    def close(self) -> None:
        """Close the online store, if one was opened; else keep the model loaded for the
        next scorer of this version in this process."""
        if self._store is not None:
            self._store.close()
            self._store = None
        elif self._model is not None:
            give_back(self.ref, self._model)
        self._model = None

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

        fast = self._fast.predict(part) if self._fast is not None else None
        if fast is not None:
            return _prediction_arrays(fast, part.num_rows, self.prediction)
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


class _FastPath:
    """Serving's fast path for a column signature of floats only: the batch's columns as
    one 2-D block in the signature's order and type, passed to the flavor's predict
    function (what MLflow's schema enforcement would pass it)."""

    def __init__(self, model: Any, names: list[str], dtype: np.dtype[Any]) -> None:
        self.names = names
        self.index = pd.Index(names)
        self.dtype = dtype
        self.target = pa.from_numpy_dtype(dtype)
        self.function = model._predict_fn
        params = inspect.signature(self.function).parameters.get("params")
        self.params = params is not None and params.kind != inspect.Parameter.VAR_KEYWORD

    @classmethod
    def of(cls, model: Any, columns: list[_Column] | None) -> _FastPath | None:
        """The fast path for ``model`` (None: it takes MLflow's path)."""
        metadata = model.metadata
        hinted = getattr(metadata, "_is_signature_from_type_hint", lambda: False)()
        from_example = getattr(metadata, "_is_type_hint_from_example", lambda: False)()
        if not columns or hinted or from_example or not hasattr(model, "_predict_fn"):
            return None
        kinds = {c.kind for c in columns}
        if kinds not in ({"double"}, {"float"}) or not all(c.required for c in columns):
            return None
        dtype = np.dtype("float64" if kinds == {"double"} else "float32")
        return cls(model, [c.name for c in columns], dtype)

    def predict(self, part: pa.Table) -> Any:
        """The model's predictions for ``part``, or None when a column is missing or of a
        type other than the signature's or an integer (MLflow's path decides then)."""
        columns = []
        for name in self.names:
            if name not in part.column_names:
                return None
            column = part.column(name)
            if column.type != self.target:
                if not pa.types.is_integer(column.type):
                    return None
                column = pc.cast(column, self.target)  # checked, as widen_to_signature
            columns.append(column)
        # Column-major: each column is one contiguous copy (a row-major stack is a strided
        # one, twice as slow), and the frame's block is then pandas' own layout.
        matrix = np.empty((part.num_rows, len(columns)), dtype=self.dtype, order="F")
        for index, column in enumerate(columns):
            matrix[:, index] = column.to_numpy()
        frame = pd.DataFrame(matrix, columns=self.index, copy=False)
        return self.function(frame, params=None) if self.params else self.function(frame)


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
