"""Hyperparameter tuning with Optuna: every trial a nested MLflow run, the study shared.

The study lives in Optuna's RDB storage, by default on the target's state store (the
state store keeps its Alembic version in its own table, so Optuna's tables can share
the database). Several processes calling :func:`tune` with the same ``study_name`` are
parallel workers of one study. The search space is given in code (a function of the
Optuna trial) or as data in the shape of a YAML config, validated by :class:`SearchSpace`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lakeforge.errors import LakeforgeError
from lakeforge.tracking._runs import SignatureError, log_unregistered
from lakeforge.tracking._space import parse_space

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

    from lakeforge.tracking._runs import Tracker, TrainingRun

TAG_STUDY = "lakeforge.tuning.study"
TAG_STORAGE = "lakeforge.tuning.storage"
TAG_TRIAL = "lakeforge.tuning.trial"
TAG_STATE = "lakeforge.tuning.state"
TAG_BEST_RUN = "lakeforge.tuning.best_run_id"
RUN_ID_ATTR = "mlflow_run_id"
"""Optuna user attribute holding each trial's MLflow run id."""

Direction = Literal["minimize", "maximize"]
TrialState = Literal["complete", "pruned", "failed"]


class TuningError(LakeforgeError):
    """A tuning call that cannot run or did not produce a result."""


class TrialHandle:
    """What an objective sees of its trial: number, params, and intermediate reporting."""

    def __init__(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        run_id: str,
        client: MlflowClient,
        metric: str,
    ) -> None:
        self.trial = trial
        self.params = params
        self.run_id = run_id
        self._client = client
        self._metric = metric
        self.last_step: int | None = None

    @property
    def number(self) -> int:
        return self.trial.number

    def report(self, value: float, step: int) -> None:
        """Log ``value`` as the tuned metric at ``step``; raise ``TrialPruned`` when told to.

        Pruning compares ``value`` with other trials' values at the same step (the
        pruner's rule, e.g. the median), so report on the scale of the final score.
        """
        import optuna

        self.trial.report(float(value), step)
        self._client.log_metric(self.run_id, self._metric, float(value), step=step)
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.number} pruned at step {step}")


@dataclass(frozen=True)
class TrialRecord:
    """One trial run by this call: its outcome and its nested MLflow run."""

    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any]
    run_id: str


@dataclass
class TuningResult:
    """The outcome of :func:`tune`: the best of this call's trials, and the whole study."""

    study: optuna.Study
    study_name: str
    run_id: str
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    best_run_id: str
    best_model: Any = None
    model: Any = None
    """The ``ModelVersion`` when registered, else the ``ModelInfo`` of the logged model."""
    trials: list[TrialRecord] = field(default_factory=list)

    def count(self, state: TrialState) -> int:
        """How many of this call's trials ended in ``state``."""
        return sum(1 for t in self.trials if t.state == state)


SpaceArg = Mapping[str, Any] | Callable[["optuna.Trial"], Mapping[str, Any]]
Objective = Callable[[dict[str, Any], TrialHandle], float | tuple[float, Any]]


@dataclass
class _Best:
    value: float
    number: int
    run_id: str
    params: dict[str, Any]
    model: Any


# -- tune -------------------------------------------------------------------------------


def tune(
    tracker: Tracker,
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
    """Search hyperparameters with Optuna; each trial a nested MLflow run under one parent.

    ``objective(params, trial)`` trains and scores one candidate and returns the score,
    or ``(score, model)`` so the best model is kept (in memory, only the current best)
    and logged on the parent run: registered as ``register_as`` (``catalog.schema.model``,
    needs ``input_example``) or else logged unregistered with its flavor; ``model_options``
    go to the flavor's ``log_model`` (e.g. ``skops_trusted_types``). Intermediate
    scores go through ``trial.report(value, step)``, which lets the pruner stop it.

    The budget is ``n_trials`` and/or ``timeout`` seconds. The sampler is TPE seeded
    with ``seed`` (same seed, same trial params). The study is stored in ``storage``
    (a SQLAlchemy URL, default the target's state store) as ``study_name`` (default
    ``<project>/<pipeline>/<parent run id>``, unique per call); calls with the same
    ``study_name`` add trials to one study, so they can run as parallel workers (one
    process each: MLflow's active run and the tracker's run stack are per process).

    The parent run gets ``best_<param>`` params, metrics ``best_<metric>``, ``n_trials``,
    ``n_complete``, ``n_pruned``, ``n_failed``, and the model. Each trial run gets its
    params, the metric, and tag ``lakeforge.tuning.state`` (complete, pruned or failed).
    """
    if n_trials is None and timeout is None:
        raise TuningError("tune needs a budget: give n_trials, timeout (seconds), or both")
    if n_trials is not None and n_trials < 1:
        raise TuningError(f"n_trials must be >= 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise TuningError(f"timeout must be > 0 seconds, got {timeout}")
    if direction not in ("minimize", "maximize"):
        raise TuningError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    suggest = space if callable(space) else parse_space(space).suggest
    the_pruner = _pruner(pruner)
    if register_as is not None:
        tracker.model_name(register_as)  # a bad name or another target's catalog fails now
        if input_example is None:
            raise SignatureError(
                f"register_as={register_as!r} needs input_example to infer the signature",
                hint="pass input_example=X.head(5)",
            )

    import optuna

    budget = {"n_trials": n_trials, "timeout_s": timeout, "seed": seed}
    params = {
        "direction": direction,
        "metric": metric,
        "pruner": pruner if isinstance(pruner, str) else type(pruner).__name__,
        **{k: v for k, v in budget.items() if v is not None},
    }
    rdb = _storage(storage or tracker.target.state_store_url)
    try:
        with tracker.start_run(pipeline, run_name=run_name, params=params, autolog=False) as parent:
            name = study_name or f"{tracker.project.name}/{pipeline}/{parent.run_id}"
            parent.client.set_tag(parent.run_id, TAG_STUDY, name)
            parent.client.set_tag(parent.run_id, TAG_STORAGE, _display_url(rdb.url))
            study = optuna.create_study(
                storage=rdb,
                study_name=name,
                direction=direction,
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=the_pruner,
                load_if_exists=True,
            )
            if study.direction.name.lower() != direction:
                raise TuningError(
                    f"study {name!r} exists with direction "
                    f"{study.direction.name.lower()!r}, not {direction!r}"
                )
            trials: list[TrialRecord] = []
            best: list[_Best] = []
            run_trial = _trial_runner(
                tracker, objective, suggest, pipeline, name, metric, direction, trials, best
            )
            study.optimize(run_trial, n_trials=n_trials, timeout=timeout)
            rdb.engine.dispose()
            # What the caller keeps holds no open connection: each storage call opens its own.
            study = optuna.load_study(study_name=name, storage=_storage(rdb.url, pooled=False))
            return _finish(
                tracker,
                parent,
                study,
                trials,
                best,
                metric=metric,
                register_as=register_as,
                input_example=input_example,
                model_options=model_options or {},
            )
    finally:
        rdb.engine.dispose()


def _finish(
    tracker: Tracker,
    parent: TrainingRun,
    study: optuna.Study,
    trials: list[TrialRecord],
    best: list[_Best],
    *,
    metric: str,
    register_as: str | None,
    input_example: Any,
    model_options: Mapping[str, Any],
) -> TuningResult:
    """Log the outcome on the parent run and build the result."""
    name = study.study_name
    client = parent.client
    counts = {s: sum(1 for t in trials if t.state == s) for s in ("complete", "pruned", "failed")}
    client.log_batch(
        parent.run_id,
        metrics=_metrics(
            {
                "n_trials": len(trials),
                **{f"n_{s}": n for s, n in counts.items()},
                "study_n_trials": len(study.get_trials(deepcopy=False)),
            }
        ),
    )
    if not best:
        raise TuningError(
            f"no trial of study {name!r} completed in this call "
            f"({counts['pruned']} pruned, {counts['failed']} failed)",
            hint="the objective returned NaN for the failed trials"
            if counts["failed"]
            else "raise n_trials or timeout, or loosen the pruner (pruner='none')",
        )
    top = best[0]
    result = TuningResult(
        study=study,
        study_name=name,
        run_id=parent.run_id,
        best_params=top.params,
        best_value=top.value,
        best_trial=top.number,
        best_run_id=top.run_id,
        best_model=top.model,
        trials=trials,
    )
    _log_best(parent, result, metric)
    if top.model is not None:
        result.model = _log_best_model(
            tracker, top.model, register_as, input_example, model_options
        )
    elif register_as is not None:
        raise TuningError(
            f"register_as={register_as!r} but the objective returned no model",
            hint="return (score, model) from the objective",
        )
    return result


def _trial_runner(
    tracker: Tracker,
    objective: Objective,
    suggest: Callable[[optuna.Trial], Mapping[str, Any]],
    pipeline: str,
    study_name: str,
    metric: str,
    direction: Direction,
    records: list[TrialRecord],
    best: list[_Best],
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: one nested MLflow run around one call of the user's objective."""
    import optuna

    def run_trial(trial: optuna.Trial) -> float:
        tags = {TAG_STUDY: study_name, TAG_TRIAL: str(trial.number)}
        pruned: optuna.TrialPruned | None = None
        with tracker.start_run(
            pipeline, run_name=f"trial-{trial.number}", tags=tags, autolog=False, nested=True
        ) as run:
            client = run.client
            trial.set_user_attr(RUN_ID_ATTR, run.run_id)
            params = suggest(trial)
            if not isinstance(params, Mapping):
                raise TuningError(
                    f"the search-space function must return a dict of params, "
                    f"got {type(params).__name__}"
                )
            params = dict(params)
            _log_params(client, run.run_id, params)
            handle = TrialHandle(trial, params, run.run_id, client, metric)
            try:
                score, model = _score_and_model(objective(params, handle), trial.number)
            except optuna.TrialPruned as exc:
                pruned = exc
                client.set_tag(run.run_id, TAG_STATE, "pruned")
                records.append(TrialRecord(trial.number, "pruned", None, params, run.run_id))
            except BaseException:
                client.set_tag(run.run_id, TAG_STATE, "failed")
                raise
            else:
                state: TrialState = "failed" if math.isnan(score) else "complete"
                client.set_tag(run.run_id, TAG_STATE, state)
                if state == "complete":
                    client.log_metric(run.run_id, metric, score, step=handle.last_step or 0)
                    if not best or _better(score, best[0].value, direction):
                        best[:] = [_Best(score, trial.number, run.run_id, params, model)]
                records.append(TrialRecord(trial.number, state, score, params, run.run_id))
        if pruned is not None:  # raised outside the run, which ends FINISHED with its tag
            raise pruned
        return score

    return run_trial


def _score_and_model(returned: Any, number: int) -> tuple[float, Any]:
    if isinstance(returned, tuple):
        if len(returned) != 2:
            raise TuningError(
                f"trial {number}: the objective returned a tuple of {len(returned)}; "
                "return score or (score, model)"
            )
        score, model = returned
    else:
        score, model = returned, None
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise TuningError(
            f"trial {number}: the objective returned {type(score).__name__}; "
            "return a number or (number, model)"
        )
    return float(score), model


def _better(value: float, than: float, direction: Direction) -> bool:
    return value > than if direction == "maximize" else value < than


def _pruner(pruner: Any) -> optuna.pruners.BasePruner:
    import optuna

    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner()
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise TuningError(
        f"pruner must be 'median', 'none' or an optuna.pruners.BasePruner, got {pruner!r}"
    )


def _storage(url: str, *, pooled: bool = True) -> optuna.storages.RDBStorage:
    """Optuna RDB storage on ``url``; a SQLite file waits for locks held by other workers.

    ``pooled=False`` opens a connection per storage call, so nothing stays open between.
    """
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise TuningError(f"study storage {url!r} is not a SQLAlchemy URL") from None
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True} if pooled else {"poolclass": NullPool}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise TuningError(
                f"study storage {url!r} is an in-memory SQLite database, which workers "
                "cannot share and which ends with the call",
                hint="use a file (sqlite:///path/study.db) or leave storage unset",
            )
        engine_kwargs["connect_args"] = {"timeout": 30}
        from pathlib import Path

        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, skip_table_creation=not pooled
        )
    except SQLAlchemyError as exc:
        raise TuningError(
            f"cannot open the study storage {_display_url(url)}: {getattr(exc, 'orig', exc)}"
        ) from None


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    if params:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


def _metrics(values: Mapping[str, float]) -> list[Any]:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in values.items()]


def _log_best(parent: TrainingRun, result: TuningResult, metric: str) -> None:
    client = parent.client
    _log_params(client, parent.run_id, {f"best_{k}": v for k, v in result.best_params.items()})
    client.log_batch(
        parent.run_id,
        metrics=_metrics({f"best_{metric}": result.best_value, "best_trial": result.best_trial}),
    )
    client.set_tag(parent.run_id, TAG_BEST_RUN, result.best_run_id)


def _log_best_model(
    tracker: Tracker,
    model: Any,
    register_as: str | None,
    input_example: Any,
    options: Mapping[str, Any],
) -> Any:
    """Register the best model as ``register_as``, or log it unregistered with its flavor."""
    if register_as is None:
        return log_unregistered(model, "model", input_example=input_example, options=options)
    return tracker.log_model(model, register_as, input_example=input_example, **options)
