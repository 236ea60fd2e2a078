"""Lineage recorded on training runs: code (git), environment, and exact table versions."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lakeforge.lakehouse import TableName

TAG_COMMIT = "lakeforge.git.commit"
TAG_BRANCH = "lakeforge.git.branch"
TAG_DIRTY = "lakeforge.git.dirty"
TAG_TARGET = "lakeforge.target"
TAG_PROJECT = "lakeforge.project"
TAG_PIPELINE = "lakeforge.pipeline"
TAG_DATA = "lakeforge.data_versions"
TAG_RUN = "lakeforge.run_id"
TAG_COPIED_FROM = "lakeforge.copied_from"
TAG_DEPLOYMENT = "lakeforge.deployment"
# Set by the jobs engine for a task running a deployed code snapshot (not a git checkout).
DEPLOYED_COMMIT_ENV = "LAKEFORGE_DEPLOYED_COMMIT"
DEPLOYED_DIRTY_ENV = "LAKEFORGE_DEPLOYED_DIRTY"
DEPLOYMENT_ENV = "LAKEFORGE_DEPLOYMENT"
SOURCE_TYPE = "lakeforge_delta"


@dataclass(frozen=True)
class GitInfo:
    commit: str | None
    branch: str | None
    dirty: bool | None
    deployment: str | None = None  # the target's deployment whose snapshot ran

    def tags(self) -> dict[str, str]:
        tags = {}
        if self.deployment:
            tags[TAG_DEPLOYMENT] = self.deployment
        if self.commit:
            tags[TAG_COMMIT] = self.commit
            tags["mlflow.source.git.commit"] = self.commit
        if self.branch:
            tags[TAG_BRANCH] = self.branch
            tags["mlflow.source.git.branch"] = self.branch
        if self.dirty is not None:
            tags[TAG_DIRTY] = str(self.dirty).lower()
        return tags


def git_info(directory: Path) -> GitInfo:
    """The commit, branch and dirty flag of the git checkout holding ``directory``.

    In a job task running a deployed snapshot, the deployed commit and dirty flag (from
    ``$LAKEFORGE_DEPLOYED_COMMIT``): that is the code running, whatever the checkout holds.
    """
    deployment = os.environ.get(DEPLOYMENT_ENV)
    if deployment:
        return GitInfo(
            os.environ.get(DEPLOYED_COMMIT_ENV) or None,
            None,
            os.environ.get(DEPLOYED_DIRTY_ENV, "true") == "true",
            deployment,
        )

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return GitInfo(None, None, None)
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitInfo(commit, git("rev-parse", "--abbrev-ref", "HEAD"), bool(status))


@functools.cache
def python_environment() -> str:
    """``pip freeze``-style requirements of the running interpreter (no subprocess).

    Computed once per process: installing packages mid-process is rare and scanning
    every distribution costs a fifth of a second.
    """
    lines = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    header = f"# python {platform.python_version()} on {platform.platform()}\n"
    return header + "\n".join(sorted(lines, key=str.lower)) + "\n"


@dataclass(frozen=True)
class TableRead:
    """One lakehouse table version read during a run."""

    table: TableName
    version: int
    location: str
    schema: pa.Schema
    table_id: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.table_id}@{self.version}".encode()).hexdigest()[:16]


def _make_source_class() -> type:
    """Our MLflow dataset source for Delta tables read with delta-rs (MLflow's needs Spark)."""
    from mlflow.data.dataset_source import DatasetSource

    class LakeforgeDeltaSource(DatasetSource):
        """A lakehouse table at one Delta version."""

        def __init__(self, table: str, version: int, location: str) -> None:
            self.table = table
            self.version = version
            self.location = location

        @staticmethod
        def _get_source_type() -> str:
            return SOURCE_TYPE

        def load(self) -> Any:
            from deltalake import DeltaTable

            return DeltaTable(self.location, version=self.version).to_pyarrow_table()

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return {"table": self.table, "version": self.version, "location": self.location}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> Any:
            return cls(source_dict["table"], int(source_dict["version"]), source_dict["location"])

    from mlflow.data.dataset_source_registry import register_dataset_source

    register_dataset_source(LakeforgeDeltaSource)  # type: ignore[arg-type]  # takes the class
    return LakeforgeDeltaSource


_source_class: type | None = None


def mlflow_dataset(read: TableRead) -> Any:
    """An MLflow dataset input (source, version, digest, schema) for a table read."""
    global _source_class
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, DataType, Schema

    if _source_class is None:
        _source_class = _make_source_class()
    source = _source_class(str(read.table), read.version, read.location)
    columns: list[Any] = [
        ColSpec(_mlflow_type(field.type, DataType), field.name) for field in read.schema
    ]
    return MetaDataset(  # type: ignore[abstract]
        source, name=f"{read.table}@v{read.version}", digest=read.digest, schema=Schema(columns)
    )


def _mlflow_type(arrow_type: pa.DataType, data_type: Any) -> Any:
    if pa.types.is_boolean(arrow_type):
        return data_type.boolean
    if pa.types.is_integer(arrow_type):
        return data_type.long if arrow_type.bit_width > 32 else data_type.integer
    if pa.types.is_float32(arrow_type):
        return data_type.float
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return data_type.double
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return data_type.datetime
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return data_type.binary
    return data_type.string
