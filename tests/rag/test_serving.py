"""A chain served like any model: `lakeforge serve --model NAME@ALIAS`, over HTTP, end to end
on a real index (MiniLM), a registered prompt and a fake LLM; its traces land in the
target's tracking store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

import lakeforge
from lakeforge.rag import log_chain
from lakeforge.testing.fake_openai import FakeOpenAI
from lakeforge.tracking import use_target
from tests.rag.conftest import INDEX, NOTES, PROMPT
from tests.serving.conftest import Server

QUESTION = "Why are flights delayed by summer storms?"


@pytest.fixture(scope="module")
def served_chain(rag_project: Path, fake_llm: FakeOpenAI) -> Iterator[Server]:
    with lakeforge.connect("dev", project_dir=rag_project) as ws:
        version = log_chain(
            ws,
            name="rag.served",
            index=INDEX,
            prompt=f"{PROMPT}@production",
            llm={"base_url": fake_llm.url, "model": "chat"},
            k=2,
        )
        ws.models.set_alias("rag.served", "champion", int(version.version))
    server = Server(rag_project, "--model", "rag.served@champion")
    try:
        server.wait_ready(timeout_s=180)
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_served_chain_answers_with_sources(
    served_chain: Server, rag_project: Path, fake_llm: FakeOpenAI
) -> None:
    status, body = served_chain.post(
        "/serving-endpoints/served/invocations", {"dataframe_records": [{"question": QUESTION}]}
    )
    assert status == 200, body
    [answer] = body["predictions"]
    assert answer["sources"][0] == "n04" and len(answer["sources"]) == 2
    storms = dict((i, t) for i, _, t in NOTES)["n04"]
    assert storms in answer["answer"] and QUESTION in answer["answer"]
    assert answer["prompt_version"] == "dev.prompts.rag_answer/1"

    # a question that is not text is the caller's error, named
    status, body = served_chain.post(
        "/serving-endpoints/served/invocations", {"dataframe_records": [{"question": 3}]}
    )
    assert status == 400, body
    assert "a RAG chain takes 'question': non-empty text per row" in body["message"]

    # the worker traced the request into dev's tracking store, experiment ragproj/rag
    # (exported in the background: wait for it)
    expected = answer["sources"]
    deadline = time.monotonic() + 30
    while True:
        retrieved = retrieved_ids(rag_project)
        if expected in retrieved or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert expected in retrieved
    assert not (rag_project / "mlflow.db").exists()


def retrieved_ids(project: Path) -> list[list[str]]:
    """The document ids of every ``retrieve`` span in dev's ``ragproj/rag`` experiment."""
    with lakeforge.connect("dev", project_dir=project) as ws, use_target(ws.target):
        experiment = mlflow.get_experiment_by_name("ragproj/rag")
        if experiment is None:
            return []
        traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    return [
        [d["id"] for d in span.outputs]
        for trace in traces
        for span in trace.data.spans
        if span.name == "retrieve"
    ]
