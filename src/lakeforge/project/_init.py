"""``lakeforge init``: write a new project folder and start its git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from lakeforge._identity import current_user
from lakeforge.errors import ConfigError
from lakeforge.project._config import PROJECT_FILE, check_name

_TEMPLATE = """\
# Lakeforge project file. Docs: README.md, "The project file".
name: __NAME__
default_target: dev

groups:
  ml-leads: [__USER__]            # who may approve in prod: add your reviewers

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
      approval: manual            # `lakeforge -t prod approvals approve ID` moves champion
      approvers: [group:ml-leads] # required with approval: manual
      separation_of_duties: true  # nobody approves their own request
      rollback: manual            # a rollback is a request too (auto: approved at once)
      validation:
        mode: enabled
        checks: {signature: true, lineage: true, description: true}
        # champion: {sql: "SELECT ... FROM prod.gold.holdout", label: y,
        #            model_type: classifier, metrics: {roc_auc: {max_regression: 0.01}}}

# webhooks:
#   - {name: chat, url: "https://hooks.example.com/lakeforge", secret: "${WEBHOOK_SECRET}",
#      events: ["approval.*", "alias.moved"]}
    # Teams point prod at shared services, e.g.:
    # state_store: postgresql+psycopg://user@db-host:5432/lakeforge
    # mlflow_tracking_uri: http://mlflow.internal:5000
"""

_GITIGNORE = ".lakeforge/\n"


def init_project(name: str, parent: Path | None = None, *, git: bool = True) -> Path:
    """Create folder ``name`` under ``parent`` with a ``lakeforge.yaml``; return its path.

    With ``git`` the folder also becomes a git repository with a first commit (see
    :func:`start_git`), so model lineage has a code commit from the first run.
    """
    try:
        check_name(name, "project name")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    folder = (parent or Path.cwd()) / name
    if (folder / PROJECT_FILE).exists():
        raise ConfigError(f"{folder / PROJECT_FILE} already exists; not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    text = _TEMPLATE.replace("__NAME__", name).replace("__USER__", json.dumps(current_user()))
    (folder / PROJECT_FILE).write_text(text)
    (folder / ".gitignore").write_text(_GITIGNORE)
    if git:
        start_git(folder)
    return folder


def start_git(folder: Path) -> str:
    """Make ``folder`` a git repository with a first commit, unless git is missing or the
    folder is already inside a repository; what was done, as a sentence."""
    if shutil.which("git") is None:
        return (
            "git is not installed: model lineage records no code commit until the project "
            "is committed to a git repository"
        )

    def git(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, env=env, check=False
        )

    inside = git("rev-parse", "--show-toplevel")
    if inside.returncode == 0:
        return (
            f"the project is inside the git repository {inside.stdout.strip()}: "
            "commit it there (git add -A && git commit) so lineage has a code commit"
        )
    env = dict(os.environ)
    if not git("config", "user.email").stdout.strip():  # no identity configured: use one
        user = current_user()
        env |= {"GIT_AUTHOR_NAME": user, "GIT_COMMITTER_NAME": user}
        env |= {"GIT_AUTHOR_EMAIL": f"{user}@localhost", "GIT_COMMITTER_EMAIL": f"{user}@localhost"}
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "lakeforge init")):
        done = git(*args, env=env)
        if done.returncode != 0:
            return (
                f"`git {' '.join(args)}` failed ({done.stderr.strip()}): run `git init && "
                "git add -A && git commit -m init` in the project so lineage has a code commit"
            )
    return "started a git repository with a first commit (model lineage records the commit)"
