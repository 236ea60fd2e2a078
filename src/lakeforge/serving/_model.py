"""A loaded model version and how requests reach it.

Requests whose columns convert cleanly to the model's column signature take the fast
path: one DataFrame in the signature's order and types, passed to the flavor's predict
function, exactly what MLflow's schema enforcement would hand it. Everything else
(tensor signatures, datetimes, ambiguous types, no signature) goes through MLflow's own
parser and ``PyFuncModel.predict``, so both paths give what ``mlflow models serve`` gives.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lakeforge._frames import frame_of
from lakeforge.serving._protocol import INVALID_INPUT, Parsed, RequestError

log = logging.getLogger("lakeforge.serving")

_NUMERIC = (int, float)
_NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$")
_KINDS = ("double", "float", "long", "integer", "boolean", "string", "datetime")


class _Unconvertible(Exception):
    """The fast path cannot take these values; MLflow's parser decides."""


def _convert(values: list[Any], kind: str) -> np.ndarray:
    if kind in ("double", "float"):
        if any(isinstance(v, bool) or not (v is None or isinstance(v, _NUMERIC)) for v in values):
            raise _Unconvertible
        return np.array(values, dtype=np.float64 if kind == "double" else np.float32)
    if kind in ("long", "integer"):
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise _Unconvertible
        try:
            return np.array(values, dtype=np.int64 if kind == "long" else np.int32)
        except OverflowError:  # never narrow lossily: MLflow's parser decides
            raise _Unconvertible from None
    if kind == "boolean":
        if not all(isinstance(v, bool) for v in values):
            raise _Unconvertible
        return np.array(values, dtype=bool)
    if kind == "string":
        if not all(isinstance(v, str) for v in values):
            raise _Unconvertible
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array
    if kind == "datetime":
        if not all(isinstance(v, str) and _NAIVE_TIME.match(v) for v in values):
            raise _Unconvertible  # zoned or odd: MLflow's parser decides
        return np.array(values, dtype="datetime64[ns]")
    raise _Unconvertible


@dataclass
class LoadedModel:
    """One registered model version, loaded and warmed, ready to predict."""

    model_name: str
    version: str
    pyfunc: Any
    columns: list[tuple[str, str, bool]] | None = None  # (name, type, required) when fast
    _predict_fn: Any = field(default=None, repr=False)
    _takes_params: bool = False
    _index: pd.Index | None = field(default=None, repr=False)
    _names: list[str] = field(default_factory=list, repr=False)
    _numeric: str | None = None  # every column double (or float): the matrix fast path

    @classmethod
    def wrap(cls, model_name: str, version: str, pyfunc: Any) -> LoadedModel:
        """Inspect ``pyfunc``'s signature once to decide whether the fast path applies."""
        model = cls(model_name, str(version), pyfunc)
        metadata = pyfunc.metadata
        schema = metadata.get_input_schema()
        hinted = getattr(metadata, "_is_signature_from_type_hint", lambda: False)()
        from_example = getattr(metadata, "_is_type_hint_from_example", lambda: False)()
        if schema is None or hinted or from_example or schema.is_tensor_spec():
            return model
        specs = []
        for spec in schema.inputs:
            kind = getattr(spec.type, "name", None)
            if spec.name is None or kind not in _KINDS:
                return model
            specs.append((spec.name, kind, bool(getattr(spec, "required", True))))
        model.columns = specs
        model._names = [name for name, _, _ in specs]
        model._index = pd.Index(model._names)
        kinds = {kind for _, kind, _ in specs}
        if kinds in ({"double"}, {"float"}):
            model._numeric = "float64" if kinds == {"double"} else "float32"
        model._predict_fn = pyfunc._predict_fn
        params = inspect.signature(model._predict_fn).parameters.get("params")
        model._takes_params = params is not None and params.kind != inspect.Parameter.VAR_KEYWORD
        return model

    def frame(self, parsed: Parsed) -> pd.DataFrame | None:
        """The request as the DataFrame the flavor expects, or None to let MLflow parse it."""
        if self.columns is None or parsed.columns is None or parsed.params:
            return None
        if self._numeric and parsed.split is not None and parsed.split[0] == self._names:
            matrix = np.array(parsed.split[1])  # one call for a numeric dataframe_split
            if matrix.ndim == 2 and matrix.dtype.kind in "if":
                return pd.DataFrame(
                    matrix.astype(self._numeric, copy=False), columns=self._index, copy=False
                )
        columns = parsed.columns
        if not columns or any(required and n not in columns for n, _, required in self.columns):
            raise self._missing(columns)
        data: dict[str, np.ndarray] = {}
        try:
            for name, kind, _ in self.columns:
                values = columns.get(name)
                if values is not None:
                    data[name] = _convert(values, kind)
        except _Unconvertible:
            return None
        every = len(data) == len(self.columns)  # else optional columns are left out
        return frame_of(self._index if every else list(data), list(data.values()))

    def _missing(self, columns: dict[str, list[Any]]) -> RequestError:
        """The 400 for a request without the signature's required columns (all named)."""
        from lakeforge.features import missing_inputs_message

        return RequestError(
            400, missing_inputs_message(self.columns or [], list(columns)), INVALID_INPUT
        )

    def refusal(self, parsed: Parsed) -> RequestError | None:
        """Why the model failed on ``parsed`` when the input is at fault, as a 400.

        MLflow answers 400 when the model raises on its input. Called only once the model
        raised (so a model that takes NaN or no rows still scores them): no rows, or null or
        non-finite values in required columns, are named; anything else is the model's own
        failure (None).
        """
        if parsed.columns is not None and parsed.rows == 0:
            return RequestError(400, "the input is empty: it has no rows to score")
        if self.columns is None or parsed.columns is None:
            return None
        gaps = [
            name
            for name, _, required in self.columns
            if required and _has_gaps(parsed.columns.get(name, ()))
        ]
        if not gaps:
            return None
        return RequestError(
            400,
            f"the model failed on null or non-finite values (NaN, Infinity) in required "
            f"column(s) {', '.join(map(repr, gaps))}; send values it accepts",
        )

    def predict_frame(self, frame: pd.DataFrame) -> Any:
        """Score a frame made by :meth:`frame` (the schema is already enforced)."""
        if self._takes_params:
            return self._predict_fn(frame, params=None)
        return self._predict_fn(frame)

    def predict_request(self, parsed: Parsed, v2: bool) -> Any:
        """Score through MLflow's own parser and schema enforcement."""
        from mlflow.exceptions import MlflowException

        from lakeforge.features import widen_to_signature

        try:
            schema = self.pyfunc.metadata.get_input_schema()
            if v2 or parsed.columns is not None and schema is None:
                data: Any = widen_to_signature(pd.DataFrame(parsed.columns), schema)
                params = parsed.params
            else:
                from mlflow.pyfunc.scoring_server import _parse_json_data

                decoded = _parse_json_data(parsed.body, self.pyfunc.metadata, schema)  # type: ignore[no-untyped-call]
                data, params = decoded.data, decoded.params
            return self.pyfunc.predict(data, params=params)
        except MlflowException as exc:
            if exc.error_code in (INVALID_INPUT, "BAD_REQUEST"):
                raise RequestError(400, exc.message, exc.error_code) from None
            raise

    def invoke_mlflow(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        """Other content types (CSV, Parquet; 415 otherwise) through MLflow's own handler."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import invocations

        schema = self.pyfunc.metadata.get_input_schema()
        try:
            answer = invocations(body, content_type, self.pyfunc, schema)  # type: ignore[no-untyped-call]
        except MlflowException as exc:
            raise RequestError(400, exc.message, exc.error_code) from None
        if answer.status == 200:
            return 200, answer.response.encode()
        raise RequestError(answer.status, str(answer.response), "UNSUPPORTED_MEDIA_TYPE")

    def warm(self) -> None:
        """Score the model's input example once, off the request path."""
        example = getattr(self.pyfunc, "input_example", None)
        if example is None:
            return
        frame = pd.DataFrame(example) if not isinstance(example, pd.DataFrame) else example
        self.pyfunc.predict(frame)
        if self.columns is not None:
            columns = {c: frame[c].tolist() for c in frame.columns}
            fast = self.frame(Parsed(b"", columns, len(frame), None))
            if fast is not None:
                self.predict_frame(fast)


def _has_gaps(values: Any) -> bool:
    return any(v is None or isinstance(v, float) and not math.isfinite(v) for v in values)


def split(predictions: Any, sizes: list[int]) -> list[Any] | None:
    """Cut a batch's predictions back into one result per request (None if not row-wise)."""
    total = sum(sizes)
    try:
        if len(predictions) != total:
            return None
    except TypeError:
        return None
    parts: list[Any] = []
    start = 0
    for size in sizes:
        end = start + size
        if isinstance(predictions, pd.DataFrame | pd.Series):
            part = predictions.iloc[start:end]
            parts.append(part.reset_index(drop=True))
        else:
            parts.append(predictions[start:end])
        start = end
    return parts
