"""Inference tables as monitor sources: MLflow request/response JSON unpacked into rows,
serving health per window and model version, and labels that arrive late."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakeforge import Workspace
from lakeforge.errors import SchemaMismatchError
from lakeforge.monitoring import create_monitor, output_tables, refresh
from lakeforge.monitoring._sources import unpack
from lakeforge.project import MonitorSpec
from lakeforge.serving import create_inference_table

LOG = "dev.serving.scorer_log"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def log_row(
    request: dict[str, Any] | str,
    predictions: Any,
    *,
    at: datetime = T0,
    status: int = 200,
    latency: float = 10.0,
    version: str = "1",
    request_id: str | None = None,
    shadow: bool = False,
) -> dict[str, Any]:
    """One row as the serving layer writes it (serving/_inference_log.py's SCHEMA)."""
    return {
        "request_id": request_id or f"r{at.timestamp()}-{latency}",
        "client_request_id": None,
        "date": at.date(),
        "timestamp_ms": int(at.timestamp() * 1000),
        "status_code": status,
        "execution_time_ms": latency,
        "sampling_fraction": 1.0,
        "request": request if isinstance(request, str) else json.dumps(request),
        "response": json.dumps({"predictions": predictions})
        if status < 400
        else json.dumps({"error_code": "INTERNAL_ERROR"}),
        "endpoint_name": "scorer",
        "served_entity": f"m-{version}",
        "model_name": "dev.ml.m",
        "model_version": version,
        "alias": "champion",
        "shadow": shadow,
    }


def write_log(ws: Workspace, rows: list[dict[str, Any]]) -> None:
    create_inference_table(ws, LOG)
    ws.tables.write(LOG, pa.Table.from_pylist(rows, ws.tables.schema(LOG)))


SPEC = MonitorSpec(
    name="scorer",
    table="serving.scorer_log",
    profile="inference",
    problem_type="classification",
    prediction_col="prediction",
    granularities=["1 hour"],
)


def test_every_mlflow_request_format_is_unpacked_into_one_row_per_record(ws: Workspace) -> None:
    rows = [
        log_row(
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, "x"], [2.0, "y"]]}},
            [0, 1],
            request_id="split",
        ),
        log_row({"dataframe_records": [{"a": 3.0, "b": "z"}]}, [1], request_id="records"),
        log_row({"inputs": {"a": [4.0, 5.0], "b": ["x", "x"]}}, [0, 0], request_id="inputs"),
        log_row({"instances": [{"a": 6.0, "b": "y"}]}, [{"prediction": 1}], request_id="inst"),
        log_row({"dataframe_records": [{"a": 9.0}]}, None, status=500, request_id="failed"),
        log_row({"dataframe_records": [{"a": 7.0}]}, [1], shadow=True, request_id="shadow"),
    ]
    write_log(ws, rows)
    records = unpack(ws.tables.read(LOG), SPEC)
    assert records.column("request_id").to_pylist() == [
        "split", "split", "records", "inputs", "inputs", "inst",
    ]  # fmt: skip
    assert records.column("record_index").to_pylist() == [0, 1, 0, 0, 1, 0]
    assert records.column("a").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert records.column("b").to_pylist() == ["x", "y", "z", "x", "x", "y"]
    assert records.column("prediction").to_pylist() == [0, 1, 1, 0, 0, 1]
    assert records.column("model_version").to_pylist() == ["1"] * 6
    assert set(records.column("timestamp").to_pylist()) == {T0}


def test_serving_health_per_window_and_model_version(ws: Workspace) -> None:
    record = {"dataframe_records": [{"a": 1.0}]}
    rows = [
        log_row(record, [1], at=T0 + timedelta(minutes=i), latency=lat, status=status)
        for i, (lat, status) in enumerate([(10.0, 200), (20.0, 200), (30.0, 503), (40.0, 200)])
    ]
    rows.append(log_row(record, [0], at=T0 + timedelta(minutes=5), latency=99.0, version="2"))
    rows.append(log_row(record, [0], at=T0 + timedelta(hours=1), latency=5.0, version="2"))
    write_log(ws, rows)
    create_monitor(ws, SPEC)
    result = refresh(ws, "scorer")
    assert [start.hour for start, _end in result.windows] == [10, 11]
    profile = ws.tables.read(output_tables(ws, "scorer")[0], filter="column_name = ':table'")
    by_key = {
        (r["window_start"].hour, r["model_version"]): r
        for r in profile.to_pylist()
        if r["slice_key"] is None
    }
    v1 = by_key[(10, "1")]
    # four requests, one failed: three scored records; latencies 10, 20, 30, 40 ms
    assert (v1["request_count"], v1["count"], v1["error_rate"]) == (4, 3, 0.25)
    assert v1["latency_p50_ms"] == pytest.approx(25.0)
    assert v1["latency_p95_ms"] == pytest.approx(38.5)
    assert v1["latency_p99_ms"] == pytest.approx(39.7)
    assert (by_key[(10, "2")]["request_count"], by_key[(10, "2")]["latency_p50_ms"]) == (1, 99.0)
    assert by_key[(11, "2")]["request_count"] == 1 and (11, "1") not in by_key


def test_labels_that_land_later_recompute_quality_of_their_windows_only(ws: Workspace) -> None:
    record = {"dataframe_records": [{"a": 1.0}]}
    rows = [
        log_row(record, [pred], at=T0 + timedelta(hours=h, minutes=i), request_id=f"h{h}-{i}")
        for h in range(3)
        for i, pred in enumerate([1, 0, 1, 1])
    ]
    write_log(ws, rows)
    ws.tables.create(
        "dev.serving.truth", pa.schema({"request_id": pa.string(), "label": pa.int64()})
    )
    spec = SPEC.model_dump()
    spec["labels"] = {"table": "serving.truth", "join_on": ["request_id"], "label_col": "label"}
    create_monitor(ws, MonitorSpec.model_validate(spec))
    first = refresh(ws, "scorer")
    assert len(first.windows) == 3

    def accuracy() -> dict[int, float | None]:
        table = ws.tables.read(
            output_tables(ws, "scorer")[0],
            filter="column_name = ':table' AND slice_key IS NULL AND log_type = 'INPUT'",
        )
        return {r["window_start"].hour: r["accuracy_score"] for r in table.to_pylist()}

    assert accuracy() == {10: None, 11: None, 12: None}
    # labels for the 11:00 window land: 3 of its 4 predictions (1, 0, 1, 1) were right
    labels = pa.table({"request_id": [f"h1-{i}" for i in range(4)], "label": [1, 1, 1, 1]})
    ws.tables.write("dev.serving.truth", labels)
    second = refresh(ws, "scorer")
    assert [start.hour for start, _end in second.windows] == [11]
    assert accuracy() == {10: None, 11: 0.75, 12: None}


def test_a_label_column_of_the_wrong_type_is_refused(ws: Workspace) -> None:
    write_log(ws, [log_row({"dataframe_records": [{"a": 1.0}]}, [1])])
    ws.tables.create(
        "dev.serving.truth", pa.schema({"request_id": pa.string(), "label": pa.float64()})
    )
    spec = SPEC.model_dump()
    spec["labels"] = {"table": "serving.truth", "label_col": "label"}
    create_monitor(ws, MonitorSpec.model_validate(spec))
    with pytest.raises(
        SchemaMismatchError,
        match=r"label column dev\.serving\.truth\.label is double; a classification label must be int or string or bool",
    ):
        refresh(ws, "scorer")


def test_serving_rows_read_are_the_windows_touched(ws: Workspace) -> None:
    record = {"dataframe_records": [{"a": 1.0}]}
    write_log(ws, [log_row(record, [1], at=T0 + timedelta(hours=h)) for h in range(3)])
    create_monitor(ws, SPEC)
    assert refresh(ws, "scorer").rows_read == 3
    ws.tables.write(
        LOG,
        pa.Table.from_pylist(
            [log_row(record, [0], at=T0 + timedelta(hours=2, minutes=5))], ws.tables.schema(LOG)
        ),
    )
    again = refresh(ws, "scorer")
    # one change row from the feed, then the two rows of the 12:00 window
    assert (again.rows_read, [s.hour for s, _e in again.windows]) == (3, [12])
    counts = ws.tables.read(output_tables(ws, "scorer")[0], filter="column_name = ':table'")
    assert pc.sum(counts.column("count")).as_py() == 4
