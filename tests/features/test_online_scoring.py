"""Feature-aware models scored through the online store: from keys alone, as a serving
process does (``unwrap_python_model().use_online_store(store)`` then ``predict``), with
the same predictions as the point-in-time path where the latest row is the one it picks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression

import lakeforge
import lakeforge._workspace
from lakeforge import Workspace
from lakeforge.features import FeatureAwareModel, FeatureFunction, FeatureLookup, online_store
from lakeforge.features._lookups import register_function
from lakeforge.features.online import OnlineStore, open_online_store
from lakeforge.tracking import use_target
from tests.conftest import january_weather

TABLE = "dev.fs.weather"
MODEL = "dev.ml.delay_by_weather"
COLUMNS = ["temp", "wind_speed", "temp_c"]
REDIS_URL = "redis://127.0.0.1:6379/0"


@register_function("fahrenheit_to_celsius")
def _celsius(temp: pd.Series) -> pd.Series:
    return (temp - 32.0) * 5.0 / 9.0


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table) -> Iterator[Workspace]:
    """A project with January's weather as a feature table, published, and a model on it."""
    folder = lakeforge.init_project("onlinescore", tmp_path_factory.mktemp("online"))
    weather, flights = january_weather(all_flights)
    labels = flights.select(["origin", "time_hour", "arr_delay"])
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.features.create(TABLE, weather, primary_keys="origin", timestamp_key="time_hour")
        training_set = ws.create_training_set(
            labels,
            [
                FeatureLookup(
                    TABLE,
                    "origin",
                    timestamp_lookup_key="time_hour",
                    feature_names=["temp", "wind_speed"],
                    default_values={"wind_speed": 0.0},
                ),
                FeatureFunction("fahrenheit_to_celsius", {"temp": "temp"}, "temp_c"),
            ],
            label="arr_delay",
        )
        frame = training_set.load_df(format="pandas")
        frame = frame.dropna(subset=["temp"])
        model = LinearRegression().fit(frame[COLUMNS], frame["arr_delay"])
        with ws.start_run("train", autolog=False):
            ws.log_model(model, MODEL, training_set=training_set)
        ws.publish_table(TABLE)
        yield ws


def latest_keys(ws: Workspace) -> pd.DataFrame:
    """Each origin at (and a day after) its newest weather row: PIT picks the newest row."""
    newest = ws.sql(f"SELECT origin, max(time_hour) AS time_hour FROM {TABLE} GROUP BY origin")
    keys = newest.to_pandas()
    later = keys.assign(time_hour=keys["time_hour"] + timedelta(days=1))
    keys = pd.concat([keys, later], ignore_index=True).sort_values(["origin", "time_hour"])
    keys["time_hour"] = keys["time_hour"].dt.tz_convert("UTC").dt.tz_localize(None)
    return keys.reset_index(drop=True)


def load(ws: Workspace) -> mlflow.pyfunc.PyFuncModel:
    with use_target(ws.target):
        return mlflow.pyfunc.load_model(f"models:/{MODEL}/1")


def serve(ws: Workspace, store: OnlineStore) -> mlflow.pyfunc.PyFuncModel:
    """What a serving process does with a loaded model and its online store."""
    model = load(ws)
    python_model = model.unwrap_python_model()
    assert isinstance(python_model, FeatureAwareModel)
    python_model.use_online_store(store)
    return model


def test_the_signature_requires_keys_and_makes_features_optional(scored: Workspace) -> None:
    inputs = {c.name: c.required for c in load(scored).metadata.get_input_schema().inputs}
    assert inputs == {
        "origin": True,
        "time_hour": False,  # only point-in-time scoring needs it; online takes the latest
        "temp": False,
        "wind_speed": False,
        "temp_c": False,
    }


def test_online_scoring_matches_point_in_time_for_latest_rows(scored: Workspace) -> None:
    keys = latest_keys(scored)
    offline = scored.score_batch(f"models:/{MODEL}/1", keys)
    online = scored.score_batch(f"models:/{MODEL}/1", keys, features="online")
    assert len(online) == len(keys) == 6
    assert np.allclose(online["prediction"], offline["prediction"])
    with online_store(scored) as store:
        served = serve(scored, store)
        for _ in range(3):  # many calls on one loaded model
            assert np.allclose(served.predict(keys), offline["prediction"])


def test_online_scoring_needs_keys_only_and_point_in_time_names_its_timestamp(
    scored: Workspace,
) -> None:
    keys = latest_keys(scored)
    with online_store(scored) as store:
        served = serve(scored, store)
        assert np.allclose(served.predict(keys[["origin"]]), served.predict(keys))
    with pytest.raises(lakeforge.LakeforgeError, match="time_hour"):
        scored.score_batch(f"models:/{MODEL}/1", keys[["origin"]])


def test_the_online_path_opens_no_workspace(
    scored: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = latest_keys(scored)
    expected = scored.score_batch(f"models:/{MODEL}/1", keys, features="online")
    with online_store(scored) as store:
        served = serve(scored, store)

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("the online path opened a workspace")

        monkeypatch.setattr(lakeforge._workspace, "connect", refuse)
        assert np.allclose(served.predict(keys), expected["prediction"])


def test_input_columns_override_online_values(scored: Workspace) -> None:
    keys = latest_keys(scored)
    with online_store(scored) as store:
        served = serve(scored, store)
        looked_up = served.unwrap_python_model()._online.frame(keys)
        inner = served.unwrap_python_model().inner
        forced = served.predict(keys.assign(temp=-40.0))
        manual = looked_up[COLUMNS].assign(temp=-40.0, temp_c=-40.0)  # -40 F is -40 C
        assert np.allclose(forced, inner.predict(manual))
        assert not np.allclose(forced, served.predict(keys))
        every = served.predict(keys.assign(temp=50.0, wind_speed=5.0, temp_c=1.0))
        fixed = pd.DataFrame({"temp": [50.0] * 6, "wind_speed": [5.0] * 6, "temp_c": [1.0] * 6})
        assert np.allclose(every, inner.predict(fixed))


def test_a_key_missing_from_the_store_gets_defaults_or_nulls(scored: Workspace) -> None:
    keys = pd.DataFrame(
        {"origin": ["EWR", "XXX"], "time_hour": pd.to_datetime(["2013-02-01", "2013-02-01"])}
    )
    with online_store(scored) as store:
        frame = serve(scored, store).unwrap_python_model()._online.frame(keys)
    assert frame.loc[0, ["temp", "wind_speed"]].notna().all()
    assert np.isnan(frame.loc[1, "temp"]) and np.isnan(frame.loc[1, "temp_c"])
    assert frame.loc[1, "wind_speed"] == 0.0  # its default value


def test_the_offline_path_needs_no_workspace_when_every_feature_is_given(
    scored: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load(scored)
    keys = latest_keys(scored).assign(temp=50.0, wind_speed=5.0)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("opened a workspace although every feature was given")

    monkeypatch.setattr(lakeforge._workspace, "connect", refuse)
    fixed = pd.DataFrame({"temp": [50.0] * 6, "wind_speed": [5.0] * 6, "temp_c": [10.0] * 6})
    assert np.allclose(model.predict(keys), model.unwrap_python_model().inner.predict(fixed))


def test_score_batch_rejects_an_unknown_features_mode(scored: Workspace) -> None:
    with pytest.raises(ValueError, match="'offline' or 'online'"):
        scored.score_batch(f"models:/{MODEL}/1", latest_keys(scored), features="cache")  # type: ignore[arg-type]


@pytest.mark.redis
def test_online_scoring_through_redis(scored: Workspace) -> None:
    from lakeforge.features import publish_table

    keys = latest_keys(scored)
    offline = scored.score_batch(f"models:/{MODEL}/1", keys)
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    store = open_online_store(REDIS_URL, namespace=namespace)
    try:
        publish_table(scored, TABLE, mode="snapshot", store=store)
        assert np.allclose(serve(scored, store).predict(keys), offline["prediction"])
    finally:
        store.drop(TABLE)
        store.close()


def test_online_lookup_errors_name_the_column(scored: Workspace) -> None:
    from lakeforge.errors import SchemaMismatchError

    with online_store(scored) as store:
        lookup = serve(scored, store).unwrap_python_model()._online
        with pytest.raises(SchemaMismatchError, match="lookup key column 'origin' is not in"):
            lookup.frame(pd.DataFrame({"airport": ["EWR"]}))
        with pytest.raises(
            SchemaMismatchError, match="key column .origin. has type int64, the online table"
        ):
            lookup.frame(pd.DataFrame({"origin": [1]}))
