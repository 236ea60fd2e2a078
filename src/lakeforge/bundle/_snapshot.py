"""Code snapshots: the project's code at its commit, written once under the target.

``lakeforge deploy`` copies the files git tracks (at HEAD; the working tree's content
when a dirty tree is allowed) into ``<target home>/deployments/<snapshot>/``:

- ``code/``: the files; deployed jobs run here (working directory, first on sys.path);
- ``lakeforge.yaml``: the resolved resources (jobs, tables, endpoints, monitors, vector
  indexes) the target runs;
- ``manifest.json``: commit, dirty flag and the content hash.

A snapshot is staged in a temporary folder and renamed into place, its files are
read-only, and its content hash (over ``code/`` and ``lakeforge.yaml``) is checked
before every run: what runs is exactly what was deployed. The ``deployments`` table of
the state store records each deploy; the newest row is the target's current code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import Connection, insert, select

from lakeforge._identity import current_user
from lakeforge.bundle._errors import DeployError
from lakeforge.project import EndpointSpec, JobSpec, LLMEndpointSpec, VectorIndexSpec
from lakeforge.state import as_utc, deployments

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

CODE = "code"
RESOURCES = "lakeforge.yaml"
MANIFEST = "manifest.json"
_SKIPPED_DIRS = {"__pycache__", "node_modules"}


@dataclass(frozen=True)
class Source:
    """What a deploy snapshots: files of the working tree, by their path in the project."""

    commit: str | None  # None: the project is not a git checkout (or has no commit yet)
    dirty: bool
    files: dict[str, Path]


@dataclass(frozen=True)
class Deployment:
    """One recorded deploy of a target: its snapshot and the commit it holds."""

    id: int
    snapshot: str
    commit: str | None
    dirty: bool
    content_hash: str
    path: Path
    deployed_by: str
    deployed_at: datetime

    @property
    def code_dir(self) -> Path:
        return self.path / CODE

    @property
    def label(self) -> str:
        """The commit (short) with ``+dirty``, or ``uncommitted working tree``."""
        return describe(self.commit, self.dirty)

    def jobs(self) -> dict[str, JobSpec]:
        """The job specs deployed with this snapshot."""
        raw = self._resources()
        return {name: JobSpec.model_validate(spec) for name, spec in raw.get("jobs", {}).items()}

    def endpoints(self) -> dict[str, EndpointSpec | LLMEndpointSpec]:
        """The serving endpoints, model and LLM ones, deployed with this snapshot."""
        raw = self._resources()
        found: dict[str, EndpointSpec | LLMEndpointSpec] = {
            name: EndpointSpec.model_validate(spec)
            for name, spec in raw.get("endpoints", {}).items()
        }
        for name, spec in raw.get("llm_endpoints", {}).items():
            found[name] = LLMEndpointSpec.model_validate(spec)
        return found

    def vector_indexes(self) -> dict[str, VectorIndexSpec]:
        """The vector index specs deployed with this snapshot (none before they were recorded)."""
        raw = self._resources()
        return {
            name: VectorIndexSpec.model_validate(spec)
            for name, spec in raw.get("vector_indexes", {}).items()
        }

    def _resources(self) -> dict[str, Any]:
        raw: dict[str, Any] = yaml.safe_load((self.path / RESOURCES).read_text()) or {}
        return raw

    def verify(self) -> None:
        """Refuse a snapshot whose files changed since it was deployed."""
        if not self.path.is_dir():
            raise DeployError(
                f"deployment {self.id} of {self.label}: its snapshot {self.path} is missing",
                hint="deploy again (`lakeforge deploy -t TARGET`)",
            )
        found = content_hash(self.path)
        if found != self.content_hash:
            raise DeployError(
                f"the snapshot {self.path} of deployment {self.id} ({self.label}) changed since "
                f"it was deployed (content hash {found[:12]}, deployed {self.content_hash[:12]})",
                hint="snapshots are read-only: deploy again to replace it",
            )


def describe(commit: str | None, dirty: bool) -> str:
    if commit is None:
        return "uncommitted working tree"
    return commit[:12] + ("+dirty" if dirty else "")


def deployments_home(ws: Workspace) -> Path:
    """``<target root>/deployments`` (a local folder of the project for a remote root)."""
    home = (
        Path(ws.target.root)
        if ws.target.is_local
        else ws.project.directory / ".lakeforge" / ws.target.name
    )
    return home / "deployments"


# -- what to snapshot -----------------------------------------------------------------


def collect(ws: Workspace, *, allow_dirty: bool) -> Source:
    """The project's code: the files git tracks, clean unless ``allow_dirty`` or dev.

    Outside git (or before the first commit) the working tree's files are taken, which a
    production-mode target refuses unless ``allow_dirty``.
    """
    folder = ws.project.directory
    allowed = allow_dirty or ws.target.development
    mode = f"target {ws.target.name} (production mode) deploys reviewed code at a commit"
    commit = _git(folder, "rev-parse", "--verify", "-q", "HEAD")
    if commit is None:
        if not allowed:
            raise DeployError(
                f"{folder} is not a git checkout with a commit: {mode}",
                hint="`git init && git add -A && git commit -m ...`, or pass --allow-dirty",
            )
        return Source(None, True, _working_tree(ws))
    changed = (
        _git(folder, "status", "--porcelain", "--untracked-files=no", "--", ".") or ""
    ).split("\n")
    changed = [line[3:] for line in changed if line.strip()]
    if changed and not allowed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise DeployError(
            f"{folder} has uncommitted changes to {len(changed)} tracked file(s) ({shown}): {mode}",
            hint="commit them, or pass --allow-dirty to deploy the working tree (recorded dirty)",
        )
    listed = _git(folder, "ls-files", "-z", "--cached", "--", ".") or ""
    files = {
        name: folder / name
        for name in listed.split("\0")
        if name and (folder / name).is_file()  # skips deleted files and submodules
    }
    return Source(commit, bool(changed), files)


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _working_tree(ws: Workspace) -> dict[str, Path]:
    """Files under the project folder, without hidden folders, caches and target roots."""
    folder = ws.project.directory
    roots = {
        Path(ws.project.target(name).root)
        for name in ws.project.target_names
        if ws.project.target(name).is_local
    }
    files: dict[str, Path] = {}
    for here, dirs, names in os.walk(folder):
        base = Path(here)
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and d not in _SKIPPED_DIRS and base / d not in roots
        ]
        for name in names:
            path = base / name
            if path.is_file():
                files[path.relative_to(folder).as_posix()] = path
    return files


# -- writing and reading snapshots ----------------------------------------------------


def content_hash(folder: Path) -> str:
    """sha256 over the paths and contents of ``code/`` and ``lakeforge.yaml``."""
    digest = hashlib.sha256()
    paths = sorted(p for p in (folder / CODE).rglob("*") if p.is_file())
    for path in [*paths, folder / RESOURCES]:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class Staged:
    """A snapshot written to a temporary folder, not yet in place."""

    home: Path
    folder: Path
    source: Source
    content_hash: str

    @property
    def code_dir(self) -> Path:
        return self.folder / CODE

    @property
    def name(self) -> str:
        dirty = "-dirty" if self.source.dirty else ""
        return f"{(self.source.commit or 'nocommit')[:12]}{dirty}-{self.content_hash[:12]}"

    def publish(self) -> Path:
        """Rename into ``home/<name>`` (or keep an identical snapshot already there)."""
        final = self.home / self.name
        if not final.exists():
            try:
                self.folder.rename(final)
                return final
            except OSError:  # another deploy put the same snapshot there meanwhile
                pass
        if content_hash(final) != self.content_hash:
            raise DeployError(
                f"snapshot {final} exists with other content (changed since it was written)",
                hint="move it away and deploy again",
            )
        return final


@contextmanager
def stage(ws: Workspace, source: Source, resources: dict[str, Any]) -> Iterator[Staged]:
    """Write the snapshot into a temporary folder under the target; removed on exit unless
    published."""
    home = deployments_home(ws)
    home.mkdir(parents=True, exist_ok=True)
    folder = home / f".staging-{uuid.uuid4().hex[:12]}"
    try:
        for name, path in source.files.items():
            copy = folder / CODE / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            copy.chmod(0o444 | (path.stat().st_mode & 0o111))  # read-only, keeps exec bits
        (folder / CODE).mkdir(parents=True, exist_ok=True)
        (folder / RESOURCES).write_text(yaml.safe_dump(resources, sort_keys=True))
        (folder / RESOURCES).chmod(0o444)
        digest = content_hash(folder)
        manifest = {
            "commit": source.commit,
            "dirty": source.dirty,
            "content_hash": digest,
            "files": len(source.files),
            "written_at": datetime.now(UTC).isoformat(),
            "written_by": current_user(),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        yield Staged(home, folder, source, digest)
    finally:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


# -- the deployments table ------------------------------------------------------------


def record(conn: Connection, path: Path, commit: str | None, dirty: bool, digest: str) -> None:
    """Record a deploy of the snapshot at ``path`` in ``conn``'s transaction."""
    conn.execute(
        insert(deployments).values(
            snapshot=path.name,
            commit=commit,
            dirty=dirty,
            content_hash=digest,
            path=str(path),
            deployed_by=current_user(),
            deployed_at=datetime.now(UTC),
        )
    )


def current(ws: Workspace) -> Deployment | None:
    """The target's current deployment (its newest), if it has one."""
    with ws.state.connect_engine().connect() as conn:
        row = conn.execute(select(deployments).order_by(deployments.c.id.desc()).limit(1)).first()
    return None if row is None else _deployment(row)


def get(ws: Workspace, deployment_id: int) -> Deployment:
    with ws.state.connect_engine().connect() as conn:
        row = conn.execute(select(deployments).where(deployments.c.id == deployment_id)).first()
    if row is None:
        raise DeployError(f"no deployment {deployment_id} in target {ws.target.name!r}")
    return _deployment(row)


def _deployment(row: Any) -> Deployment:
    return Deployment(
        id=row.id,
        snapshot=row.snapshot,
        commit=row.commit,
        dirty=bool(row.dirty),
        content_hash=row.content_hash,
        path=Path(row.path),
        deployed_by=row.deployed_by,
        deployed_at=as_utc(row.deployed_at),
    )
