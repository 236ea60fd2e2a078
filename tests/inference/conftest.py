"""A scoring project: flights as an input table and registered models to score it with.

- ``ml.delay``: LightGBM on six flight columns (trained on float64: the int64 input
  columns are widened), champion -> v1.
- ``ml.pipe``: a scikit-learn pipeline on the same columns (fails on NaN), champion -> v1.
- ``ml.double``: a pyfunc returning ``x * 2`` (slowed by ``$LF_TEST_SLOW_S``; raises on
  ``x == -1``), champion -> v1.
- ``ml.broken``: a pyfunc that cannot load.
- ``dev.silver.flights_in``: 2,000 flights with an ``id`` primary key (``dep_time`` has nulls).
- ``dev.silver.numbers``: ``id`` (primary key) and ``x``, 1,000 rows.
- Job ``score_flights``: ``lakeforge.tasks:score`` of ``numbers`` on each of its updates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import lakeforge
from lakeforge import Workspace
from tests.conftest import git_init

FEATURES = ["month", "day", "dep_time", "sched_dep_time", "distance", "hour"]
INPUT = "dev.silver.flights_in"
INPUT_ROWS = 2000
NUMBERS = "dev.silver.numbers"  # id, x = 0.0 .. 999.0: ml.double's input
# Continuous scoring without a long-lived process: each new input version fires the job.
JOBS = """
jobs:
  score_flights:
    triggers:
      - {type: table_update, tables: [dev.silver.numbers]}
    tasks:
      - key: score
        python: lakeforge.tasks:score
        parameters: {model: "ml.double@champion", input: dev.silver.numbers,
                     output: dev.gold.job_scores}
"""


def flights_input(all_flights: pa.Table, rows: int = INPUT_ROWS) -> pa.Table:
    """``rows`` flights, one in 40 cancelled (null ``dep_time``), shuffled, ids 0.."""
    import numpy as np

    columns = [*FEATURES, "origin", "time_hour"]
    cancelled = all_flights.filter(pc.is_null(all_flights.column("dep_time")))
    data = pa.concat_tables(
        [
            all_flights.slice(0, rows - rows // 40).select(columns),
            cancelled.slice(0, rows // 40).select(columns),
        ]
    )
    data = data.take(pa.array(np.random.default_rng(7).permutation(rows)))
    return data.add_column(0, "id", pa.array(range(rows), pa.int64()))


@pytest.fixture(scope="session")
def scoring_project(tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table) -> Path:
    import lightgbm as lgb
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.inference.models import Doubler, Unloadable

    folder = lakeforge.init_project("scoring", tmp_path_factory.mktemp("scoring"))
    with (folder / "lakeforge.yaml").open("a") as handle:
        handle.write(JOBS)
    git_init(folder)
    train = all_flights.slice(5000, 3000).select([*FEATURES, "arr_delay"]).to_pandas().dropna()
    X = train[FEATURES].astype("float64")
    y = (train["arr_delay"] > 15).astype(int)
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.tables.write(INPUT, flights_input(all_flights), primary_keys=["id"])
        numbers = {"id": list(range(1000)), "x": [float(i) for i in range(1000)]}
        ws.tables.write(NUMBERS, pa.table(numbers), primary_keys=["id"])
        with ws.start_run("train", autolog=False):
            model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
            ws.log_model(model, "ml.delay", input_example=X.head(3))
            pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
            ws.log_model(pipe, "ml.pipe", input_example=X.head(3))
            example = pd.DataFrame({"x": [1.0, 2.0]})
            ws.log_model(Doubler(), "ml.double", input_example=example)
            ws.log_model(Unloadable(), "ml.broken", input_example=example)
        for name in ("ml.delay", "ml.pipe", "ml.double"):
            ws.models.set_alias(name, "champion", 1)
    return folder


@pytest.fixture
def sws(scoring_project: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=scoring_project) as workspace:
        yield workspace
