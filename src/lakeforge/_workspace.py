"""The SDK entry point: one project, one target, and the services that act on it."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from lakeforge.project import Project, Target

if TYPE_CHECKING:
    import pyarrow as pa

    from lakeforge.deployment import Approvals, Deployment, ValidationReport
    from lakeforge.events import Outbox
    from lakeforge.features import FeatureTables, PublishResult, TrainingSet
    from lakeforge.lakehouse import IngestReport, IngestStatus, Lakehouse
    from lakeforge.lakehouse._ingest import ProgressCallback
    from lakeforge.lakehouse._ingest_files import FileFormat
    from lakeforge.registry import Registry
    from lakeforge.state import StateStore
    from lakeforge.tracking import Tracker, TrainingRun, TuningResult


class Workspace:
    """A project seen from one target: ``ws.tables``, ``ws.sql(...)``, ``ws.ingest(...)``."""

    def __init__(self, project: Project, target: Target) -> None:
        self.project = project
        self.target = target

    @cached_property
    def tables(self) -> Lakehouse:
        """The lakehouse catalog of this target."""
        from lakeforge.lakehouse import Lakehouse

        return Lakehouse(self.project, self.target)

    @cached_property
    def state(self) -> StateStore:
        """The target's control-plane state store (migrated on first use)."""
        from lakeforge.state import StateStore

        return StateStore(self.target.state_store_url)

    @cached_property
    def tracking(self) -> Tracker:
        """Experiment tracking on the target's MLflow store."""
        from lakeforge.tracking import Tracker

        return Tracker(self.project, self.target, self.tables, self.state)

    @cached_property
    def models(self) -> Registry:
        """The target's model registry, with promotion history."""
        from lakeforge.registry import Registry

        return Registry(self.project, self.target, self.state)

    @cached_property
    def features(self) -> FeatureTables:
        """Feature tables of this target (create, write as upsert, describe, list)."""
        from lakeforge.features import FeatureTables

        return FeatureTables(self.tables)

    def create_training_set(
        self, df: Any, feature_lookups: Any, label: Any, exclude_columns: Any = None
    ) -> TrainingSet:
        """A point-in-time correct training set; see :func:`lakeforge.features.create_training_set`."""
        from lakeforge.features import create_training_set

        return create_training_set(self, df, feature_lookups, label, exclude_columns)

    def publish_table(self, name: str, **options: Any) -> PublishResult:
        """Copy a feature table to the online store; see :func:`lakeforge.features.publish_table`."""
        from lakeforge.features import publish_table

        return publish_table(self, name, **options)

    @cached_property
    def events(self) -> Outbox:
        """The target's durable event outbox."""
        from lakeforge.events import Outbox

        return Outbox(self.state)

    @cached_property
    def approvals(self) -> Approvals:
        """Transition requests and decisions of this target."""
        from lakeforge.deployment import Approvals

        return Approvals(self.project, self.target, self.state, self.models)

    def validate(self, name: str, version: int | str, **options: Any) -> ValidationReport:
        """Validate a version against the target's policy; see :func:`lakeforge.deployment.validate`."""
        from lakeforge.deployment import validate

        return validate(self, name, version, **options)

    def deploy(self, name: str, version: int | str, **options: Any) -> Deployment:
        """validate -> request -> (auto-)approve -> champion; see :func:`lakeforge.deployment.deploy`."""
        from lakeforge.deployment import deploy

        return deploy(self, name, version, **options)

    def start_run(
        self, pipeline: str = "train", **options: Any
    ) -> AbstractContextManager[TrainingRun]:
        """An MLflow run with lineage; see :meth:`lakeforge.tracking.Tracker.start_run`."""
        return self.tracking.start_run(pipeline, **options)

    def log_model(self, model: Any, name: str, *, training_set: Any = None, **options: Any) -> Any:
        """Log and register a model on the active run; see :meth:`Tracker.log_model`.

        With ``training_set`` the model is packaged with its feature spec and scores from
        keys alone (see :func:`lakeforge.features.score_batch`).
        """
        if training_set is not None:
            from lakeforge.features._models import log_feature_model

            return log_feature_model(self, model, name, training_set=training_set, **options)
        return self.tracking.log_model(model, name, **options)

    def score_batch(self, model_uri: str, df: Any, **options: Any) -> Any:
        """Score rows carrying keys; a feature-aware model looks its features up."""
        from lakeforge.features._models import score_batch

        return score_batch(self, model_uri, df, **options)

    def tune(self, objective: Any, space: Any, **options: Any) -> TuningResult:
        """Tune with Optuna, each trial a nested run; see :func:`lakeforge.tracking.tune`."""
        from lakeforge.tracking import tune

        return tune(self.tracking, objective, space, **options)

    def evaluate(self, model: Any, data: Any, **options: Any) -> dict[str, float]:
        """Evaluate on held-out data with MLflow; see :func:`lakeforge.tracking.evaluate`."""
        from lakeforge.tracking import evaluate

        return evaluate(self.tracking, model, data, **options)

    def sql(self, query: str, *, read_only: bool = True) -> pa.Table:
        """Run SQL over the lakehouse; see :mod:`lakeforge.lakehouse._sql` for the syntax."""
        from lakeforge.lakehouse import SqlSession

        return SqlSession(self.tables).run(query, read_only=read_only)

    def ingest(
        self,
        source: str | os.PathLike[str],
        into: str,
        *,
        format: FileFormat = "auto",
        evolve_schema: bool = False,
        progress: ProgressCallback | None = None,
        **options: Any,
    ) -> IngestReport:
        """Load the files in ``source`` not yet ingested into table ``into``."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).run(
            source, into, format=format, evolve_schema=evolve_schema, progress=progress, **options
        )

    def ingest_status(self, table: str) -> IngestStatus:
        """The ingest checkpoint of ``table``: files loaded, failed, changed after loading."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).status(table)

    def ingest_retry(self, table: str, **options: Any) -> IngestReport:
        """Load again the files that failed to ingest into ``table``; see :meth:`Ingestor.retry`."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).retry(table, **options)

    def ingest_forget(self, table: str, paths: list[str], **options: Any) -> list[str]:
        """Remove files from the ingest checkpoint of ``table`` so that they load again."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).forget(table, paths, **options)

    def close(self) -> None:
        if "state" in self.__dict__:
            self.state.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def connect(
    target: str | None = None, *, project_dir: str | os.PathLike[str] | None = None
) -> Workspace:
    """Open the project at ``project_dir`` (default: nearest above cwd) on ``target``.

    The target is ``target``, else ``$LAKEFORGE_TARGET``, else the project's default.
    """
    project = Project.load(project_dir)
    return Workspace(project, project.target(target))
