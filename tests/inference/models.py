"""Test pyfuncs: a model that doubles ``x`` (slowed by ``$LF_TEST_SLOW_S`` per call, and
raising on ``x == -1``), and one that cannot load."""

from __future__ import annotations

import os
import time

from mlflow.pyfunc.model import PythonModel


class Doubler(PythonModel):
    # No type hints: MLflow would read them as the input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        time.sleep(float(os.environ.get("LF_TEST_SLOW_S", "0")))
        if (model_input["x"] == -1).any():
            raise ValueError("x = -1 is out of the model's domain")
        return model_input["x"] * 2


class Unloadable(PythonModel):
    def load_context(self, context):  # type: ignore[no-untyped-def]
        raise RuntimeError("the weights file is corrupt")

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input
