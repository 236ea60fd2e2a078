"""Where a job run's spec and code come from: the target's deployed snapshot, or (a job
not deployed to a development-mode target) the working copy.

A production-mode target runs only deployed jobs. A run records the deployment it runs,
so a queued run, a retry or a repair runs the same code even after a new deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from lakeforge.bundle import Deployment, current_deployment, get_deployment
from lakeforge.errors import LakeforgeError
from lakeforge.jobs._errors import JobError
from lakeforge.project import PROJECT_DIR_ENV, JobSpec
from lakeforge.state import deployed_resources
from lakeforge.tracking import DEPLOYED_COMMIT_ENV, DEPLOYED_DIRTY_ENV, DEPLOYMENT_ENV, git_info

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace


@dataclass(frozen=True)
class JobSource:
    """The spec a run follows and the code folder its tasks run in."""

    job: str
    spec: JobSpec
    code_dir: Path
    commit: str | None
    dirty: bool | None
    deployment: Deployment | None  # None: the working copy

    def env(self, project_dir: Path) -> dict[str, str]:
        """Environment of the run's task processes: ``lakeforge.connect()`` opens the
        project (not the snapshot), and lineage names the deployed commit."""
        env = {PROJECT_DIR_ENV: str(project_dir)}
        if self.deployment is not None:
            env[DEPLOYMENT_ENV] = str(self.deployment.id)
            env[DEPLOYED_DIRTY_ENV] = str(self.deployment.dirty).lower()
            if self.deployment.commit:
                env[DEPLOYED_COMMIT_ENV] = self.deployment.commit
        return env


class Sources:
    """Resolves jobs to their sources on one target; deployed specs are read once each."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._specs: dict[int, dict[str, JobSpec]] = {}

    def for_new_run(self, job: str) -> JobSource:
        """What a run started now runs: the current deployment if ``job`` is deployed."""
        target = self.ws.target
        if self._is_deployed(job):
            deployment = current_deployment(self.ws)
            if deployment is not None:
                return self._deployed(job, deployment)
            if not target.development:
                raise JobError(
                    f"job {job!r} was deployed to target {target.name} before deploys "
                    "recorded code snapshots",
                    hint=f"deploy again: `lakeforge deploy -t {target.name}`",
                )
        elif not target.development:
            raise JobError(
                f"job {job!r} is not deployed to target {target.name} (production mode "
                "runs deployed code only)",
                hint=f"deploy it first: `lakeforge deploy -t {target.name}`",
            )
        return self.working_copy(job)

    def for_run(self, job: str, deployment_id: int | None) -> JobSource:
        """What a recorded run runs: its deployment, or the working copy (None)."""
        if deployment_id is None:
            return self.working_copy(job)
        try:
            deployment = get_deployment(self.ws, deployment_id)
        except LakeforgeError as exc:
            raise JobError(exc.message) from None
        return self._deployed(job, deployment)

    def working_copy(self, job: str) -> JobSource:
        jobs = self.ws.project.config.all_jobs()
        if job not in jobs:
            raise JobError(f"unknown job {job!r} (jobs: {', '.join(jobs) or 'none declared'})")
        folder = self.ws.project.directory
        info = git_info(folder)
        return JobSource(job, jobs[job], folder, info.commit, info.dirty, None)

    def _deployed(self, job: str, deployment: Deployment) -> JobSource:
        if deployment.id not in self._specs:
            try:
                self._specs[deployment.id] = deployment.jobs()
            except OSError as exc:
                raise JobError(
                    f"deployment {deployment.id} ({deployment.label}): cannot read its "
                    f"snapshot {deployment.path}: {exc}",
                    hint=f"deploy again: `lakeforge deploy -t {self.ws.target.name}`",
                ) from None
        specs = self._specs[deployment.id]
        if job not in specs:
            raise JobError(
                f"job {job!r} is not in deployment {deployment.id} ({deployment.label}) of "
                f"target {self.ws.target.name} (jobs: {', '.join(specs) or 'none'})",
                hint=f"deploy again: `lakeforge deploy -t {self.ws.target.name}`",
            )
        return JobSource(
            job, specs[job], deployment.code_dir, deployment.commit, deployment.dirty, deployment
        )

    def _is_deployed(self, job: str) -> bool:
        with self.ws.state.connect_engine().connect() as conn:
            return (
                conn.execute(
                    select(deployed_resources.c.name).where(
                        deployed_resources.c.kind == "job", deployed_resources.c.name == job
                    )
                ).first()
                is not None
            )
