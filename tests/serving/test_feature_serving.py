"""A feature-aware model behind ``lakeforge serve``: keys in, online features looked up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression

import lakeforge
from lakeforge.features import FeatureLookup
from tests.conftest import git_init, january_weather
from tests.serving.conftest import Server

pytestmark = pytest.mark.slow

TABLE = "dev.fs.weather"
ENDPOINT = """
endpoints:
  weather:
    served_entities:
      - {model: ml.weather_delay, alias: champion}
    inference_table: {table: serving.weather_requests, flush_interval_s: 0.3}
"""


@pytest.fixture(scope="module")
def weather_project(tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table) -> Path:
    folder = lakeforge.init_project("fserve", tmp_path_factory.mktemp("fserve"))
    with (folder / "lakeforge.yaml").open("a") as handle:
        handle.write(ENDPOINT)
    git_init(folder)
    weather, flights = january_weather(all_flights)
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.features.create(TABLE, weather, primary_keys="origin", timestamp_key="time_hour")
        training = ws.create_training_set(
            flights.select(["origin", "time_hour", "arr_delay"]),
            [FeatureLookup(TABLE, "origin", timestamp_lookup_key="time_hour")],
            label="arr_delay",
        )
        frame = training.load_df(format="pandas").dropna(subset=["temp", "wind_speed"])
        model = LinearRegression().fit(frame[["temp", "wind_speed"]], frame["arr_delay"])
        with ws.start_run("train", autolog=False):
            ws.log_model(model, "ml.weather_delay", training_set=training)
        ws.models.set_alias("ml.weather_delay", "champion", 1)
        ws.publish_table(TABLE)
    return folder


@pytest.fixture
def server(weather_project: Path) -> Iterator[Server]:
    running = Server(weather_project, "-e", "weather")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def test_keys_alone_are_scored_with_online_features(server: Server, weather_project: Path) -> None:
    keys = [{"origin": o, "time_hour": "2013-02-01T00:00:00"} for o in ("EWR", "JFK", "LGA")]
    status, answer = server.post("/invocations", {"dataframe_records": keys})
    assert status == 200, answer
    import pandas as pd

    frame = pd.DataFrame(keys).assign(time_hour=lambda d: pd.to_datetime(d["time_hour"]))
    with lakeforge.connect("dev", project_dir=weather_project) as ws:
        expected = ws.score_batch("models:/dev.ml.weather_delay/1", frame, features="online")[
            "prediction"
        ].tolist()
    assert answer["predictions"] == pytest.approx(expected)

    only_keys = [{"origin": k["origin"]} for k in keys]  # online needs no timestamp
    assert server.post("/invocations", {"dataframe_records": only_keys}) == (status, answer)

    # A value sent in the request overrides the looked-up one.
    hot = [k | {"temp": 104.0} for k in keys]
    status, overridden = server.post("/invocations", {"dataframe_records": hot})
    assert status == 200 and overridden["predictions"] != answer["predictions"]
    with lakeforge.connect("dev", project_dir=weather_project) as ws:
        expected_hot = ws.score_batch(
            "models:/dev.ml.weather_delay/1", frame.assign(temp=104.0), features="online"
        )["prediction"].tolist()
    assert overridden["predictions"] == pytest.approx(expected_hot)

    status, error = server.post(
        "/invocations", {"dataframe_records": [{"time_hour": "2013-02-01"}]}
    )
    assert status == 400 and "origin" in error["message"]
    server.stop()
    with lakeforge.connect("dev", project_dir=weather_project) as ws:
        log: Any = ws.tables.read("dev.serving.weather_requests", format="pandas")
    assert sorted(log["status_code"].tolist()) == [200, 200, 200, 400]
