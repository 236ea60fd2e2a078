"""The SDK entry point: one project, one target, and the services that act on it.

Its methods are typed pass-throughs: each takes the options of the function it calls,
with the same names, types and defaults, so a caller's type checker sees them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, overload

from lakeforge.project import Project, Target

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import pyarrow as pa

    from lakeforge.deployment import Approvals, Deployment, ValidationReport
    from lakeforge.events import Outbox
    from lakeforge.features import (
        FeatureFunction,
        FeatureLookup,
        FeatureTables,
        PublishMode,
        PublishResult,
        TrainingSet,
    )
    from lakeforge.features.online import OnlineStore
    from lakeforge.inference import ScoreResult
    from lakeforge.lakehouse import (
        FileFormat,
        IngestReport,
        IngestStatus,
        Lakehouse,
        ProgressCallback,
        TableName,
    )
    from lakeforge.llm import Prompts
    from lakeforge.project import ValidationMode, ValidationPolicy
    from lakeforge.rag import ChainConfig, LLMConfig, RetrievalEvaluation
    from lakeforge.registry import Registry
    from lakeforge.state import StateStore
    from lakeforge.tracking import (
        Direction,
        ModelType,
        Objective,
        SpaceArg,
        Tracker,
        TrainingRun,
        TuningResult,
    )
    from lakeforge.vectors import QueryType, VectorIndexes

# Ingestor's defaults, repeated so that importing lakeforge stays light (a test keeps them equal).
_BATCH_BYTES = 256 * 1024 * 1024
_LEASE_S = 60.0


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
    def prompts(self) -> Prompts:
        """The target's prompt registry (versions, aliases, copies) for LLM endpoints."""
        from lakeforge.llm import Prompts

        return Prompts(self.project, self.target, self.state)

    @cached_property
    def vectors(self) -> VectorIndexes:
        """Vector indexes of this target (sync from Delta, search, pin, rollback)."""
        from lakeforge.vectors import VectorIndexes

        return VectorIndexes(self)

    @cached_property
    def features(self) -> FeatureTables:
        """Feature tables of this target (create, write as upsert, describe, list)."""
        from lakeforge.features import FeatureTables

        return FeatureTables(self.tables)

    def create_training_set(
        self,
        df: Any,
        feature_lookups: Sequence[FeatureLookup | FeatureFunction],
        label: str | Sequence[str] | None,
        exclude_columns: Sequence[str] | None = None,
    ) -> TrainingSet:
        """A point-in-time correct training set; see :func:`lakeforge.features.create_training_set`."""
        from lakeforge.features import create_training_set

        return create_training_set(self.tables, df, feature_lookups, label, exclude_columns)

    def publish_table(
        self,
        name: str | TableName,
        *,
        mode: PublishMode = "auto",
        store: OnlineStore | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> PublishResult:
        """Copy a feature table to the online store; see :func:`lakeforge.features.publish_table`."""
        from lakeforge.features import publish_table

        return publish_table(self, name, mode=mode, store=store, progress=progress)

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

    def validate(
        self,
        name: str,
        version: int | str,
        *,
        mode: ValidationMode | None = None,
        policy: ValidationPolicy | None = None,
    ) -> ValidationReport:
        """Validate a version against the target's policy; see :func:`lakeforge.deployment.validate`."""
        from lakeforge.deployment import validate

        return validate(self, name, version, mode=mode, policy=policy)

    def deploy(self, name: str, version: int | str, *, reason: str | None = None) -> Deployment:
        """validate -> request -> (auto-)approve -> champion; see :func:`lakeforge.deployment.deploy`."""
        from lakeforge.deployment import deploy

        return deploy(self, name, version, reason=reason)

    def start_run(
        self,
        pipeline: str = "train",
        *,
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        autolog: bool = True,
        nested: bool = False,
    ) -> AbstractContextManager[TrainingRun]:
        """An MLflow run with lineage; see :meth:`lakeforge.tracking.Tracker.start_run`."""
        return self.tracking.start_run(
            pipeline, run_name=run_name, params=params, tags=tags, autolog=autolog, nested=nested
        )

    @overload
    def log_model(
        self,
        model: Any,
        name: str,
        *,
        training_set: None = None,
        input_example: Any = None,
        signature: Any = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        pip_requirements: list[str] | None = None,
        **flavor_options: Any,
    ) -> Any: ...

    @overload
    def log_model(
        self,
        model: Any,
        name: str,
        *,
        training_set: TrainingSet,
        input_example: Any = None,
        **flavor_options: Any,
    ) -> Any: ...

    def log_model(
        self,
        model: Any,
        name: str,
        *,
        training_set: TrainingSet | None = None,
        input_example: Any = None,
        **options: Any,
    ) -> Any:
        """Log and register a model on the active run; see :meth:`Tracker.log_model`.

        With ``training_set`` the model is packaged with its feature spec and scores from
        keys alone (see :func:`lakeforge.features.log_feature_model` and
        :func:`lakeforge.inference.score_batch`).
        """
        if training_set is not None:
            from lakeforge.features import log_feature_model

            return log_feature_model(
                self, model, name, training_set=training_set, input_example=input_example, **options
            )
        return self.tracking.log_model(model, name, input_example=input_example, **options)

    def score(
        self,
        model_uri: str,
        *,
        input: str | None = None,
        input_version: int | None = None,
        sql: str | None = None,
        data: Any = None,
        output: str | None = None,
        keys: Sequence[str] | None = None,
        keep_columns: bool = False,
        prediction: str = "prediction",
        features: Literal["offline", "online"] = "offline",
        engine: str = "local",
        workers: int | None = None,
        chunk_rows: int = 1_000_000,
        fail_fast: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> ScoreResult:
        """Score a table, SQL result or frame into a table, file or memory; see
        :func:`lakeforge.inference.score`."""
        from lakeforge.inference import score

        return score(
            self,
            model_uri,
            input=input,
            input_version=input_version,
            sql=sql,
            data=data,
            output=output,
            keys=keys,
            keep_columns=keep_columns,
            prediction=prediction,
            features=features,
            engine=engine,
            workers=workers,
            chunk_rows=chunk_rows,
            fail_fast=fail_fast,
            progress=progress,
        )

    def score_batch(
        self,
        model_uri: str,
        df: Any,
        *,
        result_column: str = "prediction",
        features: Literal["offline", "online"] = "offline",
    ) -> pd.DataFrame:
        """Score rows carrying keys; a feature-aware model looks its features up.

        See :func:`lakeforge.inference.score_batch`.
        """
        from lakeforge.inference import score_batch

        return score_batch(self, model_uri, df, result_column=result_column, features=features)

    def tune(
        self,
        objective: Objective,
        space: SpaceArg,
        *,
        n_trials: int | None = None,
        timeout: float | None = None,
        direction: Direction = "maximize",
        metric: str = "score",
        seed: int | None = None,
        pruner: Literal["median", "none"] | optuna.pruners.BasePruner = "median",
        study_name: str | None = None,
        storage: str | None = None,
        pipeline: str = "tune",
        run_name: str | None = None,
        register_as: str | None = None,
        input_example: Any = None,
        model_options: Mapping[str, Any] | None = None,
    ) -> TuningResult:
        """Tune with Optuna, each trial a nested run; see :func:`lakeforge.tracking.tune`."""
        from lakeforge.tracking import tune

        return tune(
            self.tracking,
            objective,
            space,
            n_trials=n_trials,
            timeout=timeout,
            direction=direction,
            metric=metric,
            seed=seed,
            pruner=pruner,
            study_name=study_name,
            storage=storage,
            pipeline=pipeline,
            run_name=run_name,
            register_as=register_as,
            input_example=input_example,
            model_options=model_options,
        )

    def evaluate(
        self,
        model_or_uri: Any,
        data: Any,
        *,
        targets: str,
        model_type: ModelType,
        evaluators: str | list[str] | None = None,
        metric_prefix: str = "",
        model_options: Mapping[str, Any] | None = None,
    ) -> dict[str, float]:
        """Evaluate on held-out data with MLflow; see :func:`lakeforge.tracking.evaluate`."""
        from lakeforge.tracking import evaluate

        return evaluate(
            self.tracking,
            model_or_uri,
            data,
            targets=targets,
            model_type=model_type,
            evaluators=evaluators,
            metric_prefix=metric_prefix,
            model_options=model_options,
        )

    def log_chain(
        self,
        *,
        name: str,
        index: str,
        prompt: str,
        llm: LLMConfig | Mapping[str, Any],
        k: int = 5,
        filter: str | None = None,
        query_type: QueryType = "vector",
        trace: bool = True,
        questions: Any = None,
        eval_k: Sequence[int] = (1, 5, 10),
        input_example: str = "What does this index know about?",
        description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Any:
        """Log and register a RAG chain (retrieve -> prompt -> LLM) as an MLflow pyfunc;
        see :func:`lakeforge.rag.log_chain`."""
        from lakeforge.rag import log_chain

        return log_chain(
            self,
            name=name,
            index=index,
            prompt=prompt,
            llm=llm,
            k=k,
            filter=filter,
            query_type=query_type,
            trace=trace,
            questions=questions,
            eval_k=eval_k,
            input_example=input_example,
            description=description,
            tags=tags,
        )

    def evaluate_retrieval(
        self,
        index: str | ChainConfig,
        questions: Any,
        *,
        k: Sequence[int] = (1, 5, 10),
        question_column: str = "question",
        relevant_column: str = "relevant_ids",
        filter: str | None = None,
        query_type: QueryType = "vector",
        log: bool = True,
        prefix: str = "",
    ) -> RetrievalEvaluation:
        """recall@k, MRR, nDCG@k of an index (or a chain's retrieval) on labelled questions,
        logged on the active run; see :func:`lakeforge.rag.evaluate_retrieval`."""
        from lakeforge.rag import evaluate_retrieval

        return evaluate_retrieval(
            self,
            index,
            questions,
            k=k,
            question_column=question_column,
            relevant_column=relevant_column,
            filter=filter,
            query_type=query_type,
            log=log,
            prefix=prefix,
        )

    def sql(self, query: str, *, read_only: bool = True) -> pa.Table:
        """Run SQL over the lakehouse; see :mod:`lakeforge.lakehouse._sql` for the syntax."""
        from lakeforge.lakehouse import SqlSession

        return SqlSession(self.tables).run(query, read_only=read_only)

    def ingest(
        self,
        source: str | os.PathLike[str],
        into: str | TableName,
        *,
        format: FileFormat = "auto",
        evolve_schema: bool = False,
        batch_bytes: int = _BATCH_BYTES,
        progress: ProgressCallback | None = None,
        wait: bool = True,
        lease_s: float = _LEASE_S,
    ) -> IngestReport:
        """Load the files in ``source`` not yet ingested into table ``into``; see :meth:`Ingestor.run`."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).run(
            source,
            into,
            format=format,
            evolve_schema=evolve_schema,
            batch_bytes=batch_bytes,
            progress=progress,
            wait=wait,
            lease_s=lease_s,
        )

    def ingest_status(self, table: str) -> IngestStatus:
        """The ingest checkpoint of ``table``: files loaded, failed, changed after loading."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).status(table)

    def ingest_retry(
        self,
        table: str | TableName,
        *,
        format: FileFormat = "auto",
        evolve_schema: bool = False,
        batch_bytes: int = _BATCH_BYTES,
        progress: ProgressCallback | None = None,
        wait: bool = True,
        lease_s: float = _LEASE_S,
    ) -> IngestReport:
        """Load again the files that failed to ingest into ``table``; see :meth:`Ingestor.retry`."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).retry(
            table,
            format=format,
            evolve_schema=evolve_schema,
            batch_bytes=batch_bytes,
            progress=progress,
            wait=wait,
            lease_s=lease_s,
        )

    def ingest_forget(
        self,
        table: str | TableName,
        paths: Sequence[str | os.PathLike[str]],
        *,
        wait: bool = True,
        lease_s: float = _LEASE_S,
    ) -> list[str]:
        """Remove files from the ingest checkpoint of ``table`` so that they load again;
        see :meth:`Ingestor.forget`."""
        from lakeforge.lakehouse import Ingestor

        return Ingestor(self.tables, self.state).forget(table, paths, wait=wait, lease_s=lease_s)

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
