"""Train in a tracked run with lineage, register the model, promote it, copy it to staging.

Run it from any folder: python examples/tracking_registry.py
"""

from pathlib import Path
from tempfile import mkdtemp

from sklearn.ensemble import HistGradientBoostingClassifier

import lakeforge
from lakeforge.demo import load_flights

project = lakeforge.init_project("tracking", Path(mkdtemp(prefix="lakeforge-tracking-")))
ws = lakeforge.connect("dev", project_dir=project)
ws.tables.write("dev.silver.flights", load_flights().slice(0, 20_000))

with ws.start_run("train", run_name="late-arrival") as run:  # experiment "<project>/train"
    df = ws.sql(
        "SELECT dep_delay, distance, (arr_delay > 15)::INT AS late "
        "FROM dev.silver.flights WHERE arr_delay IS NOT NULL"
    ).to_pandas()
    X, y = df[["dep_delay", "distance"]].astype(float), df["late"]
    model = HistGradientBoostingClassifier(max_iter=20).fit(X, y)  # autologged params, metrics
    version = ws.log_model(
        model,
        "dev.ml.flight_delay",
        input_example=X.head(5),
        skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    )
ws.models.set_alias("dev.ml.flight_delay", "champion", version.version, reason="first release")
copied = ws.models.copy("dev.ml.flight_delay@champion", to="staging")

lineage = ws.models.lineage(f"dev.ml.flight_delay/{version.version}")
print(f"run {run.run_id[:12]} read {lineage.data_versions}")  # {'dev.silver.flights': 0}
print(
    f"registered dev.ml.flight_delay v{version.version}, copied as {copied.name} v{copied.version}"
)
