"""``log_chain``: a RAG chain logged as an MLflow pyfunc (models from code) and registered.

The version carries a signature (``question`` -> ``answer``, ``sources``,
``prompt_version``), an input example, and its lineage: the index with the pinned index
version and the source's Delta version it reflects, the prompt version, the git commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError
from lakeforge.events import MODEL_VERSION_CREATED, Outbox
from lakeforge.rag._chain import ChainError, RagChain, short_index_name
from lakeforge.rag._config import ChainConfig, LLMConfig, parse_config, parse_llm
from lakeforge.tracking import TAG_DATA, TAG_RUN
from lakeforge.vectors import QueryType

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.tracking import TrainingRun

TAG_INDEX = "lakeforge.rag.index"
TAG_INDEX_VERSION = "lakeforge.rag.index_version"
TAG_DELTA_VERSION = "lakeforge.rag.delta_version"
TAG_PROMPT = "lakeforge.rag.prompt"
METRIC_TAG_PREFIX = "lakeforge.metric."  # as ws.log_model tags a version with its run's metrics
CODE_FILE = Path(__file__).with_name("chain_code.py")
DEFAULT_EXAMPLE = "What does this index know about?"


def log_chain(
    ws: Workspace,
    *,
    name: str,
    index: str,
    prompt: str,
    llm: LLMConfig | Mapping[str, Any],
    k: int = 5,
    filter: str | None = None,
    query_type: QueryType = "vector",
    trace: bool = True,
    questions: Any = None,
    eval_k: Sequence[int] = (1, 5, 10),
    input_example: str = DEFAULT_EXAMPLE,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> Any:
    """Log a chain retrieve(``index``) -> ``prompt`` -> ``llm`` and register it as ``name``.

    Runs inside the active run (``with ws.start_run(...)``) or opens one in experiment
    ``<project>/rag``. The chain answers ``input_example`` once before it is logged (a
    chain that cannot answer is refused). With ``questions`` (a question column and a
    list of relevant ids), its retrieval is evaluated on the run first (recall@k, MRR,
    nDCG@k; see :func:`evaluate_retrieval`), so deployment policies can gate on them.
    Returns the MLflow ``ModelVersion``.
    """
    config = parse_config(
        {
            "index": short_index_name(ws, index),
            "prompt": _portable_prompt(ws, prompt),
            "llm": parse_llm(dict(llm) if isinstance(llm, Mapping) else llm),
            "k": k,
            "filter": filter,
            "query_type": query_type,
            "trace": trace,
        }
    )
    model_name = str(ws.tracking.model_name(name))
    chain = RagChain(ws, config.model_copy(update={"trace": False}))
    try:
        answer = chain.answer(input_example)
    finally:
        chain.close()
    lineage = index_lineage(ws, config.index)
    training = ws.tracking.active_run
    with _run(ws, training) as run:
        if questions is not None:
            from lakeforge.rag._evaluate import evaluate_retrieval

            evaluate_retrieval(ws, config, questions, k=eval_k)
        run.log_params(_params(config))
        version_tags = {
            TAG_RUN: run.run_id,
            TAG_DATA: json.dumps({lineage["source"]: lineage["delta_version"]}),
            TAG_INDEX: lineage["index"],
            TAG_INDEX_VERSION: str(lineage["index_version"]),
            TAG_DELTA_VERSION: str(lineage["delta_version"]),
            TAG_PROMPT: answer.prompt_version,
            **_run_tags(run),
            **(tags or {}),
        }
        # the version is created with its lineage tags: a crash cannot leave one without
        version = _log_and_register(ws, model_name, config, input_example, version_tags)
        client = run.client
        client.update_model_version(
            model_name,
            version,
            description=description
            or f"RAG chain by run {run.run_id}: {lineage['index']}@v{lineage['index_version']} "
            f"(from {lineage['source']}@v{lineage['delta_version']}), prompt "
            f"{answer.prompt_version}, LLM {config.llm.model}",
        )
        Outbox(ws.state).emit(
            MODEL_VERSION_CREATED,
            model_name,
            {
                "version": int(version),
                "run_id": run.run_id,
                "data_versions": {lineage["source"]: lineage["delta_version"]},
            },
        )
        return client.get_model_version(model_name, version)


def index_lineage(ws: Workspace, index: str) -> dict[str, Any]:
    """The index's pinned version and the source Delta version it reflects."""
    from lakeforge.vectors import history, resolve

    entries = history(ws, index)
    pinned = next((e for e in entries if e.pinned), None)
    qualified = f"{ws.target.catalog}.{index}"
    if pinned is None:
        raise ChainError(
            f"vector index {qualified} has no pinned version: a chain must read a synced index",
            hint=f"lakeforge vectors sync {index} -t {ws.target.name}",
        )
    source = resolve(ws, index).spec.source
    if source.count(".") == 1:
        source = f"{ws.target.catalog}.{source}"
    return {
        "index": qualified,
        "index_version": int(pinned.index_version),
        "delta_version": int(pinned.delta_version),
        "source": source,
    }


def _portable_prompt(ws: Workspace, ref: str) -> str:
    """``ref`` without this target's catalog, so another target resolves it in its own."""
    parsed = ws.prompts.parse(ref)
    short = parsed.name.split(".", 1)[1]
    if parsed.version is not None:
        return f"{short}/{parsed.version}"
    return f"{short}@{parsed.alias}" if parsed.alias else short


@contextmanager
def _run(ws: Workspace, active: TrainingRun | None) -> Iterator[TrainingRun]:
    if active is not None:
        yield active
        return
    with ws.start_run("rag", autolog=False) as run:
        yield run


def _params(config: ChainConfig) -> dict[str, Any]:
    return {
        "rag.index": config.index,
        "rag.k": config.k,
        "rag.query_type": config.query_type,
        "rag.filter": config.filter or "",
        "rag.prompt": config.prompt,
        "rag.llm_model": config.llm.model,
        "rag.llm_base_url": config.llm.base_url,
    }


def _run_tags(run: TrainingRun) -> dict[str, str]:
    found = run.client.get_run(run.run_id)
    return {
        **{k: v for k, v in found.data.tags.items() if k.startswith("lakeforge.git.")},
        **{f"{METRIC_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in found.data.metrics.items()},
    }


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string, "question")]),
        outputs=Schema(
            [
                ColSpec(DataType.string, "answer"),
                ColSpec(Array(DataType.string), "sources"),
                ColSpec(DataType.string, "prompt_version"),
            ]
        ),
    )


def _log_and_register(
    ws: Workspace, model_name: str, config: ChainConfig, example: str, tags: dict[str, str]
) -> str:
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    import lakeforge
    from lakeforge.rag._model import LOGGING_WORKSPACE

    requirements = [
        *(mlflow.pyfunc.get_default_pip_requirements() or []),
        f"lakeforge[vectors,serving]=={lakeforge.__version__}",
    ]
    token = LOGGING_WORKSPACE.set(ws)
    try:
        info = mlflow.pyfunc.log_model(
            name="chain",
            python_model=str(CODE_FILE),
            model_config=config.to_model_config(),
            signature=_signature(),
            input_example=pd.DataFrame({"question": [example]}),
            pip_requirements=requirements,
        )
        registered = mlflow.register_model(info.model_uri, model_name, tags=tags)
    except MlflowException as exc:
        raise LakeforgeError(f"cannot log RAG chain {model_name}: {exc.message}") from None
    finally:
        LOGGING_WORKSPACE.reset(token)
    return str(registered.version)
