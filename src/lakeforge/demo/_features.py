"""Step 7: weather features, a point-in-time training set, a feature-aware model."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import pyarrow.compute as pc
from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace

WEATHER = ["temp", "humid", "wind_speed", "precip", "visib"]
WEATHER_SQL = f"""SELECT origin, time_hour, {", ".join(f"avg({c}) AS {c}" for c in WEATHER)}
FROM dev.bronze.weather GROUP BY origin, time_hour"""  # a few hours are reported twice
FEATURE_MODEL = "dev.ml.departure_delay"


def feature_store(ws: Workspace, console: Console) -> None:
    """Weather features: point-in-time training, a feature-aware model, online scoring."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import mean_absolute_error

    from lakeforge.features import FeatureAwareModel, FeatureLookup, online_store

    console.print(Rule("7. Feature store: point-in-time training, scoring from keys, online"))
    # MLflow's hints (type hints, integer columns, pickled pyfunc) are not the demo's news
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    info = ws.features.create(
        "dev.fs.weather",
        ws.sql(WEATHER_SQL),
        primary_keys="origin",
        timestamp_key="time_hour",
        description="Hourly weather at the New York airports",
    )
    console.print(
        f"  feature table {info.name}: keys {info.lookup_keys}, timestamp key "
        f"{info.timestamp_key}, features {list(info.features)}"
    )
    labels = ws.sql("""
        SELECT origin, time_hour, hour, dep_delay
        FROM dev.silver.flights WHERE month <= 4 ORDER BY time_hour""")
    lookup = FeatureLookup(
        "dev.fs.weather", "origin", timestamp_lookup_key="time_hour", feature_names=WEATHER
    )
    training_set = ws.create_training_set(labels, [lookup], label="dep_delay")
    data = training_set.load_df(format="pandas")
    assert isinstance(data, pd.DataFrame)
    columns = ["hour", *WEATHER]
    train, test = data[data.time_hour.dt.month <= 3], data[data.time_hour.dt.month == 4]
    model = HistGradientBoostingRegressor(max_iter=50, random_state=7)
    model.fit(train[columns], train["dep_delay"])
    mae = mean_absolute_error(test["dep_delay"], model.predict(test[columns]))
    console.print(
        f"  training set: {len(data):,} flights, each joined to the latest weather at or "
        f"before its hour (never a later one); April MAE {mae:.1f} min"
    )
    with ws.start_run("train", run_name="departure-delay-weather", autolog=False) as run:
        run.log_metrics({"test_mae": mae})
        version = ws.log_model(
            model,
            FEATURE_MODEL,
            training_set=training_set,
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    uri = f"models:/{FEATURE_MODEL}/{version.version}"
    console.print(f"  registered {FEATURE_MODEL} v{version.version} with its feature spec")
    ws.models.set_alias(FEATURE_MODEL, "champion", version.version, reason="demo")
    with ws.start_run("train", run_name="departure-delay-weather-deeper", autolog=False):
        deeper = HistGradientBoostingRegressor(max_iter=100, random_state=7)
        ws.log_model(
            deeper.fit(train[columns], train["dep_delay"]),
            FEATURE_MODEL,
            training_set=training_set,
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    keys = ws.sql("""
        SELECT origin, time_hour, hour, dep_delay AS actual
        FROM dev.silver.flights WHERE month = 12 AND day = 31""")
    scored = ws.score_batch(uri, keys.drop_columns(["actual"]))
    console.print(
        f"  score_batch from keys (origin, time_hour, hour) alone: {len(scored)} flights of "
        f"31 December, mean predicted delay {scored.prediction.mean():.1f} min "
        f"(actual {pc.mean(keys.column('actual')).as_py():.1f})"
    )
    published = ws.publish_table("dev.fs.weather")
    console.print(
        f"  published to the online store: {published.mode}, {published.rows_written:,} rows "
        "(the latest row per airport is kept)"
    )
    newest = ws.sql(
        "SELECT origin, max(time_hour) AS time_hour FROM dev.fs.weather GROUP BY 1 ORDER BY 1"
    )
    requests = newest.to_pandas().assign(hour=20)
    requests["time_hour"] = requests["time_hour"].dt.tz_convert(None)  # MLflow: naive UTC
    offline = ws.score_batch(uri, requests)["prediction"].tolist()
    with online_store(ws) as store:
        served = load_model(ws, uri)  # what a serving process does
        python_model = served.unwrap_python_model()
        assert isinstance(python_model, FeatureAwareModel)
        python_model.use_online_store(store)
        online = served.predict(requests).tolist()
        timings = []
        for _ in range(50):
            start = time.perf_counter()
            served.predict(requests.head(1))
            timings.append(time.perf_counter() - start)
    same = "same as" if online == offline else "DIFFERENT from"
    shown = ", ".join(f"{o} {p:.1f}" for o, p in zip(requests.origin, online, strict=True))
    console.print(
        f"  online scoring from the store (latest weather): {shown} min, {same} "
        "point-in-time at the newest rows"
    )
    console.print(
        f"  single-key predict through the online store: median "
        f"{sorted(timings)[len(timings) // 2] * 1000:.1f} ms"
    )


def load_model(ws: Workspace, uri: str) -> Any:
    import mlflow

    from lakeforge.tracking import use_target

    with use_target(ws.target):
        return mlflow.pyfunc.load_model(uri)
