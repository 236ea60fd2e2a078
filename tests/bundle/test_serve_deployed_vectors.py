"""What is deployed is what serves, for vector indexes too: a production-mode target
serves the index specs its deployment recorded, a development-mode one the working copy's."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
import tests.vectors.hash_embedder  # noqa: F401  (registers the model for the syncs here)
from lakeforge import Workspace
from lakeforge.bundle import DeployError, current_deployment, deploy, served_endpoints
from lakeforge.project import VectorIndexSpec
from tests.bundle.test_deploy_code import commit
from tests.conftest import git_init
from tests.serving.conftest import Server
from tests.vectors.conftest import docs_table

DEPLOYED = """
vector_indexes:
  gold.docs_index:
    source: gold.docs
    primary_key: doc_id
    text_column: text
    columns: [kind, faa]
    embedding: {model: test-hash-embedder}
    full_text: true
"""
EDITED = """
vector_indexes:
  gold.docs_index:
    source: gold.docs
    primary_key: doc_id
    text_column: text
    columns: [kind]
    embedding: {model: test-hash-embedder}
  gold.extra_index:
    source: gold.docs
    primary_key: doc_id
    text_column: text
    embedding: {model: test-hash-embedder}
"""
QUERY = {"query_text": "runway", "query_type": "FULL_TEXT", "num_results": 3}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project deployed to prod with gold.docs_index synced there; then its working copy
    changes the index (no keyword index, fewer columns) and adds gold.extra_index."""
    monkeypatch.setenv("LAKEFORGE_USER", "alice")
    folder = lakeforge.init_project("deployvec", tmp_path)
    file = folder / "lakeforge.yaml"
    initial = file.read_text()
    file.write_text(initial + DEPLOYED)
    git_init(folder)
    with lakeforge.connect("prod", project_dir=folder) as prod:
        prod.tables.write("gold.docs", docs_table())
        deploy(prod)
        prod.vectors.sync("gold.docs_index")
    file.write_text(initial + EDITED)
    commit(folder, "edit the index")
    return folder


@pytest.fixture
def prod(project: Path) -> Iterator[Workspace]:
    with lakeforge.connect("prod", project_dir=project) as ws:
        yield ws


def index_spec(specs: object, name: str = "gold.docs_index") -> VectorIndexSpec:
    assert isinstance(specs, dict)
    spec = specs[name]
    assert isinstance(spec, VectorIndexSpec)
    return spec


def test_a_production_target_serves_its_deployed_index_specs(
    project: Path, prod: Workspace
) -> None:
    served = served_endpoints(prod)
    assert list(served.endpoints) == ["gold.docs_index"]
    deployed = index_spec(served.endpoints)
    assert (deployed.full_text, deployed.columns, deployed.name) == (
        True,
        ["kind", "faa"],
        "gold.docs_index",
    )
    with lakeforge.connect("dev", project_dir=project) as dev:
        working = served_endpoints(dev).endpoints
    assert sorted(working) == ["gold.docs_index", "gold.extra_index"]
    assert (index_spec(working).full_text, index_spec(working).columns) == (False, ["kind"])


def test_a_changed_index_spec_in_the_snapshot_is_refused(prod: Workspace) -> None:
    deployment = current_deployment(prod)
    assert deployment is not None
    resources = deployment.path / "lakeforge.yaml"
    os.chmod(resources, stat.S_IRUSR | stat.S_IWUSR)
    resources.write_text(resources.read_text().replace("full_text: true", "full_text: false"))
    with pytest.raises(DeployError, match="changed since it was deployed"):
        served_endpoints(prod)


@pytest.mark.slow
def test_serve_prod_answers_with_the_deployed_spec_and_dev_with_the_edit(project: Path) -> None:
    servers = {
        target: Server(project, env={"LAKEFORGE_TARGET": target}) for target in ("prod", "dev")
    }
    try:
        for server in servers.values():
            server.wait_ready()
        prod, dev = servers["prod"], servers["dev"]
        started = " ".join(prod.log.read_text().split())  # the console may wrap lines
        assert "serving gold.docs_index (target prod, from deployment 1" in started, started
        status, body = prod.post("/vector-indexes/gold.docs_index/query", QUERY)
        assert status == 200, body  # deployed: a keyword index, kind and faa kept
        assert [c["name"] for c in body["manifest"]["columns"]] == [
            "doc_id",
            "text",
            "kind",
            "faa",
            "score",
        ]
        assert body["result"]["data_array"][0][0] == 6
        status, body = prod.post("/vector-indexes/gold.extra_index/query", QUERY)
        assert status == 404 and "gold.extra_index" in body["message"], body

        status, body = dev.post("/vector-indexes/gold.docs_index/query", QUERY)
        assert status == 400 and "full_text: true" in body["message"], body
        status, body = dev.post("/vector-indexes/gold.extra_index/query", {"query_text": "x"})
        assert status == 409 and "not been synced" in body["message"], body
    finally:
        for server in servers.values():
            server.stop()
