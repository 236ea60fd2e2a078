from __future__ import annotations

import subprocess
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


def test_a_manual_policy_without_approvers_is_refused_at_load(tmp_path: Path) -> None:
    """Fail closed: nobody named means nobody could approve; the field is named."""
    text = "name: p\ndefault_target: prod\ntargets:\n  prod:\n    deployment: {approval: manual}\n"
    with pytest.raises(
        ConfigError, match=r"targets\.prod\.deployment\.approvers: approval is manual"
    ):
        parse_config(tmp_path / "lakeforge.yaml", text)
    empty_group = (
        "name: p\ndefault_target: prod\ngroups: {leads: []}\ntargets:\n  prod:\n"
        "    deployment: {approval: manual, approvers: [group:leads]}\n"
    )
    with pytest.raises(ConfigError, match="no approver is named"):
        parse_config(tmp_path / "lakeforge.yaml", empty_group)
    rule = (
        "name: p\ndefault_target: prod\ntargets:\n  prod:\n    deployment:\n      models:\n"
        "        'prod.ml.risky_*': {approval: manual}\n"
    )
    with pytest.raises(
        ConfigError, match=r"targets\.prod\.deployment\.models\['prod\.ml\.risky_\*'\]\.approvers"
    ):
        parse_config(tmp_path / "lakeforge.yaml", rule)


POLICIES = """
name: p
default_target: prod
targets:
  prod:
    deployment:
      approval: manual
      approvers: [alice]
      validation:
        checks: {signature: true, metrics: {test_accuracy: {min: 0.9}}}
        champion: {table: prod.gold.late, label: late, model_type: classifier}
      models:
        "prod.ml.delay_*":
          rollback: auto
          validation:
            champion: {table: prod.gold.delays, label: arr_delay, model_type: regressor}
"""


def test_policies_per_model_fall_back_to_the_target_default(tmp_path: Path) -> None:
    policy = parse_config(tmp_path / "lakeforge.yaml", POLICIES).targets["prod"].deployment
    regressor = policy.for_model("prod.ml.delay_minutes")
    assert regressor.source == "prod.ml.delay_*"
    assert regressor.validation.champion is not None
    assert regressor.validation.champion.model_type == "regressor"
    assert regressor.validation.checks.signature  # left out: the default's checks
    assert regressor.gated and regressor.approvers == ["alice"]
    assert regressor.rollback_approval == "auto"
    classifier = policy.for_model("prod.ml.late")
    assert classifier.source == "default" and classifier.rollback_approval == "manual"
    assert classifier.validation.champion is not None
    assert classifier.validation.champion.table == "prod.gold.late"
    assert classifier.describe("prod").startswith("targets.prod.deployment (the target default")


def test_policy_errors_name_the_model_field_and_allowed_values(tmp_path: Path) -> None:
    bare_bound = POLICIES.replace("{test_accuracy: {min: 0.9}}", "{test_accuracy: 0.9}")
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path / "lakeforge.yaml", bare_bound)
    assert "checks.metrics.test_accuracy: a bound is a mapping with the key(s) min and/or max" in (
        str(info.value)
    )
    bad_type = POLICIES.replace("model_type: regressor", "model_type: regression")
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path / "lakeforge.yaml", bad_type)
    message = str(info.value)
    assert "models.prod.ml.delay_*.validation.champion.model_type" in message
    assert "'classifier' or 'regressor'" in message
    with pytest.raises(ConfigError, match="must match a full model name catalog.schema.model"):
        parse_config(tmp_path / "lakeforge.yaml", POLICIES.replace('"prod.ml.delay_*"', "delay_*"))


def test_init_starts_a_git_repository_with_a_first_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lakeforge.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["init", "fresh", "--dir", str(tmp_path)])
    assert exit_info.value.code == 0
    assert "started a git repository with a first commit" in capsys.readouterr().out
    log = subprocess.run(
        ["git", "log", "--format=%s", "--name-only"],
        cwd=tmp_path / "fresh",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "lakeforge init" in log and "lakeforge.yaml" in log
    # inside an existing repository: no nested repository, and it says so
    nested = lakeforge.init_project("inner", tmp_path / "fresh")
    assert not (nested / ".git").exists()
    from lakeforge.project._init import start_git

    assert "inside the git repository" in start_git(nested)
    # the prod gate of the template names an approver (the project loads)
    assert Project.load(tmp_path / "fresh").target("prod").deployment.gated
