"""A loaded model version and how requests reach it.

Requests whose columns convert cleanly to the model's column signature take the fast
path: one DataFrame in the signature's order and types, passed to the flavor's predict
function, exactly what MLflow's schema enforcement would hand it. A flavor that scores a
plain matrix (a LightGBM Booster or scikit-learn API estimator over numeric columns) gets a
NumPy matrix built straight from the decoded JSON instead, checked against the signature,
with no pandas on the way. Everything else (tensor signatures, datetimes, ambiguous types,
no signature) goes through MLflow's own parser and ``PyFuncModel.predict``, so every path
gives what ``mlflow models serve`` gives.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lakeforge._frames import frame_of
from lakeforge.serving._protocol import INVALID_INPUT, Parsed, RequestError

log = logging.getLogger("lakeforge.serving")

_NUMBERS_OR_NULL = {int, float, type(None)}
_INT, _BOOL, _STR = {int}, {bool}, {str}
_NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$")
_KINDS = ("double", "float", "long", "integer", "boolean", "string", "datetime")
_SERVICE_STATUSES = (429, 503, 504)
SINGLE_THREAD_ROWS = 512
"""Below this many rows a LightGBM predict runs on one thread: OpenMP's start-up costs more
than the trees (55 us against 1.5 ms for one row on a loaded two-core host)."""


class _Unconvertible(Exception):
    """The fast path cannot take these values; MLflow's parser decides."""


def _convert(values: list[Any], kind: str) -> np.ndarray:
    # The set of exact types (as JSON decodes them) is checked in C: several times faster
    # than isinstance per value. Other types (subclasses too) are left to MLflow's parser.
    types = set(map(type, values))
    if kind in ("double", "float"):
        if not types <= _NUMBERS_OR_NULL:
            raise _Unconvertible
        return np.array(values, dtype=np.float64 if kind == "double" else np.float32)
    if kind in ("long", "integer"):
        if not types <= _INT:
            raise _Unconvertible
        try:
            return np.array(values, dtype=np.int64 if kind == "long" else np.int32)
        except OverflowError:  # never narrow lossily: MLflow's parser decides
            raise _Unconvertible from None
    if kind == "boolean":
        if not types <= _BOOL:
            raise _Unconvertible
        return np.array(values, dtype=bool)
    if kind == "string":
        if not types <= _STR:
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
    matrix_fn: Callable[[np.ndarray], Any] | None = field(default=None, repr=False)
    """Set for flavors that score a NumPy matrix in signature order (see :func:`_matrix_fn`)."""

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
        if model._numeric:
            model.matrix_fn = _matrix_fn(pyfunc, len(specs))
        return model

    @property
    def names(self) -> list[str]:
        """The signature's column names, in order (empty without a column signature)."""
        return self._names

    def frame(self, parsed: Parsed) -> pd.DataFrame | np.ndarray | None:
        """The request as the flavor takes it (a DataFrame, or a matrix for
        :attr:`matrix_fn`), or None to let MLflow parse it."""
        if self.columns is None or parsed.params:
            return None
        if parsed.matrix is not None:
            matrix = self._check_matrix(parsed.matrix)
            return self._from_matrix(matrix) if self._numeric else None
        if parsed.columns is None:
            return None
        if self._numeric and parsed.split is not None and parsed.split[0] == self._names:
            matrix = np.array(parsed.split[1])  # one call for a numeric dataframe_split
            if matrix.ndim == 2 and matrix.dtype.kind in "if":
                return self._from_matrix(matrix)
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
        if every and self.matrix_fn is not None:
            return np.column_stack(list(data.values()))
        return frame_of(self._index if every else list(data), list(data.values()))

    def _from_matrix(self, matrix: np.ndarray) -> pd.DataFrame | np.ndarray:
        """A numeric matrix in signature order, in the signature's type, as the flavor takes it."""
        assert self._numeric is not None
        matrix = matrix.astype(self._numeric, copy=False)
        if self.matrix_fn is not None:
            return matrix
        return pd.DataFrame(matrix, columns=self._index, copy=False)

    def _check_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """A V2 ``[rows, n_features]`` tensor checked against the column signature."""
        names = self._names
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise RequestError(
                400,
                f"the input tensor has shape {list(matrix.shape)}; this model takes "
                f"[rows, {len(names)}] with columns in signature order ({', '.join(names)}), "
                "or one tensor per column",
                INVALID_INPUT,
            )
        return matrix

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
        tabular = parsed.columns is not None or parsed.matrix is not None
        if tabular and parsed.rows == 0:
            return RequestError(400, "the input is empty: it has no rows to score")
        if self.columns is None or not tabular:
            return None
        columns = parsed.columns
        if parsed.matrix is not None:
            if parsed.matrix.ndim != 2 or parsed.matrix.shape[1] != len(self._names):
                return None
            columns = dict(zip(self._names, parsed.matrix.T.tolist(), strict=True))
        assert columns is not None
        gaps = [
            name
            for name, _, required in self.columns
            if required and _has_gaps(columns.get(name, ()))
        ]
        if not gaps:
            return None
        return RequestError(
            400,
            f"the model failed on null or non-finite values (NaN, Infinity) in required "
            f"column(s) {', '.join(map(repr, gaps))}; send values it accepts",
        )

    def predict_frame(self, frame: pd.DataFrame | np.ndarray) -> Any:
        """Score what :meth:`frame` made (the schema is already enforced)."""
        try:
            if isinstance(frame, np.ndarray):
                assert self.matrix_fn is not None
                return self.matrix_fn(frame)
            if self._takes_params:
                return self._predict_fn(frame, params=None)
            return self._predict_fn(frame)
        except Exception as exc:
            unavailable = service_error(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    def predict_request(self, parsed: Parsed, v2: bool) -> Any:
        """Score through MLflow's own parser and schema enforcement."""
        from mlflow.exceptions import MlflowException

        from lakeforge.features import widen_to_signature

        try:
            schema = self.pyfunc.metadata.get_input_schema()
            data: Any
            if parsed.matrix is not None:
                data = parsed.matrix
                if self.columns is not None:  # columns in signature order
                    frame = pd.DataFrame(self._check_matrix(data), columns=self._names)
                    data = widen_to_signature(frame, schema)
                params = parsed.params
            elif v2 or parsed.columns is not None and schema is None:
                data = widen_to_signature(pd.DataFrame(parsed.columns), schema)
                params = parsed.params
            else:
                from mlflow.pyfunc.scoring_server import _parse_json_data

                decoded = _parse_json_data(parsed.body, self.pyfunc.metadata, schema)  # type: ignore[no-untyped-call]
                data, params = decoded.data, decoded.params
            return self.pyfunc.predict(data, params=params)
        except MlflowException as exc:
            if exc.error_code in (INVALID_INPUT, "BAD_REQUEST"):
                raise RequestError(400, exc.message, exc.error_code) from None
            unavailable = service_error(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    def invoke_mlflow(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        """Other content types (CSV, Parquet; 415 otherwise) through MLflow's own handler."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import invocations

        schema = self.pyfunc.metadata.get_input_schema()
        try:
            answer = invocations(body, content_type, self.pyfunc, schema)  # type: ignore[no-untyped-call]
        except MlflowException as exc:
            raise service_error(exc) or RequestError(400, exc.message, exc.error_code) from None
        if answer.status == 200:
            return 200, answer.response.encode()
        raise RequestError(answer.status, str(answer.response), "UNSUPPORTED_MEDIA_TYPE")

    def warm(self) -> None:
        """Score the model's input example once, off the request path.

        A Python model with a ``warm(model_input)`` method is given the example instead: a
        model whose predict calls a remote service (a RAG chain's LLM) warms what is local
        there, so that it serves while that service is down or slow (see
        :func:`service_error` for what its requests answer meanwhile).
        """
        example = getattr(self.pyfunc, "input_example", None)
        if example is None:
            return
        frame = pd.DataFrame(example) if not isinstance(example, pd.DataFrame) else example
        own = _own_warm(self.pyfunc)
        if own is not None:
            own(frame)
            return
        self.pyfunc.predict(frame)
        if self.columns is not None:
            columns = {c: frame[c].tolist() for c in frame.columns}
            fast = self.frame(Parsed(b"", columns, len(frame), None))
            if fast is not None:
                self.predict_frame(fast)


def service_error(exc: BaseException) -> RequestError | None:
    """The answer to a model that failed because a service it calls did: an MlflowException
    with TEMPORARILY_UNAVAILABLE (503), DEADLINE_EXCEEDED (504) or REQUEST_LIMIT_EXCEEDED /
    RESOURCE_EXHAUSTED (429), answered with that status and the model's message, as
    ``mlflow models serve`` answers them. None for any other failure."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return None
    status = exc.get_http_status_code()  # type: ignore[no-untyped-call]
    if status not in _SERVICE_STATUSES:
        return None
    return RequestError(status, exc.message, exc.error_code)


def _own_warm(pyfunc: Any) -> Callable[[pd.DataFrame], Any] | None:
    """A Python model's own ``warm(model_input)`` method (logged as an object or from
    code), if it has one."""
    from lakeforge.tracking import python_model_of

    own = getattr(python_model_of(pyfunc), "warm", None)
    return own if callable(own) else None


def join(parts: list[Any]) -> Any:
    """Inputs made by :meth:`LoadedModel.frame` for one model, as one batch."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return pd.concat(parts, ignore_index=True)


def _matrix_fn(pyfunc: Any, n_columns: int) -> Callable[[np.ndarray], Any] | None:
    """A predict function over a NumPy matrix, for flavors whose pyfunc predict does
    nothing but hand the frame's values to the model (a LightGBM Booster, or a scikit-learn
    API LightGBM estimator logged with the lightgbm or sklearn flavor); None for every other
    model."""
    if pyfunc.loader_module not in ("mlflow.lightgbm", "mlflow.sklearn"):
        return None
    impl = pyfunc._model_impl
    if pyfunc._predict_fn != impl.predict:  # e.g. the sklearn flavor's predict_proba
        return None
    import lightgbm as lgb

    model = impl.get_raw_model()
    if isinstance(model, lgb.LGBMModel):
        return _estimator_fn(model, n_columns)
    if not isinstance(model, lgb.Booster) or not _plain(model, n_columns):
        return None
    return BoosterPredictor(model)


def _plain(booster: Any, n_columns: int) -> bool:
    """Whether ``booster`` scores ``n_columns`` numeric columns (no pandas categories)."""
    return not booster.pandas_categorical and booster.num_feature() == n_columns


def _estimator_fn(estimator: Any, n_columns: int) -> Callable[[np.ndarray], Any] | None:
    """What the estimator's own ``predict`` gives, from its booster: the same scores (class
    labels for a classifier) without its input checks, which warn on every NumPy input of a
    model fitted on a DataFrame. None where that predict does more: prediction-time options
    (``pred_early_stop``...) or a custom objective."""
    import lightgbm as lgb

    if not estimator.__sklearn_is_fitted__() or callable(estimator.objective_):
        return None
    if any(name.startswith("pred") for name in estimator.get_params()):
        return None
    booster = estimator.booster_
    if not _plain(booster, n_columns):
        return None
    scores = BoosterPredictor(booster)
    if not isinstance(estimator, lgb.LGBMClassifier):
        return scores
    if estimator.n_classes_ <= 2 and booster.num_model_per_iteration() != 1:
        return None
    return ClassPredictor(scores, estimator.classes_, binary=estimator.n_classes_ <= 2)


class ClassPredictor:
    """``LGBMClassifier.predict`` over a float matrix: the label of the most probable class.

    As LightGBM's own: a binary model's probability p of the second class against 1 - p (a
    tie goes to the first class), else the first of the highest probabilities; the label is
    the estimator's ``classes_`` entry (its dtype: strings stay strings).
    """

    def __init__(
        self, scores: Callable[[np.ndarray], Any], classes: np.ndarray, *, binary: bool
    ) -> None:
        self.scores = scores
        self.classes = classes
        self.binary = binary

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        scores = self.scores(matrix)
        if self.binary:
            index = (scores > 1.0 - scores).astype(np.intp)
        else:
            index = np.argmax(scores, axis=1)
        return np.take(self.classes, index)


class BoosterPredictor:
    """``Booster.predict`` over a float matrix, one row through LightGBM's single-row C API.

    ``Booster.predict`` builds a predictor per call (56 us for one row of 100 trees); the
    C API's ``SingleRowFast`` functions build it once (17 us a row), giving the same
    numbers. Its config is not for concurrent use: a thread that finds it taken, or any
    other input, goes through ``Booster.predict``.
    """

    def __init__(self, booster: Any) -> None:
        import ctypes

        from lightgbm.basic import _LIB, _safe_call  # type: ignore[attr-defined]  # its C library

        self.booster = booster
        self._lock = threading.Lock()
        self._fast: ctypes.c_void_p | None = None
        if booster.num_model_per_iteration() != 1:  # one output per row only
            return
        fast = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL, as Booster.predict
                ctypes.c_int(0),  # start_iteration
                ctypes.c_int(booster.best_iteration),  # as Booster.predict (<= 0: all)
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(booster.num_feature()),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(fast),
            )
        )
        self._fast = fast
        self._row = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._length = ctypes.c_int64()
        self._length_ref = ctypes.byref(self._length)
        self._pointer = ctypes.c_void_p
        weakref.finalize(self, _LIB.LGBM_FastConfigFree, fast)

    def __call__(self, matrix: np.ndarray) -> Any:
        if (
            self._fast is not None
            and matrix.shape[0] == 1
            and matrix.dtype == np.float64
            and matrix.flags.c_contiguous
            and self._lock.acquire(blocking=False)
        ):
            try:
                out = np.empty(1)
                code = self._row(
                    self._fast,
                    self._pointer(matrix.ctypes.data),
                    self._length_ref,
                    self._pointer(out.ctypes.data),
                )
            finally:
                self._lock.release()
            if code == 0:
                return out
        if not len(matrix):  # as LightGBM refuses the empty DataFrame MLflow's pyfunc gives it
            raise ValueError("Input data must be 2 dimensional and non empty.")
        threads = 1 if len(matrix) < SINGLE_THREAD_ROWS else 0  # 0: OpenMP's default
        return self.booster.predict(matrix, num_threads=threads)


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
