"""What is deployed is what serves: on a production-mode target ``lakeforge serve`` takes its
endpoint specs from the current deployment's snapshot, never from the working copy."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import lakeforge
from lakeforge import Workspace
from lakeforge.bundle import DeployError, current_deployment, deploy, served_endpoints
from lakeforge.cli import main
from lakeforge.project import LLMEndpointSpec
from tests.bundle.test_deploy_code import commit
from tests.conftest import git_init


def endpoint(model: str) -> dict[str, Any]:
    route = {"name": "a", "provider": "openai", "model": model, "base_url": "http://127.0.0.1:9/v1"}
    return {"models": [route]}


def write(folder: Path, endpoints: dict[str, Any]) -> None:
    config = {"name": "servedproj", "targets": {"dev": {}, "prod": {}}, "llm_endpoints": endpoints}
    (folder / "lakeforge.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAKEFORGE_USER", "alice")
    folder = tmp_path / "servedproj"
    folder.mkdir()
    write(folder, {"chat": endpoint("deployed-model")})
    (folder / ".gitignore").write_text(".lakeforge/\n")
    git_init(folder)
    return folder


@pytest.fixture
def prod(project: Path) -> Iterator[Workspace]:
    with lakeforge.connect("prod", project_dir=project) as ws:
        yield ws


def model_of(spec: object) -> str:
    assert isinstance(spec, LLMEndpointSpec)
    return spec.models[0].model


def test_a_production_target_serves_only_its_deployment(project: Path, prod: Workspace) -> None:
    with pytest.raises(DeployError, match="production mode and has no deployment"):
        served_endpoints(prod)

    deploy(prod)
    # the working copy moves on, committed but not deployed
    write(project, {"chat": endpoint("edited-model"), "extra": endpoint("x")})
    commit(project)

    served = served_endpoints(prod)
    assert list(served.endpoints) == ["chat"] and model_of(served.endpoints["chat"]) == (
        "deployed-model"
    )
    assert served.deployment is not None and "deployment 1" in served.source
    with lakeforge.connect("dev", project_dir=project) as dev:  # dev serves its working copy
        working = served_endpoints(dev)
    assert sorted(working.endpoints) == ["chat", "extra"] and working.deployment is None
    assert model_of(working.endpoints["chat"]) == "edited-model"

    with lakeforge.connect("prod", project_dir=project) as fresh:
        deploy(fresh)
        assert model_of(served_endpoints(fresh).endpoints["chat"]) == "edited-model"


def test_a_changed_snapshot_is_refused(prod: Workspace) -> None:
    deploy(prod)
    deployment = current_deployment(prod)
    assert deployment is not None
    resources = deployment.path / "lakeforge.yaml"
    os.chmod(resources, stat.S_IRUSR | stat.S_IWUSR)
    resources.write_text(resources.read_text().replace("deployed-model", "planted-model"))
    with pytest.raises(DeployError, match="changed since it was deployed"):
        served_endpoints(prod)


def test_serve_on_a_production_target_without_a_deployment_says_how_to_fix_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), "serve", "-t", "prod", "--port", "1"])
    text = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert "no deployment" in text and "lakeforge deploy -t prod" in text
