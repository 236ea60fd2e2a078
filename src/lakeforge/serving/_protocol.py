"""Wire formats: the MLflow scoring protocol and the Open Inference Protocol (V2).

Requests become *columns* (name -> list of values) whenever the payload is tabular,
so a model with a column signature can be scored without MLflow's slower parser; a V2
request with one ``[rows, n_features]`` tensor becomes a NumPy *matrix* instead.
Anything else is kept as the raw body and handed to MLflow's own parser
(:func:`mlflow_parse`), so every payload ``mlflow models serve`` accepts is accepted.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
INVALID_INPUT = "INVALID_PARAMETER_VALUE"  # MLflow's error code for input the schema refuses
_V2_TYPES = {
    "BOOL": "bool",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_MATRIX_TYPES = [t for t in _V2_TYPES if t not in ("BOOL", "BYTES")]
_V2_OF_NUMPY = {np.dtype(n): t for t, n in _V2_TYPES.items() if n != "object"}


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message naming what was wrong."""

    def __init__(self, status: int, message: str, error_code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def body(self, v2: bool = False) -> bytes:
        """MLflow's error body, or the Open Inference Protocol's ``{"error": ...}``."""
        if v2:
            return orjson.dumps({"error": self.message, "error_code": self.error_code})
        return orjson.dumps({"error_code": self.error_code, "message": self.message})


@dataclass
class Parsed:
    """A decoded request: tabular ``columns`` when recognised, plus params and the raw body."""

    body: bytes
    columns: dict[str, list[Any]] | None
    rows: int
    params: dict[str, Any] | None
    client_request_id: str | None = None
    split: tuple[list[str], list[list[Any]]] | None = None  # dataframe_split: names, rows
    matrix: np.ndarray | None = None  # V2's one [rows, n_features] tensor (columns is None)


def _decode(body: bytes) -> Any:
    """orjson, and only where it refuses, the standard parser MLflow uses: it also takes
    the ``NaN``, ``Infinity`` and ``-Infinity`` that Python's ``json.dumps`` writes."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        return json.loads(body)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise RequestError(400, f"request body is not valid JSON: {error}") from None


def _records(records: list[Any]) -> dict[str, list[Any]] | None:
    if not all(isinstance(r, dict) for r in records):
        return None
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {name: [r.get(name) for r in records] for name in names}


def _columns(fmt: str, data: Any) -> dict[str, list[Any]] | None:
    """Tabular payloads as columns; None for shapes left to MLflow's parser."""
    if fmt == "dataframe_split":
        if not isinstance(data, dict) or "columns" not in data or "data" not in data:
            return None
        names, rows = data["columns"], data["data"]
        if not isinstance(names, list) or not isinstance(rows, list):
            return None
        if not all(isinstance(r, list) and len(r) == len(names) for r in rows):
            return None
        columns = {str(n): [r[i] for r in rows] for i, n in enumerate(names)}
        if len(columns) != len(names):
            twice = [n for n, count in Counter(str(n) for n in names).items() if count > 1]
            raise RequestError(
                400,
                f"dataframe_split has duplicate column(s) {', '.join(map(repr, twice))}: "
                "each column may appear once",
                INVALID_INPUT,
            )
        return columns
    if isinstance(data, list):
        return _records(data)
    columnar = isinstance(data, dict) and all(isinstance(v, list) for v in data.values())
    if fmt in ("instances", "inputs") and columnar and len({len(v) for v in data.values()}) == 1:
        return {str(k): v for k, v in data.items()}
    return None


def parse_mlflow(body: bytes, client_request_id: str | None = None) -> Parsed:
    """Decode an MLflow scoring request (``dataframe_split``, ``dataframe_records``, ...)."""
    decoded = _decode(body)
    if not isinstance(decoded, dict):
        raise RequestError(
            400, f"the request must be a JSON object with one of {', '.join(MLFLOW_FORMATS)}"
        )
    formats = [key for key in MLFLOW_FORMATS if key in decoded]
    if len(formats) != 1:
        raise RequestError(
            400,
            f"the request must have exactly one of {', '.join(MLFLOW_FORMATS)} "
            f"(got fields: {', '.join(decoded) or 'none'})",
        )
    params = decoded.get("params")
    client = decoded.get("client_request_id")
    if client_request_id is None and isinstance(client, str):
        client_request_id = client
    if params is not None and not isinstance(params, dict):
        raise RequestError(400, f"params must be a JSON object (got {type(params).__name__})")
    columns = _columns(formats[0], decoded[formats[0]])
    rows = len(next(iter(columns.values()))) if columns else 0
    split = None
    if columns is not None and formats[0] == "dataframe_split":
        split = (list(columns), decoded["dataframe_split"]["data"])
    return Parsed(body, columns, rows, params, client_request_id, split)


def parse_v2(
    body: bytes, client_request_id: str | None = None, names: Collection[str] = ()
) -> tuple[Parsed, str | None]:
    """Decode an Open Inference Protocol request: named input tensors become columns, and
    one 2-D tensor not named after a column in ``names`` (the model's) becomes a matrix."""
    decoded = _decode(body)
    inputs = decoded.get("inputs") if isinstance(decoded, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, "the request must have a non-empty 'inputs' list of tensors")
    parameters = decoded.get("parameters")
    params = parameters if isinstance(parameters, dict) and parameters else None
    request_id = decoded.get("id")
    v2_id = str(request_id) if request_id is not None else None
    single = inputs[0] if len(inputs) == 1 and isinstance(inputs[0], dict) else None
    if single is not None and _is_matrix(single, names):
        matrix = _matrix(single)
        return Parsed(body, None, len(matrix), params, client_request_id, matrix=matrix), v2_id
    columns: dict[str, list[Any]] = {}
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise RequestError(400, f"{where} must be an object with name, datatype and data")
        name, datatype, data = tensor.get("name"), tensor.get("datatype"), tensor.get("data")
        if not isinstance(name, str) or not name:
            raise RequestError(400, f"{where}: 'name' is missing")
        if datatype not in _V2_TYPES:
            raise RequestError(
                400, f"{where} ({name}): datatype {datatype!r} is not one of {', '.join(_V2_TYPES)}"
            )
        if not isinstance(data, list):
            raise RequestError(400, f"{where} ({name}): 'data' must be a list")
        if name in columns:
            raise RequestError(
                400, f"{where}: tensor {name!r} appears more than once (each input once)"
            )
        nested = data and isinstance(data[0], list)
        columns[name] = np.asarray(data, dtype=object).reshape(-1).tolist() if nested else data
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise RequestError(400, f"input tensors must have the same length (got {lengths})")
    rows = next(iter(lengths.values()))
    return Parsed(body, columns, rows, params, client_request_id), v2_id


def _is_matrix(tensor: dict[str, Any], names: Collection[str]) -> bool:
    """Whether one input tensor is ``[rows, n_features]`` rather than one column."""
    shape = tensor.get("shape")
    named = tensor.get("name")
    return bool(names) and isinstance(shape, list) and len(shape) == 2 and named not in names


def _matrix(tensor: dict[str, Any]) -> np.ndarray:
    """A ``[rows, n_features]`` tensor (row-major ``data``, flat or nested) as a matrix."""
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor["shape"]
    where = f"inputs[0] ({name})"
    if datatype not in _MATRIX_TYPES:
        raise RequestError(
            400,
            f"{where}: a [rows, n_features] tensor has datatype {datatype!r}; allowed: "
            f"{', '.join(_MATRIX_TYPES)}",
        )
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise RequestError(400, f"{where}: shape {shape} must be two whole numbers >= 0")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(400, f"{where}: 'data' must be a list")
    refused = RequestError(
        400, f"{where}: 'data' must hold numbers (null for a missing float) of datatype {datatype}"
    )
    try:
        raw = np.asarray(data)
        if raw.dtype.kind == "O" and any(
            v is not None and (isinstance(v, bool) or not isinstance(v, int | float))
            for v in raw.reshape(-1)
        ):
            raise refused
        if raw.dtype.kind not in "iufO" and raw.size:
            raise refused
        array = raw.astype(_V2_TYPES[datatype])
        if array.dtype.kind in "iu" and raw.size and not _same_integers(raw, array):
            raise refused
    except (TypeError, ValueError, OverflowError) as exc:
        refused.message = f"{refused.message} ({exc})"
        raise refused from None
    if array.size != shape[0] * shape[1]:
        raise RequestError(
            400,
            f"{where}: shape {shape} needs {shape[0] * shape[1]} values; 'data' has {array.size}",
        )
    return array.reshape(shape)


def _same_integers(raw: np.ndarray, array: np.ndarray) -> bool:
    """Whether ``raw`` was whole numbers that ``array``'s integer type holds unchanged."""
    return raw.dtype.kind in "iu" and bool(np.array_equal(raw, array))


def jsonable(predictions: Any) -> Any:
    """Predictions as MLflow's scoring server writes them (DataFrames as records)."""
    if _plain(predictions):
        return predictions  # orjson writes it as MLflow's ``tolist()`` would, without the copy
    from mlflow.utils.proto_json_utils import _get_jsonable_obj

    return _get_jsonable_obj(predictions, pandas_orient="records")  # type: ignore[no-untyped-call]


def _plain(value: Any) -> bool:
    """A NumPy array of numbers or booleans that orjson serialises as it is."""
    return (
        isinstance(value, np.ndarray)
        and value.dtype.kind in "biuf"
        and value.dtype.byteorder in "=|"
        and value.flags.c_contiguous
    )


def dumps(value: Any) -> bytes:
    """JSON with NumPy values, as compact bytes."""
    return orjson.dumps(
        value,
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        default=_fallback,
    )


def _fallback(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def v2_outputs(predictions: Any) -> list[dict[str, Any]]:
    """Predictions as Open Inference Protocol output tensors (one per output column)."""
    if isinstance(predictions, pd.DataFrame):
        named = {str(c): predictions[c].to_numpy() for c in predictions.columns}
    elif isinstance(predictions, pd.Series):
        named = {"predict": predictions.to_numpy()}
    else:
        named = {"predict": np.asarray(predictions)}
    outputs = []
    for name, array in named.items():
        outputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": _V2_OF_NUMPY.get(array.dtype, "BYTES"),
                "data": flat if _plain(flat := array.reshape(-1)) else flat.tolist(),
            }
        )
    return outputs


# -- HTTP: headers, bearer tokens, bodies -------------------------------------------------


def header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def bearer_digest(headers: dict[bytes, bytes]) -> str | None:
    """The SHA-256 hex digest of the request's bearer token (None: no bearer token)."""
    value = header(headers, b"authorization")
    if value is None or not value.lower().startswith("bearer "):
        return None
    return hashlib.sha256(value[7:].strip().encode()).hexdigest()


def check_token(name: str, tokens: frozenset[str], headers: dict[bytes, bytes]) -> None:
    """Refuse (401/403) a request whose bearer token's SHA-256 is not in ``tokens``."""
    if not tokens:
        return
    digest = bearer_digest(headers)
    if digest is None:
        raise RequestError(401, f"endpoint {name!r} needs a bearer token", "UNAUTHENTICATED")
    if digest not in tokens:
        raise RequestError(
            403, f"the token is not valid for endpoint {name!r}", "PERMISSION_DENIED"
        )


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit_mb: float) -> bytes:
    limit = int(limit_mb * 1024 * 1024)
    too_big = RequestError(
        413,
        f"the payload is larger than this endpoint's max_payload_mb ({limit_mb:g} MB)",
        "PAYLOAD_TOO_LARGE",
    )
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
