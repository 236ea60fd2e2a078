"""The chain as an MLflow pyfunc: configuration in ``model_config``, resolved at load time.

``load_context`` opens the workspace of the process that loads the model
(``LAKEFORGE_PROJECT_DIR`` and ``LAKEFORGE_TARGET``, which ``lakeforge serve`` sets), so a
chain promoted from staging to prod retrieves from prod's index with prod's prompt.
"""

from __future__ import annotations

import contextvars
import os
import threading
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from mlflow.pyfunc.model import PythonModel

import lakeforge
from lakeforge.rag._chain import ChainError, LLMUnavailableError, RagChain
from lakeforge.rag._config import QUESTION, parse_config

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

OUTPUTS = ("answer", "sources", "prompt_version")
TRACE_PIPELINE = "rag"
_SERVING_ENV = "LAKEFORGE_SERVE_ENDPOINTS"  # set in every `lakeforge serve` worker
_tracing = threading.Lock()
# The workspace a chain loads into while log_chain logs it (MLflow loads it once to check
# the input example); elsewhere a chain opens the workspace of the process's target.
LOGGING_WORKSPACE: contextvars.ContextVar[Workspace | None] = contextvars.ContextVar(
    "lakeforge_rag_logging_workspace", default=None
)


class RagChainModel(PythonModel):
    """``question`` in; ``answer``, ``sources`` (document ids) and ``prompt_version`` out.

    A chain whose LLM endpoint fails raises an MlflowException TEMPORARILY_UNAVAILABLE
    naming it: served, a 503 (other failures, a prompt that lost a placeholder, a 500).
    """

    def __init__(self) -> None:
        self.chain: RagChain | None = None

    def load_context(self, context: Any) -> None:
        config = parse_config(context.model_config, "RAG chain model_config")
        ws = LOGGING_WORKSPACE.get()
        if ws is not None:  # MLflow checks the input example while log_chain logs: no trace
            config = config.model_copy(update={"trace": False})
        else:
            ws = lakeforge.connect(project_dir=os.environ.get("LAKEFORGE_PROJECT_DIR"))
        self.chain = RagChain(ws, config)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.chain is None:
            raise ChainError("the RAG chain was not loaded (load it with mlflow.pyfunc.load_model)")
        try:
            questions = questions_of(model_input)
        except ChainError as exc:  # the caller's input: a 400 when served
            raise MlflowException(exc.message, error_code=INVALID_PARAMETER_VALUE) from None
        if self.chain.config.trace:
            trace_to_target(self.chain.ws)
        try:
            answers = [self.chain.answer(q) for q in questions]
        except LLMUnavailableError as exc:
            raise MlflowException(str(exc), error_code=TEMPORARILY_UNAVAILABLE) from exc
        return pd.DataFrame(
            {
                "answer": [a.answer for a in answers],
                "sources": [a.sources for a in answers],
                "prompt_version": [a.prompt_version for a in answers],
            }
        )

    def warm(self, model_input: pd.DataFrame) -> None:
        """What ``lakeforge serve`` runs before serving instead of a predict: retrieve for
        each question and read the prompt, but never ask the LLM, so that the chain serves
        while its LLM is down or slow (a broken index or prompt still fails here)."""
        if self.chain is None:
            raise ChainError("the RAG chain was not loaded (load it with mlflow.pyfunc.load_model)")
        for question in questions_of(model_input):
            self.chain.retrieve(question)
        self.chain.prompt()


def questions_of(model_input: Any) -> list[str]:
    """Questions from a frame with a ``question`` column, records, a dict or plain text."""
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        if QUESTION not in model_input.columns:
            raise ChainError(
                f"the input has no {QUESTION!r} column (columns: "
                f"{', '.join(map(str, model_input.columns))})"
            )
        values = model_input[QUESTION].tolist()
    elif isinstance(model_input, dict):
        values = model_input.get(QUESTION)
        values = [values] if isinstance(values, str) else values
    elif isinstance(model_input, list):
        values = [v.get(QUESTION) if isinstance(v, dict) else v for v in model_input]
    else:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ChainError(
            f"a RAG chain takes {QUESTION!r}: non-empty text per row "
            f'(e.g. {{"dataframe_records": [{{"{QUESTION}": "Which airport ...?"}}]}})'
        )
    return values


def trace_to_target(ws: Workspace) -> None:
    """In a ``lakeforge serve`` worker with no MLflow tracking URI of its own, send traces to
    the target's tracking store, experiment ``<project>/rag`` (once per process)."""
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    from lakeforge.tracking import client_for, experiment_id, experiment_name

    if _SERVING_ENV not in os.environ or is_tracking_uri_set():  # type: ignore[no-untyped-call]
        return
    with _tracing:
        if is_tracking_uri_set():  # type: ignore[no-untyped-call]
            return
        name = experiment_name(ws.project.name, TRACE_PIPELINE)
        found = experiment_id(client_for(ws.target), ws.target, name)
        mlflow.set_tracking_uri(ws.target.mlflow_tracking_uri)
        mlflow.set_experiment(experiment_id=found)
