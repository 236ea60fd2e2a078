"""A pyfunc that fails or stalls on demand (x = -1 raises, x = -2 sleeps 3 s)."""

from __future__ import annotations

import time

from mlflow.pyfunc import PythonModel


class Flaky(PythonModel):
    # No type hints: MLflow would read them as the input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if (model_input["x"] == -1).any():
            raise RuntimeError("secret internal detail")
        if (model_input["x"] == -2).any():
            time.sleep(3)
        return model_input["x"] * 2
