from __future__ import annotations

from pathlib import Path

import pytest

import lakeforge
from lakeforge.errors import ConfigError, UnknownTargetError
from lakeforge.project import Project, parse_config


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lakeforge.yaml").write_text(text)
    return folder


def test_init_writes_a_loadable_project_with_three_targets(project_dir: Path) -> None:
    project = Project.load(project_dir)
    assert project.name == "testproj"
    assert project.target_names == ["dev", "staging", "prod"]
    dev = project.target()
    assert dev.name == "dev" and dev.catalog == "dev"
    assert dev.root == str(project_dir / ".lakeforge" / "dev")
    assert dev.read_from == ("prod",)
    assert dev.state_store_url == f"sqlite:///{project_dir}/.lakeforge/dev/state.db"
    assert (
        dev.mlflow_tracking_uri.startswith("sqlite:///")
        and "/dev/mlflow.db" in dev.mlflow_tracking_uri
    )


def test_init_refuses_to_overwrite(project_dir: Path) -> None:
    with pytest.raises(ConfigError, match="already exists"):
        lakeforge.init_project("testproj", project_dir.parent)


def test_target_from_argument_then_env_then_default(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project.load(project_dir)
    assert project.target().name == "dev"
    monkeypatch.setenv("LAKEFORGE_TARGET", "staging")
    assert project.target().name == "staging"
    assert project.target("prod").name == "prod"


def test_unknown_target_names_the_allowed_ones(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        UnknownTargetError, match=r"unknown target 'qa'.*allowed: dev, staging, prod"
    ):
        Project.load(project_dir).target("qa")
    monkeypatch.setenv("LAKEFORGE_TARGET", "nope")
    with pytest.raises(UnknownTargetError, match="LAKEFORGE_TARGET"):
        Project.load(project_dir).target()


def test_project_dir_is_found_from_a_subfolder(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = project_dir / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert Project.load().directory == project_dir


def test_missing_project_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lakeforge init"):
        Project.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\n  bad: [", r"not valid YAML at line 2"),
        ("- a\n- b\n", r"expected a mapping"),
        ("name: Bad-Name\n", r"field name: project name 'Bad-Name' is not valid.*got 'Bad-Name'"),
        (
            "name: p\ndefault_target: qa\n",
            r"default_target: 'qa' is not a declared target \(allowed: dev, staging, prod\)",
        ),
        (
            "name: p\ntargets:\n  dev:\n    read_from: [qa]\n",
            r"read_from: names unknown target 'qa' \(allowed: dev\)",
        ),
        ("name: p\ntargets:\n  dev:\n    rooot: /x\n", r"field targets.dev.rooot: unknown field"),
        (
            "name: p\ntargets:\n  dev:\n    read_from: prod\n",
            r"field targets.dev.read_from: .*list.*got 'prod'",
        ),
        ("name: p\ntargets: {}\n", r"at least one target"),
    ],
)
def test_malformed_project_file_names_file_field_and_value(
    tmp_path: Path, text: str, expected: str
) -> None:
    folder = write(tmp_path / "p", text)
    with pytest.raises(ConfigError, match=expected) as info:
        Project.load(folder)
    assert str(folder / "lakeforge.yaml") in str(info.value)


def test_custom_targets_roots_and_env_interpolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_HOST", "db.internal")
    folder = write(
        tmp_path / "p",
        """
name: p
default_target: qa
targets:
  qa:
    root: data/qa
    catalog: quality
    state_store: postgresql+psycopg://u@${PG_HOST}/lf
    mlflow_tracking_uri: ${MLFLOW_URI:-http://127.0.0.1:5000}
  prod:
    root: s3://bucket/prod/
    storage_options: {AWS_REGION: eu-west-1}
""",
    )
    project = Project.load(folder)
    qa = project.target()
    assert qa.catalog == "quality" and qa.root == str(folder / "data" / "qa")
    assert qa.state_store_url == "postgresql+psycopg://u@db.internal/lf"
    assert qa.mlflow_tracking_uri == "http://127.0.0.1:5000"
    prod = project.target("prod")
    assert prod.root == "s3://bucket/prod" and not prod.is_local
    assert prod.state_store_url.endswith("/.lakeforge/prod/state.db")
    assert project.target_for_catalog("quality") == qa


def test_unset_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NOPE_NOT_SET is not set"):
        parse_config(
            tmp_path / "lakeforge.yaml", "name: p\ntargets:\n  dev:\n    root: ${NOPE_NOT_SET}\n"
        )


def test_two_targets_cannot_share_a_catalog(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both use catalog 'dev'"):
        parse_config(tmp_path / "f.yaml", "name: p\ntargets:\n  dev: {}\n  qa: {catalog: dev}\n")


def test_a_policy_naming_an_unknown_check_lists_the_allowed_ones(tmp_path: Path) -> None:
    text = "name: p\ntargets:\n  prod:\n    deployment:\n      validation:\n        checks: {max_rows: 5}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path / "lakeforge.yaml", text)
    message = str(info.value)
    assert "field targets.prod.deployment.validation.checks.max_rows: unknown field" in message
    assert "allowed: required_tags, description, signature, lineage, metrics" in message


def test_approvers_must_name_declared_groups(tmp_path: Path) -> None:
    text = "name: p\ndefault_target: prod\ntargets:\n  prod:\n    deployment: {approvers: [group:leads]}\n"
    with pytest.raises(ConfigError, match="unknown group 'leads'"):
        parse_config(tmp_path / "lakeforge.yaml", text)


def test_conventional_links_apply_per_target_when_left_out(tmp_path: Path) -> None:
    """`targets: {dev: {}, staging: {}, prod: {}}` keeps dev -> staging -> prod; a stated field wins."""
    project = Project.load(
        write(
            tmp_path / "p",
            "name: p\ntargets:\n  dev: {}\n  staging: {}\n  prod: {promote_from: []}\n",
        )
    )
    assert project.target("dev").read_from == ("prod",)
    assert project.target("staging").promote_from == ("dev",)
    assert project.target("prod").promote_from == ()
    alone = Project.load(write(tmp_path / "q", "name: q\ntargets:\n  dev: {}\n  staging: {}\n"))
    assert alone.target("dev").read_from == ()  # no prod to read from
    assert alone.target("staging").promote_from == ("dev",)
