"""Every name pattern matches the whole name: a trailing newline is not a valid character."""

from __future__ import annotations

import hashlib

import pydantic
import pytest

from lakeforge import Workspace
from lakeforge.errors import ConfigError, LakeforgeError
from lakeforge.features.online._codec import OnlineStoreError, check_name
from lakeforge.project._config import check_name as check_project_name
from lakeforge.project._endpoints import AuthSpec, EntitySpec
from lakeforge.project._jobs import TaskSpec
from lakeforge.project._webhooks import WebhookConfig
from lakeforge.serving._server import endpoint_for_model

DIGEST = hashlib.sha256(b"token").hexdigest()


@pytest.mark.parametrize("what", ["job name", "endpoint name", "target name", "catalog"])
def test_project_names(what: str) -> None:
    assert check_project_name("nightly", what) == "nightly"
    with pytest.raises(ValueError, match="is not valid"):
        check_project_name("nightly\n", what)


def test_task_keys_and_callables() -> None:
    assert TaskSpec(key="train", python="pkg.mod:train").key == "train"
    with pytest.raises(pydantic.ValidationError, match="task key"):
        TaskSpec(key="train\n", python="pkg.mod:train")
    with pytest.raises(pydantic.ValidationError, match="module:function"):
        TaskSpec(key="train", python="pkg.mod:train\n")


def test_webhook_names() -> None:
    assert WebhookConfig(name="ops", url="http://127.0.0.1:1/").name == "ops"
    with pytest.raises(pydantic.ValidationError, match="webhook name"):
        WebhookConfig(name="ops\n", url="http://127.0.0.1:1/")


def test_online_store_names() -> None:
    assert check_name("table", "dev.fs.users") == "dev.fs.users"
    with pytest.raises(OnlineStoreError, match="invalid online table name"):
        check_name("table", "dev.fs.users\n")


def test_served_entity_names_and_token_digests() -> None:
    assert EntitySpec(model="dev.ml.m", alias="champion", name="m-1").name == "m-1"
    with pytest.raises(pydantic.ValidationError, match="served entity name"):
        EntitySpec(model="dev.ml.m", alias="champion", name="m-1\n")
    assert AuthSpec(token_sha256=[DIGEST]).token_sha256 == [DIGEST]
    with pytest.raises(pydantic.ValidationError):
        AuthSpec(token_sha256=[DIGEST + "\n"])


def test_model_references_for_serve() -> None:
    assert endpoint_for_model("dev.ml.m@champion")[0] == "m"
    with pytest.raises(ConfigError, match="is not NAME@ALIAS"):
        endpoint_for_model("dev.ml.m@champion\n")


def test_model_aliases(ws: Workspace) -> None:
    with pytest.raises(LakeforgeError, match="alias 'best\\\\n' is not valid"):
        ws.models.set_alias("dev.ml.m", "best\n", 1)
