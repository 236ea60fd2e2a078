"""The feature store: a feature table, a point-in-time training set, a model that scores from keys.

Run it from any folder: python examples/feature_store.py
"""

from datetime import timedelta
from pathlib import Path
from tempfile import mkdtemp

import pyarrow as pa
from sklearn.ensemble import HistGradientBoostingRegressor

import lakeforge
from lakeforge.demo import flights_data_dir, load_flights
from lakeforge.features import FeatureLookup

project = lakeforge.init_project("features", Path(mkdtemp(prefix="lakeforge-features-")))
ws = lakeforge.connect("dev", project_dir=project)
ws.ingest(flights_data_dir() / "weather.csv", "dev.bronze.weather")
ws.tables.write("dev.silver.flights", load_flights().slice(0, 20_000))  # January


def weather(month: int) -> pa.Table:  # hourly weather per airport (a few hours are reported twice)
    return ws.sql(f"""
        SELECT origin, time_hour, avg(temp) AS temp, avg(wind_speed) AS wind_speed
        FROM dev.bronze.weather WHERE month = {month} GROUP BY origin, time_hour""")


ws.features.create(
    "dev.fs.weather",
    weather(1),
    primary_keys="origin",
    timestamp_key="time_hour",
    feature_descriptions={"temp": "air temperature, F"},
)
ws.features.write("dev.fs.weather", weather(2))  # upsert; new columns become new features
labels = ws.sql("""
    SELECT origin, time_hour, hour, dep_delay FROM dev.silver.flights
    WHERE dep_delay IS NOT NULL""")  # keys, lookup timestamps and the label
training_set = ws.create_training_set(
    labels,
    [
        FeatureLookup(
            "dev.fs.weather",
            "origin",
            timestamp_lookup_key="time_hour",
            lookback_window=timedelta(hours=3),
            default_values={"temp": 50.0},
        )
    ],
    label="dep_delay",
)
frame = training_set.load_df(format="pandas")  # or training_set.write_to("dev.gold.train")
model = HistGradientBoostingRegressor(max_iter=20).fit(
    frame[["hour", "temp", "wind_speed"]], frame["dep_delay"]
)
with ws.start_run("train", autolog=False):
    version = ws.log_model(
        model,
        "dev.ml.weather_delay",
        training_set=training_set,
        skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    )
uri = f"models:/dev.ml.weather_delay/{version.version}"
keys_only = labels.select(["origin", "time_hour", "hour"]).slice(0, 5)
offline = ws.score_batch(uri, keys_only)  # features looked up point-in-time
ws.publish_table("dev.fs.weather")  # to the online store (SQLite or Redis)
online = ws.score_batch(uri, keys_only.drop_columns(["time_hour"]), features="online")
# online scoring reads the newest row per airport: the end of February here
print(
    f"{len(frame)} labelled flights; scored {len(offline)} from keys offline, {len(online)} online"
)
