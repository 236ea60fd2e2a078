"""Vector indexes served alone, behind bearer tokens: an unauthenticated caller learns
nothing, not even which indexes exist; an authenticated one is told what it may read."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lakeforge
import tests.vectors.hash_embedder  # noqa: F401  (registers the model for the syncs here)
from lakeforge.errors import ConfigError
from lakeforge.project import Project
from lakeforge.serving import select_endpoints
from tests.serving.conftest import Server
from tests.vectors.conftest import docs_table

TOKEN_A, TOKEN_B = "token-for-a", "token-for-b"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def index(auth: str | None = None) -> str:
    """One index over gold.docs, with ``auth: {token_sha256: [auth]}`` when given."""
    lines = [
        "source: gold.docs",
        "primary_key: doc_id",
        "text_column: text",
        "embedding: {model: test-hash-embedder}",
        "full_text: true",
        *([f"auth: {{token_sha256: [{auth}]}}"] if auth else []),
    ]
    return "".join(f"    {line}\n" for line in lines)


INDEXES = (
    "\nvector_indexes:\n"
    f"  gold.open_index:\n{index()}"
    f"  gold.secret_index:\n{index(sha(TOKEN_A))}"
    f"  gold.other_index:\n{index(sha(TOKEN_B))}"
)
QUERY = {"query_text": "runway", "query_type": "FULL_TEXT", "num_results": 3}


def project_with_indexes(folder: Path) -> Path:
    """A project declaring only vector indexes (no model or LLM endpoint)."""
    project = lakeforge.init_project("vecauth", folder)
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(INDEXES)
    return project


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    project = project_with_indexes(tmp_path_factory.mktemp("vecauth"))
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.tables.write("gold.docs", docs_table())
        ws.vectors.sync("gold.open_index")
        ws.vectors.sync("gold.secret_index")  # gold.other_index stays unsynced
    running = Server(project)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def post(
    server: Server, name: str, body: bytes, token: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST a query; (status, JSON body, lower-cased headers)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request("POST", f"/vector-indexes/{name}/query", body, headers)
        response = connection.getresponse()
        raw = response.read()
        found = {k.lower(): v for k, v in response.getheaders()}
        return response.status, json.loads(raw), found
    finally:
        connection.close()


def query(server: Server, name: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    status, body, _ = post(server, name, json.dumps(QUERY).encode(), token)
    return status, body


def test_indexes_serve_alone_and_the_startup_line_names_them(server: Server) -> None:
    status, body = query(server, "gold.open_index")
    assert status == 200 and body["result"]["data_array"][0][0] == 6, body
    started = " ".join(server.log.read_text().split())  # the console may wrap lines
    assert "serving gold.open_index, gold.secret_index, gold.other_index" in started, started


def test_a_protected_index_needs_its_token(server: Server) -> None:
    status, body, headers = post(server, "gold.secret_index", json.dumps(QUERY).encode())
    assert status == 401 and body["error_code"] == "UNAUTHENTICATED", body
    assert headers["www-authenticate"] == "Bearer"
    assert "vector index 'gold.secret_index' needs a bearer token" in body["message"]
    status, body = query(server, "gold.secret_index", "a-guess")
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED", body
    assert "the token is not valid for vector index 'gold.secret_index'" in body["message"]
    status, body = query(server, "gold.secret_index", TOKEN_A)
    assert status == 200 and body["result"]["data_array"][0][0] == 6, body
    # a qualified or upper-case name is the same index, under the same token
    assert query(server, "dev.gold.SECRET_INDEX")[0] == 401
    assert query(server, "dev.gold.SECRET_INDEX", TOKEN_A)[0] == 200


def test_the_token_is_checked_before_the_body_is_read(server: Server) -> None:
    too_big = b'{"query_text": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    status, body, headers = post(server, "gold.secret_index", too_big)
    assert status == 401 and headers["www-authenticate"] == "Bearer", body
    assert post(server, "gold.secret_index", b"not json", "a-guess")[0] == 403
    assert post(server, "gold.secret_index", b"not json", TOKEN_A)[0] == 400


def test_without_a_valid_token_an_unknown_index_looks_like_a_protected_one(
    server: Server,
) -> None:
    def shape(name: str, token: str | None) -> tuple[int, str, str]:
        status, body = query(server, name, token)
        return status, body["error_code"], body["message"].replace(name, "NAME")

    for token in (None, "a-guess"):
        protected = shape("gold.secret_index", token)
        assert protected[0] in (401, 403)
        assert shape("gold.nope", token) == protected
        assert shape("gold.other_index", token) == protected
        message = protected[2]
        assert "open_index" not in message and "other_index" not in message, message


def test_an_authenticated_caller_sees_only_what_it_may_read(server: Server) -> None:
    status, body = query(server, "gold.nope", TOKEN_A)
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST", body
    assert "gold.open_index" in body["message"] and "gold.secret_index" in body["message"]
    assert "other_index" not in body["message"]
    # an index of another token's is not found either: its existence does not leak
    status, other = query(server, "gold.other_index", TOKEN_A)
    assert status == 404
    assert other["message"].replace("gold.other_index", "gold.nope") == body["message"]
    assert query(server, "gold.secret_index", TOKEN_B)[0] == 404
    # with its own token, gold.other_index exists (not synced yet: 409)
    assert query(server, "gold.other_index", TOKEN_B)[0] == 409


def test_auth_is_declared_as_sha256_digests(tmp_path: Path) -> None:
    project = lakeforge.init_project("badauth", tmp_path)
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write("\nvector_indexes:\n  gold.docs_index:\n" + index("my-plain-token"))
    with pytest.raises(ConfigError, match=r"gold\.docs_index.*auth.*not a SHA-256 hex digest"):
        Project.load(project)


def test_serve_selects_indexes_by_name_like_endpoints(tmp_path: Path) -> None:
    config = Project.load(project_with_indexes(tmp_path)).config
    declared = dict(config.vector_indexes)
    chosen = select_endpoints(declared, ["gold.secret_index"])
    assert list(chosen) == ["gold.secret_index"]
    with pytest.raises(
        ConfigError, match=r"unknown endpoint\(s\) gold\.nope .*vector indexes: gold\.open_index"
    ):
        select_endpoints(declared, ["gold.nope"])
    with pytest.raises(ConfigError, match="declares no endpoints or vector indexes"):
        select_endpoints({}, None)
