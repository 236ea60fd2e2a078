"""A pyfunc version that cannot load, for the hot-swap tests (importable by the worker)."""

from __future__ import annotations

import time

from mlflow.pyfunc import PythonModel

REASON = "weights missing from this version"


class Unloadable(PythonModel):
    """Raises when MLflow loads it, as a version with a broken artifact would; each
    attempt appends its time to the file ``attempts``."""

    def __init__(self, attempts: str) -> None:
        self.attempts = attempts

    # No type hints: MLflow would read them as the input schema.
    def load_context(self, context):  # type: ignore[no-untyped-def]
        with open(self.attempts, "a") as handle:
            handle.write(f"{time.time()}\n")
        raise RuntimeError(REASON)

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return "never answers"
