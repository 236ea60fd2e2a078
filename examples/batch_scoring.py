"""Score a Delta table in batch, rerun it (nothing doubles), then stream new rows.

Run it from any folder: python examples/batch_scoring.py
"""

from pathlib import Path
from tempfile import mkdtemp

import pyarrow as pa
import pyarrow.compute as pc
from sklearn.ensemble import HistGradientBoostingClassifier

import lakeforge
from lakeforge.demo import load_flights
from lakeforge.inference import run_stream

project = lakeforge.init_project("scoring", Path(mkdtemp(prefix="lakeforge-scoring-")))
ws = lakeforge.connect("dev", project_dir=project)
flights = load_flights().filter(pc.is_valid(pc.field("arr_delay")))
flights = flights.append_column("id", pa.array(range(flights.num_rows)))
features = ["dep_delay", "distance", "hour"]

with ws.start_run("train", run_name="late-arrival", autolog=False):
    df = flights.slice(0, 20_000).to_pandas()
    model = HistGradientBoostingClassifier(max_iter=20).fit(
        df[features].astype(float), df["arr_delay"] > 15
    )
    version = ws.log_model(
        model,
        "dev.ml.flight_delay",
        input_example=df[features].astype(float).head(5),
        skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    )
ws.models.set_alias("dev.ml.flight_delay", "champion", version.version)

# Batch: a table in, a predictions table out; failed rows would go to ..._errors.
ws.tables.write("dev.silver.flights", flights.slice(0, 50_000), primary_keys=["id"])
result = ws.score(
    "models:/dev.ml.flight_delay@champion",
    input="dev.silver.flights",
    output="dev.gold.flight_predictions",
)
print(f"scored {result.rows_scored} rows with v{result.model.version}")
again = ws.score(
    "models:/dev.ml.flight_delay@champion",
    input="dev.silver.flights",
    output="dev.gold.flight_predictions",
)
print(f"rerun of the same input version: {again.rows_scored} new rows")  # 0: already there


# Streaming: each run scores only what arrived since its checkpoint, which commits
# with the output (exactly once across crashes). once=True is what a job task runs.
def stream() -> int:
    return run_stream(
        ws,
        "models:/dev.ml.flight_delay@champion",
        input="dev.silver.flights",
        output="dev.gold.flight_predictions_stream",
        once=True,
    ).rows_scored


print(f"stream catches up: {stream()} rows")
ws.tables.write("dev.silver.flights", flights.slice(50_000, 1_000))  # new arrivals
print(f"stream after an append: {stream()} new rows")
