"""Feature-aware models: trained on a point-in-time training set, scored from keys alone,
in this process and in a fresh one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from sklearn.linear_model import LogisticRegression

import lakeforge
from lakeforge import Workspace
from lakeforge.demo import flights_data_dir
from lakeforge.features import FeatureLookup
from tests.conftest import git_init

FEATURES = ["temp", "wind_speed"]


@pytest.fixture(scope="module")
def fs_project(tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table) -> Path:
    folder = lakeforge.init_project("fsproj", tmp_path_factory.mktemp("fs"))
    git_init(folder)
    weather = pacsv.read_csv(flights_data_dir() / "weather.csv")
    weather = weather.select(["origin", "time_hour", *FEATURES])
    weather = (
        weather.group_by(["origin", "time_hour"])
        .aggregate([(f, "mean") for f in FEATURES])
        .rename_columns(["origin", "time_hour", *FEATURES])
    )
    flights = all_flights.filter(pc.equal(all_flights.column("month"), 1))
    flights = flights.filter(pc.is_valid(flights.column("arr_delay")))
    labels = pa.table(
        {
            "origin": flights.column("origin"),
            "time_hour": flights.column("time_hour"),
            "late": pc.cast(pc.greater(flights.column("arr_delay"), 15), pa.int64()),
        }
    )
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.features.create(
            "dev.fs.weather", weather, primary_keys="origin", timestamp_key="time_hour"
        )
        ws.tables.write("dev.silver.labels", labels)
    return folder


def train(ws: Workspace) -> tuple[str, LogisticRegression, object]:
    labels = ws.tables.read("dev.silver.labels")
    training_set = ws.create_training_set(
        labels,
        [
            FeatureLookup(
                "dev.fs.weather",
                "origin",
                timestamp_lookup_key="time_hour",
                feature_names=FEATURES,
                default_values={"temp": 50.0, "wind_speed": 0.0},
            )
        ],
        label="late",
    )
    frame = training_set.load_df(format="pandas")
    model = LogisticRegression(max_iter=300).fit(frame[FEATURES], frame["late"])
    with ws.start_run("train", autolog=False):
        version = ws.log_model(model, "dev.ml.weather_late", training_set=training_set)
    return f"models:/dev.ml.weather_late/{version.version}", model, frame


def test_score_batch_from_keys_alone_matches_training(fs_project: Path) -> None:
    with lakeforge.connect("dev", project_dir=fs_project) as ws:
        uri, model, frame = train(ws)
        keys = ws.tables.read("dev.silver.labels", columns=["origin", "time_hour"]).slice(0, 500)
        scored = ws.score_batch(uri, keys)
        expected = model.predict(frame[FEATURES].head(500))
        assert list(scored["prediction"]) == list(expected)
        # columns in the input override the looked-up values
        overridden = keys.append_column("temp", pa.array([-40.0] * keys.num_rows))
        forced = ws.score_batch(uri, overridden)
        manual = frame[FEATURES].head(500).copy()
        manual["temp"] = -40.0
        assert list(forced["prediction"]) == list(model.predict(manual))
        lineage = ws.models.lineage(uri.removeprefix("models:/"))
        assert lineage.feature_tables == ["dev.fs.weather"]
        version = int(uri.rsplit("/", 1)[1])
        assert ("dev.ml.weather_late", version, FEATURES) in ws.models.versions_using(
            "dev.fs.weather"
        )


def test_the_packaged_model_scores_in_a_fresh_process(fs_project: Path, tmp_path: Path) -> None:
    with lakeforge.connect("dev", project_dir=fs_project) as ws:
        uri, model, frame = train(ws)
        tracking = ws.target.mlflow_tracking_uri
    keys = frame[["origin", "time_hour"]].head(50)
    keys["time_hour"] = keys["time_hour"].dt.tz_localize(None)  # MLflow takes naive UTC times
    keys_file = tmp_path / "keys.parquet"
    keys.to_parquet(keys_file)
    script = (
        "import sys, json, mlflow, pandas as pd\n"
        "mlflow.set_tracking_uri(sys.argv[1]); mlflow.set_registry_uri(sys.argv[1])\n"
        "model = mlflow.pyfunc.load_model(sys.argv[2])\n"
        "print(json.dumps([int(p) for p in model.predict(pd.read_parquet(sys.argv[3]))]))\n"
    )
    env = {**os.environ, "LAKEFORGE_TARGET": "dev"}
    env.pop("LAKEFORGE_PROJECT_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", script, tracking, uri, str(keys_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads(done.stdout.strip().splitlines()[-1])
    assert predictions == [int(p) for p in model.predict(frame[FEATURES].head(50))]
    assert np.isfinite(frame[FEATURES].head(50).to_numpy()).all()


def test_score_batch_widens_numbers_as_appends_do(fs_project: Path) -> None:
    with lakeforge.connect("dev", project_dir=fs_project) as ws:
        uri, _, _ = train(ws)
        keys = ws.tables.read("dev.silver.labels", columns=["origin", "time_hour"]).slice(0, 200)
        temps = [0, 40, 95, 120] * 50
        as_float = ws.score_batch(uri, keys.append_column("temp", pa.array(temps, pa.float64())))
        for ints in (pa.int64(), pa.int32(), pa.uint16()):  # MLflow refuses int64 -> double
            as_int = ws.score_batch(uri, keys.append_column("temp", pa.array(temps, ints)))
            assert list(as_int["prediction"]) == list(as_float["prediction"])


def test_widening_to_a_signature_never_narrows() -> None:
    import pandas as pd
    from mlflow.types.schema import ColSpec, Schema

    from lakeforge.features._models import widen_to_signature

    schema = Schema(
        [
            ColSpec("double", "d"),
            ColSpec("long", "n"),
            ColSpec("integer", "i"),
            ColSpec("float", "f"),
        ]
    )
    frame = pd.DataFrame(
        {
            "d": np.array([1, 2], dtype="int64"),
            "n": np.array([1.5, 2.0]),  # float into long: a narrowing, left to MLflow
            "i": np.array([2**40, 1], dtype="int64"),  # int64 into int32: left to MLflow
            "f": np.array([1.0, np.nan], dtype="float32"),
        }
    )
    widened = widen_to_signature(frame, schema)
    assert widened.dtypes.astype(str).to_dict() == {
        "d": "float64",
        "n": "float64",
        "i": "int64",
        "f": "float32",
    }
    assert widened["i"].tolist() == [2**40, 1] and widened["n"].tolist() == [1.5, 2.0]
    small = pd.DataFrame({"n": np.array([7], dtype="int8"), "d": np.array([0.5], "float32")})
    assert widen_to_signature(small, schema).dtypes.astype(str).to_dict() == {
        "n": "int64",
        "d": "float64",
    }
    huge = pd.DataFrame({"n": np.array([2**64 - 1], dtype="uint64")})
    with pytest.raises(pa.ArrowInvalid):  # checked as appends are: never wraps around
        widen_to_signature(huge, schema)
