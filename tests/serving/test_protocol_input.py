"""Request decoding and the fast path's conversions, without a server."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from lakeforge.serving._model import LoadedModel
from lakeforge.serving._protocol import Parsed, RequestError, parse_mlflow, parse_v2


def test_nan_and_infinity_literals_decode_as_python_json_writes_them() -> None:
    body = json.dumps(
        {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[math.nan, math.inf, -math.inf]]}}
    ).encode()
    assert b"NaN" in body and b"-Infinity" in body  # what json.dumps writes
    parsed = parse_mlflow(body)
    assert parsed.columns is not None
    assert math.isnan(parsed.columns["a"][0])
    assert parsed.columns["b"] == [math.inf] and parsed.columns["c"] == [-math.inf]
    v2 = b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [NaN]}]}'
    assert math.isnan(parse_v2(v2)[0].columns["a"][0])  # type: ignore[index]
    with pytest.raises(RequestError, match="not valid JSON"):
        parse_mlflow(b'{"dataframe_split": {"columns": ["a"], "data": [[nan]]}}')


def test_a_duplicate_column_is_refused_by_name() -> None:
    body = {"dataframe_split": {"columns": ["a", "b", "a"], "data": [[1.0, 2.0, 3.0]]}}
    with pytest.raises(RequestError, match=r"duplicate column\(s\) 'a'") as raised:
        parse_mlflow(json.dumps(body).encode())
    assert raised.value.status == 400
    tensor = {"name": "a", "datatype": "FP64", "shape": [1], "data": [1.0]}
    with pytest.raises(RequestError, match="'a' appears more than once"):
        parse_v2(json.dumps({"inputs": [tensor, tensor]}).encode())


def _model(columns: list[tuple[str, str, bool]]) -> LoadedModel:
    names = [name for name, _, _ in columns]
    return LoadedModel("m", "1", None, columns=columns, _names=names, _index=pd.Index(names))


def test_every_missing_column_is_named_and_an_empty_input_says_so() -> None:
    model = _model([("a", "double", True), ("b", "double", True), ("c", "long", True)])
    with pytest.raises(RequestError, match=r"missing inputs \['a', 'b', 'c'\]"):
        model.frame(Parsed(b"", {"z": [1.0]}, 1, None))
    for body in (b'{"dataframe_records": []}', b'{"inputs": []}', b'{"instances": []}'):
        with pytest.raises(RequestError, match="the input is empty") as raised:
            model.frame(parse_mlflow(body))
        assert "missing" not in raised.value.message


def test_a_narrowing_that_would_overflow_is_left_to_mlflow() -> None:
    model = _model([("n", "integer", True)])
    assert model.frame(Parsed(b"", {"n": [2**40]}, 1, None)) is None  # not an OverflowError
    frame = model.frame(Parsed(b"", {"n": [7]}, 1, None))
    assert frame is not None and frame["n"].dtype == "int32"
