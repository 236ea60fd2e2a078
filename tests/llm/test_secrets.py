"""Planted upstream credentials appear in no log line, table row, error or MLflow record.

Three secrets travel: one from an environment variable (accepted upstream), one from a
file (sent to an upstream that echoes the Authorization header into its errors) and a
wrong one (an upstream that echoes the rejected key, as OpenAI does). Each must reach
its upstream, and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

import lakeforge
from lakeforge.errors import LakeforgeError
from lakeforge.testing.fake_openai import FakeOpenAI
from tests.llm.llm_server import TOKEN, LLMServer, llm_project

pytestmark = pytest.mark.slow
ENV_SECRET = "sk-env-3b8e0c52d1f94a67"
FILE_SECRET = "sk-file-a91d4e7730bc5f28"
WRONG_SECRET = "sk-wrong-0f6d2c8e41b7a395"

EXTRA = """
  echoing:
    type: chat
    models:
      - {{name: leaky, provider: openai, model: m, base_url: "{leaky}", max_retries: 0,
         api_key: {{file: {key_file}}}}}
      - {{name: good, provider: openai, model: m, base_url: "{good}", max_retries: 0,
         api_key: {{env: LF_TEST_UPSTREAM_KEY}}}}
  rejected:
    type: chat
    models:
      - {{name: strict, provider: openai, model: m, base_url: "{good}", max_retries: 0,
         api_key: {{env: LF_TEST_WRONG_KEY}}}}
"""


def _files_holding(folder: Path, secrets: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return found


def test_no_planted_secret_leaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = [ENV_SECRET, FILE_SECRET, WRONG_SECRET]
    key_file = tmp_path / "secrets" / "upstream"
    key_file.parent.mkdir()
    key_file.write_text(FILE_SECRET + "\n")
    monkeypatch.setenv("LF_TEST_WRONG_KEY", WRONG_SECRET)  # the server inherits it
    with FakeOpenAI(api_key=ENV_SECRET) as good, FakeOpenAI() as leaky:
        extra = EXTRA.format(leaky=leaky.url, good=good.url, key_file=key_file)
        project = llm_project(tmp_path / "p", good.url, extra)
        server = LLMServer(project, ENV_SECRET, "-e", "echoing", "-e", "rejected")
        errors: list[str] = []
        try:
            server.wait_ready()
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)
            hello: Any = [{"role": "user", "content": "hello"}]
            assert {m.id for m in client.models.list()} == {"echoing", "rejected"}  # -e
            # the file's key goes to `leaky`, which fails and echoes it: `good` answers
            leaky.fail(500, echo_auth=True)
            answer = client.chat.completions.create(model="echoing", messages=hello)
            assert answer.choices[0].message.content == "hello"
            # a 400 is the client's fault: relayed, with the upstream's echo of the key
            leaky.fail(400, echo_auth=True)
            with pytest.raises(openai.BadRequestError) as relayed:
                client.chat.completions.create(model="echoing", messages=hello)
            errors.append(str(relayed.value.body))
            assert "[redacted]" in errors[-1]
            # the wrong key is refused upstream, which echoes it; streamed or not
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as rejected:
                    client.chat.completions.create(model="rejected", messages=hello, stream=stream)
                errors.append(str(rejected.value.body))
        finally:
            server.stop()
        # each secret did reach its upstream: the checks below are not vacuous
        seen = [h.get("authorization", "") for h in good.state()["headers"]]
        seen += [h.get("authorization", "") for h in leaky.state()["headers"]]
    assert f"Bearer {ENV_SECRET}" in seen
    assert f"Bearer {FILE_SECRET}" in seen
    assert f"Bearer {WRONG_SECRET}" in seen
    for error in errors:
        assert not [s for s in secrets if s in error], error
    log = server.log.read_text()
    assert "HTTP 500" in log or "HTTP 401" in log, log[-2000:]  # the failures were logged
    assert not [s for s in secrets if s in log]
    with lakeforge.connect("dev", project_dir=project) as ws:
        logged = 0
        for name in ws.tables.list():
            rows = ws.tables.read(name)
            text = str(rows.to_pylist())
            assert not [s for s in secrets if s in text], name
            logged += rows.num_rows if name.table.endswith("_llm_requests") else 0
        assert logged == 4  # every request made above was logged, and checked
        root = Path(ws.target.root)
    # spool segments, Delta files, MLflow's store (prompts, runs) and the server log
    assert _files_holding(project, secrets) == []
    assert _files_holding(root, secrets) == []


def test_a_key_written_into_lakeforge_yaml_is_refused_without_echoing_it(tmp_path: Path) -> None:
    project = lakeforge.init_project("leaky", tmp_path)
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(
            "llm_endpoints:\n  chat:\n    models:\n"
            f"      - {{name: a, provider: openai, model: m, api_key: {ENV_SECRET}}}\n"
        )
    with pytest.raises(LakeforgeError) as refused:
        lakeforge.connect("dev", project_dir=project).close()
    assert "api_key" in str(refused.value)
    assert ENV_SECRET not in str(refused.value)
