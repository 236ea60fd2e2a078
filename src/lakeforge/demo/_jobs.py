"""Step 6: the project's jobs, deployed from a commit, run and triggered."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace


def commit_project(folder: Path) -> None:
    """Make the demo project a git checkout, as real projects are, so lineage has a commit."""
    identity = {"GIT_AUTHOR_NAME": "Lakeforge demo", "GIT_AUTHOR_EMAIL": "demo@lakeforge.invalid"}
    env = {
        **os.environ,
        **identity,
        "GIT_COMMITTER_NAME": identity["GIT_AUTHOR_NAME"],
        "GIT_COMMITTER_EMAIL": identity["GIT_AUTHOR_EMAIL"],
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Lakeforge demo project"]):
        try:
            subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return  # no git: lineage records no commit


DEMO_PIPELINES = '''"""Tasks of the demo's jobs: plain functions, run by the jobs engine."""

import lakeforge
from lakeforge.demo import GOLD_SQL


def carrier_delays() -> dict:
    """Rebuild the gold table of delays by carrier; its Delta version is the task value."""
    ws = lakeforge.connect()
    result = ws.sql(GOLD_SQL, read_only=False)
    return {"version": result.column("version")[0].as_py()}


def check_gold(min_carriers: int, version: int) -> dict:
    ws = lakeforge.connect()
    carriers = ws.sql(f"SELECT count(*) AS n FROM dev.gold.carrier_delays@v{version}")
    n = carriers.column("n")[0].as_py()
    if n < min_carriers:
        raise ValueError(f"only {n} carriers in gold, expected {min_carriers}")
    return {"carriers": n}
'''


DEMO_JOBS = """
jobs:
  refresh_gold:
    description: Rebuild and check the gold table when airline names change
    triggers:
      - {type: table_update, tables: [dev.silver.airlines]}
    tasks:
      - {key: build, python: pipelines:carrier_delays}
      - key: check
        python: pipelines:check_gold
        depends_on: [build]
        parameters: {min_carriers: 10, version: "{{tasks.build.version}}"}
        retries: 1
        retry_backoff_s: 0.5
"""


def run_jobs(ws: Workspace, console: Console) -> None:
    """Deploy the project's jobs, run one, and let a table update trigger it again."""
    from lakeforge.bundle import deploy, render
    from lakeforge.jobs import JobRunner, Scheduler

    console.print(Rule("6. Jobs: deploy, run, and a table-update trigger"))
    for line in render(deploy(ws)):
        console.print(f"  {line}", markup=False, highlight=False)

    def progress(task: str, status: str, detail: str) -> None:
        if status != "running":
            console.print(f"  {task}: {status} {detail}".rstrip())

    run = JobRunner(ws).run("refresh_gold", progress=progress)
    assert run is not None
    console.print(f"  run {run.id}: {run.status}; task values {run.tasks['check'].values}")
    scheduler = Scheduler(ws, background=False)
    scheduler.tick()  # first look: remember the table versions
    ws.tables.merge("dev.silver.airlines", pa.table({"carrier": ["AA"], "name": ["American"]}))
    for firing in scheduler.tick():
        fired = JobRunner(ws).get(firing.run_id or 0)
        console.print(f"  trigger {firing.trigger} fired run {fired.id}: {fired.status}")
    scheduler.release()  # the lease goes now, not when it expires: step 10 ticks again
