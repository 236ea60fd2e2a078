"""Prompts in each target's MLflow prompt registry: versions, aliases, diffs, copies, sources."""

from __future__ import annotations

from pathlib import Path

import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.errors import LakeforgeError, PermissionDeniedError
from lakeforge.llm import PromptNotFoundError, Prompts

V1 = "You are a support agent.\nAnswer briefly.\n"
V2 = "You are a support agent for {{product}}.\nAnswer briefly.\nCite the docs.\n"


@pytest.fixture
def prompt(ml_ws: Workspace, request: pytest.FixtureRequest) -> str:
    """A prompt with two versions, named after the test."""
    name = f"dev.prompts.{request.node.name[5:40]}"
    ml_ws.prompts.register(name, V1, commit_message="first", tags={"team": "support"})
    ml_ws.prompts.register(name, V2, commit_message="name the product")
    return name


def test_versions_aliases_and_every_reference_form(ml_ws: Workspace, prompt: str) -> None:
    prompts = ml_ws.prompts
    assert [(v.version, v.template) for v in prompts.versions(prompt)] == [(2, V2), (1, V1)]
    first = prompts.load(f"{prompt}/1")
    assert (first.commit_message, first.tags) == ("first", {"team": "support"})
    assert prompts.load(prompt).version == 2  # a bare name: the newest version
    assert prompts.load(f"{prompt}@latest").version == 2
    prompts.set_alias(prompt, "production", 1)
    moved = prompts.set_alias(prompt, "production", 2)
    assert moved.version == 2 and moved.aliases == ["production"]
    prompts.set_alias(prompt, "production", 2)  # already there: no move, no event
    short = prompt.removeprefix("dev.")
    for ref in (f"{prompt}@production", f"prompts:/{prompt}@production", f"{short}/2"):
        assert (prompts.load(ref).name, prompts.load(ref).version) == (prompt, 2)
    assert prompts.load(f"prompts:/{prompt}/1").template == V1
    assert prompts.aliases(short) == {"production": 2}
    listed = {info.name: info for info in prompts.list()}
    assert (listed[prompt].latest, listed[prompt].aliases) == (2, {"production": 2})
    events = ml_ws.events.list(type="alias.moved", subject=prompt)
    assert [
        (e.payload["kind"], e.payload["from_version"], e.payload["to_version"]) for e in events
    ] == [("prompt", None, 1), ("prompt", 1, 2)]


def test_diff_is_a_unified_diff_of_the_templates(ml_ws: Workspace, prompt: str) -> None:
    ml_ws.prompts.set_alias(prompt, "production", 1)
    diff = ml_ws.prompts.diff(f"{prompt}@production", f"{prompt}/2")
    assert diff.splitlines()[:2] == [f"--- {prompt}/1", f"+++ {prompt}/2"]
    assert "-You are a support agent.\n" in diff
    assert "+You are a support agent for {{product}}.\n" in diff
    assert "+Cite the docs.\n" in diff and " Answer briefly.\n" in diff
    assert ml_ws.prompts.diff(f"{prompt}/2", prompt) == ""


def test_diff_of_one_line_templates_keeps_each_change_on_its_line(ml_ws: Workspace) -> None:
    name = "dev.prompts.one_line"
    ml_ws.prompts.register(name, "Be brief.")  # no final newline, as most templates
    ml_ws.prompts.register(name, "Be brief and polite.")
    diff = ml_ws.prompts.diff(f"{name}/1", f"{name}/2")
    assert diff.splitlines()[2:] == ["@@ -1 +1 @@", "-Be brief.", "+Be brief and polite."]


def test_bad_names_and_references_say_what_is_allowed(ml_ws: Workspace, prompt: str) -> None:
    prompts = ml_ws.prompts
    with pytest.raises(LakeforgeError, match=r"prompt name 'support' is not valid: use catalog"):
        prompts.register("support", V1)
    with pytest.raises(LakeforgeError, match=r"'dev.prompts.bad name' is not valid.*letters"):
        prompts.register("dev.prompts.bad name", V1)
    with pytest.raises(LakeforgeError, match=r"in catalog 'staging' \(target 'staging'\)") as info:
        prompts.load("staging.prompts.support@production")
    assert "use -t staging" in str(info.value)
    for ref in (f"{prompt}@@x", f"{prompt}/two", f"{prompt}/1@x", ""):
        with pytest.raises(LakeforgeError, match=r"is not NAME, NAME/VERSION or NAME@ALIAS"):
            prompts.load(ref)
    with pytest.raises(PromptNotFoundError, match="has no version 7 \\(versions: 1, 2\\)"):
        prompts.load(f"{prompt}/7")
    with pytest.raises(PromptNotFoundError, match=r"has no alias 'production' \(aliases: none\)"):
        prompts.load(f"{prompt}@production")
    with pytest.raises(PromptNotFoundError, match="is not registered in target 'dev'") as info:
        prompts.load(f"{prompt[:-1]}/1")
    assert f"did you mean {prompt}" in str(info.value)
    with pytest.raises(LakeforgeError, match=r"alias 'Prod' is not valid: lowercase"):
        prompts.set_alias(prompt, "Prod", 1)
    with pytest.raises(LakeforgeError, match=r"'latest' is reserved"):
        prompts.set_alias(prompt, "latest", 1)
    with pytest.raises(LakeforgeError, match="template must be non-empty text"):
        prompts.register(prompt, "  ")
    ml_ws.models.client.create_registered_model("dev.ml.taken_by_a_model")
    with pytest.raises(LakeforgeError, match="cannot register prompt dev.ml.taken_by_a_model"):
        prompts.register("dev.ml.taken_by_a_model", V1)


def test_copy_to_staging_records_the_source(
    ml_ws: Workspace, ml_project: Path, prompt: str
) -> None:
    ml_ws.prompts.set_alias(prompt, "production", 1)
    copied = ml_ws.prompts.copy(f"{prompt}@production", to="staging")
    staged = prompt.replace("dev.", "staging.", 1)
    assert (copied.name, copied.version, copied.template) == (staged, 1, V1)
    assert copied.tags["lakeforge.copied_from"] == f"{prompt}/1"
    assert copied.tags["lakeforge.copied_from_target"] == "dev"
    assert copied.tags["team"] == "support" and copied.commit_message == "first"
    with lakeforge.connect("staging", project_dir=ml_project) as staging:
        assert staging.prompts.load(staged).template == V1
        again = ml_ws.prompts.copy(f"{prompt}/2", to="staging")
        assert [v.version for v in staging.prompts.versions(staged)] == [again.version, 1]
    with pytest.raises(PermissionDeniedError, match="'prod' does not accept prompt copies"):
        ml_ws.prompts.copy(f"{prompt}/1", to="prod")
    with pytest.raises(LakeforgeError, match="unknown target 'qa'"):
        ml_ws.prompts.copy(f"{prompt}/1", to="qa")


def test_source_caches_and_follows_alias_moves(
    ml_ws: Workspace, prompt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ml_ws.prompts.set_alias(prompt, "production", 1)
    ref = f"{prompt}@production"
    mine = ml_ws.prompts.source(ttl_s=3600)
    assert mine(ref) == (V1, f"{prompt}/1")
    # another process (a second registry client) moves the alias: cached until invalidated
    elsewhere = Prompts(ml_ws.project, ml_ws.target, ml_ws.state)
    elsewhere.set_alias(prompt, "production", 2)
    assert mine(ref) == (V1, f"{prompt}/1")
    assert ml_ws.prompts.source(ttl_s=0)(ref) == (V2, f"{prompt}/2")
    mine.invalidate(prompt)
    assert mine(ref) == (V2, f"{prompt}/2")
    # a move through the same registry reaches its sources at once
    ml_ws.prompts.set_alias(prompt, "production", 1)
    assert mine(ref) == (V1, f"{prompt}/1")
    # an unreadable registry: the version last read is served; a version is never re-read
    fresh = ml_ws.prompts.source(ttl_s=0)
    assert fresh(ref) == (V1, f"{prompt}/1") and fresh(f"{prompt}/2") == (V2, f"{prompt}/2")

    def down(_ref: str) -> None:
        raise ConnectionError("registry down")

    monkeypatch.setattr(ml_ws.prompts, "load", down)
    assert fresh(ref) == (V1, f"{prompt}/1") and fresh(f"{prompt}/2") == (V2, f"{prompt}/2")
    with pytest.raises(ConnectionError):
        fresh(f"{prompt}/1")  # never read before: nothing to fall back on
    monkeypatch.undo()
    with pytest.raises(PromptNotFoundError, match="has no alias 'staging'"):
        fresh(f"{prompt}@staging")


def test_a_chat_prompt_is_copied_and_shown_but_not_served_as_a_system_message(
    ml_ws: Workspace,
) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{q}}"}]
    config = {"model_name": "gpt-4o-mini", "temperature": 0.2}
    ml_ws.prompts.client.register_prompt("dev.prompts.chat_style", chat, model_config=config)
    copied = ml_ws.prompts.copy("dev.prompts.chat_style/1", to="staging")  # kept as chat
    assert (copied.template, copied.model_config) == (chat, config)
    ml_ws.prompts.register("dev.prompts.chat_style", "Be brief.")
    diff = ml_ws.prompts.diff("dev.prompts.chat_style/1", "dev.prompts.chat_style/2")
    assert '-    "role": "system",\n' in diff and "+Be brief." in diff
    with pytest.raises(LakeforgeError, match=r"chat_style/1 is a chat prompt.*text prompt"):
        ml_ws.prompts.source()("dev.prompts.chat_style/1")
