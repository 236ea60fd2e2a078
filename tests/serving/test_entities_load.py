"""Loading a served entity: a feature-aware Python model gets the online store whether it
was logged as an object or from code (MLflow loads the two through different modules)."""

from __future__ import annotations

from pathlib import Path

import lakeforge
from lakeforge.serving._entities import load

CODE = """
import mlflow
from mlflow.pyfunc import PythonModel


class StoreModel(PythonModel):
    def __init__(self):
        self.store = None

    def use_online_store(self, store):
        self.store = store

    def predict(self, context, model_input, params=None):
        return [str(self.store)] * len(model_input)


mlflow.models.set_model(StoreModel())
"""


def test_a_python_model_logged_from_code_gets_the_online_store(
    served_project: Path, tmp_path: Path
) -> None:
    import mlflow

    from lakeforge.tracking import use_target

    code = tmp_path / "store_model.py"
    code.write_text(CODE)
    with lakeforge.connect("dev", project_dir=served_project) as ws:
        with use_target(ws.target), mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(code), registered_model_name="dev.ml.from_code"
            )
        loaded = load(ws, "dev.ml.from_code", str(info.registered_model_version), lambda: "STORE")
    assert loaded.pyfunc.loader_module != "mlflow.pyfunc.model"  # the from-code loader
    assert loaded.pyfunc.unwrap_python_model().store == "STORE"
