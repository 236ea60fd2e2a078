"""Past runs of a project's experiments on one target: list, look up by id prefix, compare."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakeforge.errors import LakeforgeError
from lakeforge.tracking._lineage import TAG_COMMIT, TAG_DATA, TAG_PIPELINE
from lakeforge.tracking._mlflow import client_for

if TYPE_CHECKING:
    from mlflow.entities import Run

    from lakeforge.project import Project, Target

_RUN_ID = re.compile(r"[0-9a-f]{1,32}")
_MAX_SEARCH = 50_000  # the most runs one MLflow search returns


class RunNotFoundError(LakeforgeError):
    """A run id (or prefix) that names no run, or more than one, of the project's experiments."""


@dataclass(frozen=True)
class RunSummary:
    """One run as ``lakeforge runs`` shows it."""

    run_id: str
    pipeline: str
    name: str
    status: str
    start_ms: int
    commit: str
    data_versions: str
    params: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        tags = run.data.tags
        return cls(
            run_id=run.info.run_id,
            pipeline=tags.get(TAG_PIPELINE, ""),
            name=run.info.run_name or "",
            status=run.info.status,
            start_ms=int(run.info.start_time or 0),
            commit=tags.get(TAG_COMMIT, ""),
            data_versions=tags.get(TAG_DATA, ""),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
        )


def list_runs(
    project: Project, target: Target, *, pipeline: str | None = None, limit: int = 50
) -> list[RunSummary]:
    """The newest ``limit`` runs of the project's experiments (``<project>/<pipeline>``)."""
    client = client_for(target)
    prefix = f"{project.name}/"
    ids = [
        exp.experiment_id
        for exp in client.search_experiments(filter_string=f"name LIKE '{prefix}%'")
        if pipeline is None or exp.name == prefix + pipeline
    ]
    if not ids:
        return []
    runs = client.search_runs(ids, max_results=limit, order_by=["attributes.start_time DESC"])
    return [RunSummary.of(run) for run in runs]


def get_run(project: Project, target: Target, run_id: str) -> RunSummary:
    """The run whose id is ``run_id`` or starts with it (as ``runs list`` shows 12 characters)."""
    wanted = run_id.strip().lower()
    if not _RUN_ID.fullmatch(wanted):
        raise RunNotFoundError(
            f"run id {run_id!r} is not valid: use the hexadecimal id `lakeforge runs list` "
            "shows (a prefix of it is enough)"
        )
    runs = list_runs(project, target, limit=_MAX_SEARCH)
    matches = [run for run in runs if run.run_id.startswith(wanted)]
    where = f"of project {project.name!r} on target {target.name}"
    if not matches:
        raise RunNotFoundError(
            f"no run {where} has an id starting with {run_id!r}; see `lakeforge runs list`"
        )
    if len(matches) > 1:
        raise RunNotFoundError(
            f"{len(matches)} runs {where} have ids starting with {run_id!r}; give more characters"
        )
    return matches[0]
