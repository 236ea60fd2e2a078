"""A loaded project and its resolved targets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lakeforge.errors import UnknownTargetError
from lakeforge.project._config import ProjectConfig, find_project_file, parse_config
from lakeforge.project._policy import DeploymentPolicy

TARGET_ENV = "LAKEFORGE_TARGET"
# Set for job tasks, which run in a deployed code snapshot: the project they belong to.
PROJECT_DIR_ENV = "LAKEFORGE_PROJECT_DIR"


def is_remote_uri(root: str) -> bool:
    """Whether ``root`` names an object store (``s3://``, ``gs://``, ...) rather than local disk."""
    return "://" in root and not root.startswith("file://")


@dataclass(frozen=True)
class Target:
    """A target with every default filled in: where its tables, runs and state live."""

    name: str
    catalog: str
    root: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    state_store_url: str
    read_from: tuple[str, ...]
    promote_from: tuple[str, ...] = ()
    storage_options: dict[str, str] = field(default_factory=dict)
    deployment: DeploymentPolicy = field(default_factory=DeploymentPolicy)
    mode: str = "production"
    ray_address: str | None = None
    online_store: str = ""

    @property
    def development(self) -> bool:
        """Development mode: deployed schedules start paused, job names get a user prefix."""
        return self.mode == "development"

    @property
    def is_local(self) -> bool:
        return not is_remote_uri(self.root)

    def path(self, *parts: str) -> str:
        """A location under the target's storage root."""
        return "/".join([self.root.rstrip("/"), *parts])


@dataclass(frozen=True)
class Project:
    """A project folder: its ``lakeforge.yaml`` and the targets it declares."""

    directory: Path
    config: ProjectConfig

    @classmethod
    def load(cls, project_dir: str | os.PathLike[str] | None = None) -> Project:
        """Load the project at ``project_dir`` (else ``$LAKEFORGE_PROJECT_DIR``, else the
        nearest one above the current folder)."""
        folder = project_dir or os.environ.get(PROJECT_DIR_ENV)
        file = find_project_file(Path(folder) if folder else Path.cwd())
        return cls(directory=file.parent, config=parse_config(file, file.read_text()))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def target_names(self) -> list[str]:
        return list(self.config.targets)

    def resolve_target_name(self, name: str | None = None) -> str:
        """``name``, else ``$LAKEFORGE_TARGET``, else the project's default target."""
        chosen = name or os.environ.get(TARGET_ENV) or self.config.default_target
        if chosen not in self.config.targets:
            source = "--target" if name else TARGET_ENV if os.environ.get(TARGET_ENV) else "default"
            raise UnknownTargetError(
                f"unknown target {chosen!r} (from {source}) in project {self.name!r}; "
                f"allowed: {', '.join(self.target_names)}"
            )
        return chosen

    def target(self, name: str | None = None) -> Target:
        """The resolved target called ``name`` (see :meth:`resolve_target_name`)."""
        name = self.resolve_target_name(name)
        spec = self.config.targets[name]
        local_home = self.directory / ".lakeforge" / name
        if spec.root is None:
            root = str(local_home)
        elif is_remote_uri(spec.root):
            root = spec.root.rstrip("/")
        else:
            raw = spec.root.removeprefix("file://")
            root = str((self.directory / Path(raw).expanduser()).resolve())
        state_home = Path(root) if not is_remote_uri(root) else local_home
        return Target(
            name=name,
            catalog=spec.catalog or name,
            root=root,
            mlflow_tracking_uri=spec.mlflow_tracking_uri or f"sqlite:///{state_home / 'mlflow.db'}",
            mlflow_artifact_root=spec.mlflow_artifact_root
            or (f"{root}/mlartifacts" if is_remote_uri(root) else f"file://{root}/mlartifacts"),
            state_store_url=spec.state_store or f"sqlite:///{state_home / 'state.db'}",
            read_from=tuple(spec.read_from),
            promote_from=tuple(spec.promote_from),
            storage_options=dict(spec.storage_options),
            deployment=spec.deployment,
            mode=spec.mode or ("development" if name == "dev" else "production"),
            ray_address=spec.ray_address,
            online_store=spec.online_store or f"sqlite:///{state_home / 'online.db'}",
        )

    def target_for_catalog(self, catalog: str) -> Target | None:
        """The target whose catalog is ``catalog``, if any."""
        for name, spec in self.config.targets.items():
            if (spec.catalog or name) == catalog:
                return self.target(name)
        return None

    @property
    def catalogs(self) -> list[str]:
        return [spec.catalog or name for name, spec in self.config.targets.items()]
