"""``lakeforge init``: write a new project folder."""

from __future__ import annotations

from pathlib import Path

from lakeforge.errors import ConfigError
from lakeforge.project._config import PROJECT_FILE, check_name

_TEMPLATE = """\
# Lakeforge project file. Docs: README.md, "The project file".
name: __NAME__
default_target: dev

targets:
  dev:
    root: .lakeforge/dev          # a local path or an object-store URI (s3://bucket/prefix)
    read_from: [prod]             # dev may read prod tables, never write them
    deployment:
      approval: auto              # validation passes -> champion
      validation:
        mode: enabled
        checks: {signature: true, lineage: true}
  staging:
    root: .lakeforge/staging
    promote_from: [dev]           # model versions may be copied dev -> staging
    deployment:
      approval: auto
      validation:
        mode: enabled
        checks: {signature: true, lineage: true, description: true}
  prod:
    root: .lakeforge/prod
    promote_from: [staging]
    deployment:
      approval: manual            # `lakeforge approvals approve ID` moves champion
      separation_of_duties: true  # nobody approves their own request
      # approvers: [alice, group:ml-leads]
      validation:
        mode: enabled
        checks: {signature: true, lineage: true, description: true}
        # champion: {sql: "SELECT ... FROM prod.gold.holdout", label: y,
        #            model_type: classifier, metrics: {roc_auc: {max_regression: 0.01}}}

# groups: {ml-leads: [alice, bob]}
# webhooks:
#   - {name: chat, url: "https://hooks.example.com/lakeforge", secret: "${WEBHOOK_SECRET}",
#      events: ["approval.*", "alias.moved"]}
    # Teams point prod at shared services, e.g.:
    # state_store: postgresql+psycopg://user@db-host:5432/lakeforge
    # mlflow_tracking_uri: http://mlflow.internal:5000
"""

_GITIGNORE = ".lakeforge/\n"


def init_project(name: str, parent: Path | None = None) -> Path:
    """Create folder ``name`` under ``parent`` with a ``lakeforge.yaml``; return its path."""
    try:
        check_name(name, "project name")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    folder = (parent or Path.cwd()) / name
    if (folder / PROJECT_FILE).exists():
        raise ConfigError(f"{folder / PROJECT_FILE} already exists; not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROJECT_FILE).write_text(_TEMPLATE.replace("__NAME__", name))
    (folder / ".gitignore").write_text(_GITIGNORE)
    return folder
