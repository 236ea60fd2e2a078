"""resolve_model pins and loads a version once; Scorer scores Arrow batches like serving."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakeforge import Workspace
from lakeforge.errors import LakeforgeError
from lakeforge.inference import ERRORS_SCHEMA, Scorer, resolve_model
from tests.inference.conftest import FEATURES, INPUT

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def scorer(ws: Workspace, uri: str, **options: object) -> Scorer:
    ref = resolve_model(ws, uri)
    return Scorer(
        ref,
        project_dir=str(ws.project.directory),
        target=ws.target.name,
        **options,  # type: ignore[arg-type]
    )


def test_resolve_pins_an_alias_and_caches_the_download(sws: Workspace) -> None:
    ref = resolve_model(sws, "models:/ml.delay@champion")
    assert (ref.name, ref.version, ref.alias) == ("dev.ml.delay", "1", "champion")
    assert ref.uri == "models:/dev.ml.delay/1"
    assert (Path(ref.local_path) / "MLmodel").is_file()
    again = resolve_model(sws, "ml.delay/1")
    assert again.local_path == ref.local_path and again.alias is None


def test_bad_uris_and_unloadable_models_fail_with_their_reason(sws: Workspace) -> None:
    with pytest.raises(LakeforgeError, match="is not models:/NAME/VERSION"):
        resolve_model(sws, "models:/ml.delay")
    with pytest.raises(LakeforgeError, match="has no alias 'nope'"):
        resolve_model(sws, "ml.delay@nope")
    with pytest.raises(
        LakeforgeError, match="cannot load: RuntimeError: the weights file is corrupt"
    ):
        resolve_model(sws, "ml.broken/1")


def test_scores_with_widening_and_metadata(sws: Workspace) -> None:
    data = sws.tables.read(INPUT).slice(0, 300)
    s = scorer(sws, "ml.delay@champion", keep=["id"])
    s.check_input(data.schema)
    scored = s.score(data, input_version=0, scored_at=NOW)
    out = scored.output
    assert out.column_names == ["id", "prediction", *META]
    assert out.num_rows == 300 and scored.errors.num_rows == 0
    assert out.column("id").to_pylist() == data.column("id").to_pylist()
    assert set(out.column("model_version").to_pylist()) == {"1"}
    assert set(out.column("model_alias").to_pylist()) == {"champion"}
    assert set(out.column("input_version").to_pylist()) == {0}
    assert out.schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    import mlflow

    direct = mlflow.pyfunc.load_model(s.ref.local_path).predict(
        data.select(FEATURES).to_pandas().astype("float64")
    )
    assert out.column("prediction").to_pylist() == list(direct)
    assert s.output_schema(data.schema).names == out.column_names


META = ["model_name", "model_version", "model_alias", "scored_at", "input_version"]


def test_missing_and_mistyped_columns_get_servings_messages(sws: Workspace) -> None:
    from lakeforge.features import missing_inputs_message

    data = sws.tables.read(INPUT).slice(0, 10)
    s = scorer(sws, "ml.delay/1", keep=None)
    with pytest.raises(LakeforgeError) as missing:
        s.check_input(data.drop_columns(["distance", "hour"]).schema)
    expected = [(n, "double", True) for n in FEATURES]
    present = [c for c in data.column_names if c not in ("distance", "hour")]
    assert str(missing.value) == missing_inputs_message(expected, present)
    assert "Model is missing inputs ['distance', 'hour']" in str(missing.value)
    text = data.set_column(1, "month", pc.cast(data.column("month"), pa.string()))
    with pytest.raises(LakeforgeError, match="Incompatible input types for column month"):
        s.check_input(text.schema)
    with pytest.raises(LakeforgeError, match=r"kept column\(s\) nope are not in the input"):
        scorer(sws, "ml.delay/1", keep=["nope"]).check_input(data.schema)
    clash = data.append_column("prediction", pa.array([1.0] * 10))
    with pytest.raises(LakeforgeError, match="already has column"):
        s.check_input(clash.schema)


def test_rows_the_model_fails_on_go_to_errors(sws: Workspace) -> None:
    data = sws.tables.read(INPUT).slice(0, 400)
    gaps = pc.sum(pc.is_null(data.column("dep_time"))).as_py()
    assert gaps > 0  # cancelled flights: the pipeline fails on their NaN
    scored = scorer(sws, "ml.pipe@champion", keep=["id"]).score(
        data, input_version=3, scored_at=NOW
    )
    assert scored.output.num_rows == 400 - gaps
    assert scored.errors.schema == ERRORS_SCHEMA
    assert scored.errors.num_rows == gaps
    failed = {json.loads(r)["id"] for r in scored.errors.column("row").to_pylist()}
    kept = set(scored.output.column("id").to_pylist())
    assert failed.isdisjoint(kept) and len(failed | kept) == 400
    assert all(
        "non-finite values (NaN, Infinity) in required column(s) 'dep_time'" in e
        for e in scored.errors.column("error").to_pylist()
    )
    with pytest.raises(LakeforgeError, match="fail_fast"):
        scorer(sws, "ml.pipe/1", keep=["id"], fail_fast=True).score(
            data, input_version=3, scored_at=NOW
        )


def test_bisection_isolates_rows_the_model_raises_on(sws: Workspace) -> None:
    x = [float(i) for i in range(100)]
    x[17] = x[60] = -1.0
    data = pa.table({"k": list(range(100)), "x": x})
    scored = scorer(sws, "ml.double/1", keep=["k"]).score(data, input_version=None, scored_at=NOW)
    assert sorted(json.loads(r)["k"] for r in scored.errors.column("row").to_pylist()) == [17, 60]
    assert set(scored.errors.column("error").to_pylist()) == {
        "ValueError: x = -1 is out of the model's domain"
    }
    assert scored.output.column("k").to_pylist() == [k for k in range(100) if k not in (17, 60)]
    assert scored.output.column("prediction").to_pylist()[:3] == [0.0, 2.0, 4.0]
    everything = pa.table({"k": [1, 2, 3], "x": [-1.0, -1.0, -1.0]})
    with pytest.raises(LakeforgeError, match="failed on every row tried"):
        scorer(sws, "ml.double/1", keep=["k"]).score(everything, input_version=None, scored_at=NOW)


def test_a_scorer_pickles_before_and_after_loading(sws: Workspace) -> None:
    s = scorer(sws, "ml.double/1", keep=None)
    s.load()
    clone = pickle.loads(pickle.dumps(s))
    out = clone.score(pa.table({"x": [1.5]}), input_version=None, scored_at=NOW).output
    assert out.column("prediction").to_pylist() == [3.0]
