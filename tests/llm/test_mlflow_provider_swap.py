"""``provider: mlflow`` follows its alias while ``lakeforge serve`` runs (hot swap).

One server for the module, over ``llm.swap``: v1 answers ``echo: ...``, v2 ``fixed``, v3
cannot be loaded. ``swap`` routes to ``llm.swap@champion``, ``pinned`` to ``llm.swap/1``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mlflow.models import infer_signature

import lakeforge
from lakeforge.llm._mlflow_provider import POLL_INTERVAL_S
from lakeforge.tracking import client_for
from tests.llm.echo_model import ChatCompletionModel, EchoChat
from tests.llm.swap_model import REASON, Unloadable
from tests.serving.conftest import Server

pytestmark = pytest.mark.slow
ENDPOINTS = """
llm_endpoints:
  swap:
    type: chat
    models:
      - {name: live, provider: mlflow, model: llm.swap@champion, max_retries: 0}
  pinned:
    type: chat
    models:
      - {name: first, provider: mlflow, model: llm.swap/1, max_retries: 0}
  cached:
    type: chat
    cache: {ttl_s: 3600}
    models:
      - {name: live, provider: mlflow, model: llm.swap@champion, max_retries: 0}
"""
V1, V2 = "echo: hi", "fixed"
FOLLOWING = 2  # routes that follow llm.swap@champion (swap, cached), each with its watch
DEADLINE_S = 90.0  # generous: the machine may be busy; the swap itself takes seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    project = lakeforge.init_project("swapped", tmp_path_factory.mktemp("swap"))
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(ENDPOINTS)
    chat = infer_signature({"messages": [{"role": "user", "content": "hi"}]}, "ok")
    with lakeforge.connect("dev", project_dir=project) as ws:
        with ws.start_run("swap", autolog=False):
            attempts = str(project / "v3_loads.txt")
            for model in (EchoChat(), ChatCompletionModel(), Unloadable(attempts)):
                ws.log_model(model, "llm.swap", signature=chat)
        ws.models.set_alias("llm.swap", "champion", 1)
    served = Server(project)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


def ask(server: Server, endpoint: str) -> tuple[int, Any]:
    body = {"model": endpoint, "messages": [{"role": "user", "content": "hi"}]}
    return server.post("/v1/chat/completions", body)


def answer(server: Server, endpoint: str) -> tuple[str, str]:
    """The text and the ``model`` (the version that answered) of a 200 answer."""
    status, body = ask(server, endpoint)
    assert status == 200, body
    return body["choices"][0]["message"]["content"], body["model"]


def until(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check()`` until it is truthy; fail naming ``what`` after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {DEADLINE_S:.0f} s")


def move(project: Path, version: int) -> None:
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.models.set_alias("llm.swap", "champion", version)


def test_the_gateway_follows_the_alias_without_a_restart(server: Server) -> None:
    assert answer(server, "swap") == (V1, "dev.llm.swap/1")
    assert answer(server, "pinned") == (V1, "dev.llm.swap/1")
    assert answer(server, "cached") == (V1, "dev.llm.swap/1")  # now in its response cache

    # requests keep coming while the alias moves: none of them fails
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            statuses.append(ask(server, "swap")[0])

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(load)
        try:
            until(lambda: len(statuses) >= 8, "requests before the move")
            move(server.project, 2)
            until(lambda: answer(server, "swap")[0] == V2, "the swap to v2")
            seen = len(statuses)
            until(lambda: len(statuses) >= seen + 8, "requests after the swap")
        finally:
            stop.set()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert answer(server, "swap") == (V2, "dev.llm.swap/2")
    assert answer(server, "pinned") == (V1, "dev.llm.swap/1")
    # the same request on a cached route is not answered from the old version's entry
    until(lambda: answer(server, "cached") == (V2, "dev.llm.swap/2"), "the cached route's swap")


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(server: Server) -> None:
    move(server.project, 2)
    until(lambda: answer(server, "swap")[0] == V2, "v2 answering")
    move(server.project, 3)
    # each following route logs it (message and traceback each name the reason)
    until(
        lambda: server.log.read_text().count(REASON) >= 2 * FOLLOWING,
        "the failed load of v3 in the server log",
    )
    logged = server.log.read_text()
    assert "dev.llm.swap/3" in logged  # the log names the version that did not load
    for _ in range(5):
        assert answer(server, "swap") == (V2, "dev.llm.swap/2")
    assert answer(server, "pinned") == (V1, "dev.llm.swap/1")

    # tried again at each registry poll, not in a loop, and logged once
    seen = len(load_times(server.project))
    until(lambda: len(load_times(server.project)) >= seen + 2 * FOLLOWING, "retries of v3")
    times = load_times(server.project)
    # each route that follows the alias tries once a poll: no more often over the span
    span = times[-1] - times[0]
    assert len(times) <= FOLLOWING * (span / (POLL_INTERVAL_S - 0.5) + 1), times
    assert server.log.read_text().count(REASON) == logged.count(REASON) >= 1
    assert answer(server, "swap") == (V2, "dev.llm.swap/2")


def load_times(project: Path) -> list[float]:
    """When the worker tried to load v3 (each attempt writes a line)."""
    path = project / "v3_loads.txt"
    return [float(line) for line in path.read_text().split()] if path.exists() else []


def test_an_alias_moved_directly_in_mlflow_is_followed_too(server: Server) -> None:
    """No outbox event: the registry poll notices it."""
    serving = answer(server, "swap")[1]
    version, text = ("1", V1) if serving == "dev.llm.swap/2" else ("2", V2)
    with lakeforge.connect("dev", project_dir=server.project) as ws:
        client_for(ws.target).set_registered_model_alias("dev.llm.swap", "champion", version)
    want = (text, f"dev.llm.swap/{version}")
    until(lambda: answer(server, "swap") == want, f"the swap from {serving} to v{version}")
    assert answer(server, "pinned") == (V1, "dev.llm.swap/1")
