"""The shells over the SDK: ``lakeforge vectors``, deploy, the job task, the HTTP route."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

import lakeforge
from lakeforge.cli import app
from lakeforge.tasks import sync_vector_index
from tests.conftest import git_init
from tests.serving.conftest import Server
from tests.vectors.conftest import docs_table

EMBEDDINGS = """
  gold.remote_index:
    source: gold.docs
    primary_key: doc_id
    text_column: text
    embedding: {endpoint: "${EMBED_URL:-http://127.0.0.1:9/v1}", model: embed,
                api_key: {env: EMBED_KEY}}
llm_endpoints:
  embed:
    type: embeddings
    models: [{name: minilm, provider: local, model: all-MiniLM-L6-v2}]
"""


def run(project: Path, *args: str) -> str:
    result = CliRunner().invoke(
        app, ["--project-dir", str(project), "vectors", *args], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return re.sub("[│┃]", " ", result.output)


def test_cli_sync_query_pin_rollback_history(vproject: Path) -> None:
    assert "gold.docs_index" in run(vproject, "list")
    assert "8 upserted, 0 deleted" in run(vproject, "sync", "gold.docs_index", "-q")
    rows = json.loads(
        run(
            vproject,
            "query",
            "gold.docs_index",
            "snow on the runway",
            "-k",
            "2",
            "--filter",
            "faa = 'LGA'",
            "--format",
            "json",
        )
    )
    assert [r["doc_id"] for r in rows][:1] == [6] and len(rows) == 2
    hybrid = run(vproject, "query", "gold.docs_index", "runway", "--type", "hybrid")
    assert "Snow and ice" in hybrid
    with lakeforge.connect("dev", project_dir=vproject) as ws:
        ws.tables.write("gold.docs", docs_table([(9, "Fog", "incident", "EWR")]))
    out = sync_vector_index("gold.docs_index", project_dir=str(vproject))
    assert (out["upserted"], out["deleted"]) == (1, 0)
    assert "rolled back" in run(vproject, "rollback", "gold.docs_index")
    history = run(vproject, "history", "gold.docs_index")
    assert re.search(r"\bv0\s+8\b.*\*", history), history
    result = CliRunner().invoke(
        app,
        [
            "--project-dir",
            str(vproject),
            "vectors",
            "query",
            "gold.docs_index",
            "x",
            "--filter",
            "1=1; DROP TABLE x",
        ],
    )
    assert result.exit_code != 0 and "is not allowed" in str(result.exception)


def test_deploy_creates_declared_indexes_empty(vproject: Path) -> None:
    from lakeforge.bundle import deploy

    git_init(vproject)
    with lakeforge.connect("dev", project_dir=vproject) as ws:
        plan = deploy(ws)
        created = {c.name for c in plan.changes if c.kind == "vector_index"}
        assert created == {"gold.docs_index", "gold.manual_index"}
        assert {i.name: i.latest_version is not None for i in ws.vectors.list()} == {
            "gold.docs_index": True,
            "gold.manual_index": True,
        }
        assert not [c for c in deploy(ws).changes if c.kind == "vector_index"]


@pytest.mark.slow
def test_http_route_answers_databricks_shaped_queries_and_follows_pins(vproject: Path) -> None:
    with (vproject / "lakeforge.yaml").open("a") as handle:
        handle.write(EMBEDDINGS)
    git_init(vproject)
    with lakeforge.connect("dev", project_dir=vproject) as ws:
        first = ws.vectors.sync("gold.docs_index").index_version
        ws.tables.delta("gold.docs", write=True).delete("kind = 'incident'")
        ws.vectors.sync("gold.docs_index")
    server = Server(vproject)
    try:
        server.wait_ready()
        path = "/vector-indexes/gold.docs_index/query"
        status, body = server.post(
            path,
            {
                "query_text": "airport in New Jersey",
                "num_results": 3,
                "columns": ["faa"],
                "filters": "kind = 'airport'",
            },
        )
        assert status == 200, body
        assert [c["name"] for c in body["manifest"]["columns"]] == [
            "doc_id",
            "text",
            "faa",
            "score",
        ]
        assert body["result"]["row_count"] == 3
        assert body["result"]["data_array"][0][:3] == [
            3,
            "Newark Liberty airport lies in New Jersey near Manhattan",
            "EWR",
        ]
        status, body = server.post(path, {"query_text": "runway", "query_type": "FULL_TEXT"})
        assert (status, body["result"]["row_count"]) == (200, 0)  # the incident is deleted
        with lakeforge.connect("dev", project_dir=vproject) as ws:
            ws.vectors.pin("gold.docs_index", first)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the worker re-reads the pin within a second
            status, body = server.post(path, {"query_text": "runway", "query_type": "FULL_TEXT"})
            if body["result"]["row_count"] == 1:
                break
            time.sleep(0.3)
        assert body["result"]["data_array"][0][0] == 6
        status, body = server.post(path, {"query_text": "x", "filters": "kind = 'a' OR 1; --"})
        assert status == 400 and "is not allowed" in body["message"]
        status, body = server.post("/vector-indexes/gold.nope/query", {"query_text": "x"})
        assert status == 404 and "gold.docs_index" in body["message"]
        status, body = server.post(path, {"query_text": "x", "num_results": 0, "extra": 1})
        assert status == 400 and "unknown field(s) extra" in body["message"]
        status, body = server.post("/vector-indexes/gold.manual_index/query", {"query_text": "x"})
        assert status == 409, body
        # an index embedded by an OpenAI-compatible endpoint (this server's gateway)
        env = {"EMBED_URL": f"{server.url}/v1", "EMBED_KEY": "sk-not-logged"}
        with mock.patch.dict(os.environ, env), lakeforge.connect("dev", project_dir=vproject) as ws:
            ws.vectors.sync("gold.remote_index")
            remote = ws.vectors.search("gold.remote_index", "airport in New Jersey", k=3)
            local = ws.vectors.search(
                "gold.docs_index", "airport in New Jersey", k=3, version=first
            )
            assert remote["doc_id"].to_pylist() == local["doc_id"].to_pylist()
    finally:
        server.stop()
