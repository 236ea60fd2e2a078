"""Tune hyperparameters with Optuna: each trial a nested MLflow run, the best model registered.

Run it from any folder: python examples/tuning.py
"""

from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from sklearn.linear_model import LogisticRegression

import lakeforge
from lakeforge.demo import load_flights
from lakeforge.tracking import TrialHandle

project = lakeforge.init_project("tuning", Path(mkdtemp(prefix="lakeforge-tuning-")))
ws = lakeforge.connect("dev", project_dir=project)
ws.tables.write("dev.silver.flights", load_flights().slice(0, 5_000))

df = ws.sql(
    "SELECT dep_delay, distance, hour, (arr_delay > 15)::INT AS late "
    "FROM dev.silver.flights WHERE arr_delay IS NOT NULL"
).to_pandas()
X, y = df[["dep_delay", "distance", "hour"]].astype(float), df["late"]
train, valid = slice(0, 3_000), slice(3_000, None)


def objective(params: dict[str, Any], trial: TrialHandle) -> tuple[float, Any]:
    """Train one candidate; return its score and the model (the best one is kept)."""
    model = LogisticRegression(C=params["C"], max_iter=200).fit(X[train], y[train])
    return float(model.score(X[valid], y[valid])), model


space = {  # the shape of a YAML config section; or a function of the Optuna trial
    "C": {"type": "float", "low": 1e-4, "high": 10.0, "log": True},
}
result = ws.tune(
    objective,
    space,
    n_trials=5,
    seed=1,  # same seed, same trial params
    run_name="tune-late",
    register_as="dev.ml.late",  # or leave it out: the best model is logged unregistered
    input_example=X.head(5),
)
print(f"{result.count('complete')} trials, best C={result.best_params['C']:.4g}")
print(f"best accuracy {result.best_value:.3f} in trial {result.best_trial}")
print(f"registered {result.model.name} v{result.model.version} on parent run {result.run_id[:12]}")
