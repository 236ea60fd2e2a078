"""The tracer of ``traces: true``: traces land in the target's store, off the request path."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge.llm._calls import Attempt, GatewayResult
from lakeforge.llm._traces import Tracer, experiment_name
from lakeforge.project import Target

URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _mlflow_uris_restored() -> Iterator[None]:
    """A tracer pins its process's MLflow URIs to its target (a serving worker serves one):
    put this test process's back, so later tests and the servers they start are unaffected."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    environment = {name: os.environ.get(name) for name in URI_ENV}
    yield
    tracking_utils._tracking_uri, registry_utils._registry_uri = saved
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def target(tmp_path: Path) -> Target:
    project = lakeforge.init_project("traced", tmp_path)
    with lakeforge.connect("dev", project_dir=project) as ws:
        return ws.target


def result(now: int) -> GatewayResult:
    attempts = [
        Attempt("small", "openai", "mini", now - 9_000_000, now - 6_000_000, 503, "HTTP 503"),
        Attempt("big", "openai", "large", now - 5_000_000, now - 1_000_000, 200),
    ]
    return GatewayResult(
        200,
        {"choices": [{"message": {"content": "hi"}}]},
        "assistant",
        route="big",
        model="large",
        provider="openai",
        latency_ms=10.0,
        attempts=2,
        input_tokens=3,
        output_tokens=1,
        trace=attempts,
    )


def test_traces_are_written_to_the_targets_store(target: Target) -> None:
    from lakeforge.tracking import client_for

    tracer = Tracer("assistant", target)
    for request_id in ("r1", "r2"):  # the second trace goes where the first went
        tracer.submit(result(time.time_ns()), request_id=request_id, user="u", request=b"{}")
    tracer.close()
    client = client_for(target)
    experiment = client.get_experiment_by_name(experiment_name("assistant"))
    assert experiment is not None
    deadline = time.monotonic() + 60  # MLflow's exporter writes them in its own threads
    while len(traces := client.search_traces(locations=[experiment.experiment_id])) < 2:
        assert time.monotonic() < deadline, f"{len(traces)} of 2 traces written"
        time.sleep(0.2)
    assert sorted(t.info.tags["lakeforge.request_id"] for t in traces) == ["r1", "r2"]
    spans = client.get_trace(traces[0].info.trace_id).data.spans
    root = next(s for s in spans if s.parent_id is None)
    children = sorted((s for s in spans if s.parent_id), key=lambda s: s.start_time_ns)
    assert [c.name for c in children] == ["small", "big"]
    assert [c.attributes["lakeforge.status"] for c in children] == [503, 200]
    assert children[1].attributes["lakeforge.output_tokens"] == 1
    assert root.attributes["lakeforge.route"] == "big"
    assert root.start_time_ns <= children[0].start_time_ns  # the gateway call spans them


def test_submit_never_blocks_a_full_queue_drops(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    written: list[str] = []

    def slow_write(self: Tracer, item: object) -> None:
        release.wait(30)
        written.append(item.request_id)  # type: ignore[attr-defined]

    monkeypatch.setattr(Tracer, "_write", slow_write)
    tracer = Tracer("assistant", target, max_queued=2)
    for number in range(6):
        tracer.submit(result(time.time_ns()), request_id=f"r{number}", user=None, request=b"{}")
    # the writer holds one, the queue two: the other three were dropped, not waited for
    assert tracer.dropped >= 3
    release.set()
    tracer.close()
    assert len(written) == 6 - tracer.dropped
