"""The model registry of a target: versions, aliases with promotion history, lineage, copies.

Aliases with a meaning of their own:

- ``challenger``: the newest candidate, waiting for validation against the champion;
- ``champion``: the version in production use (what serving and batch scoring load);
- ``previous``: the champion before the current one, where ``rollback`` returns to.

Moving ``champion`` moves the old champion to ``previous``. Every alias move is recorded
in the state store (who, when, which alias, from and to which version, and why), which
OSS MLflow does not do (mlflow#2169). On a target whose policy is ``approval: manual``,
``champion`` and ``previous`` move only through a decided approval request (or an
audited emergency move); moves made in MLflow directly are found by ``check_drift``.
"""

from __future__ import annotations

import builtins
import difflib
import json
import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from lakeforge._identity import current_user, os_user
from lakeforge.errors import LakeforgeError, PermissionDeniedError
from lakeforge.events import ALIAS_MOVED, MODEL_VERSION_CREATED, MODEL_VERSION_DELETED, Outbox
from lakeforge.lakehouse import TableName
from lakeforge.registry._audit import write_audit
from lakeforge.registry._gate import (
    CHAMPION,
    GATED_ALIASES,
    PREVIOUS,
    ApprovalGrant,
    check_emergency,
    check_grant,
    refuse,
)
from lakeforge.state import StateStore, alias_events, as_utc
from lakeforge.tracking import (
    TAG_COPIED_FROM,
    TAG_DATA,
    TAG_RUN,
    client_for,
    experiment_id,
    experiment_name,
    use_target,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from lakeforge.project import EffectivePolicy, Project, Target

CHALLENGER = "challenger"
OUTSIDE_ACTOR = "unknown (outside Lakeforge)"
log = logging.getLogger("lakeforge.registry")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_REF = re.compile(r"^(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$")


class ModelNotFoundError(LakeforgeError):
    """A registered model, version or alias that does not exist."""


@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias move; ``how``: direct, approval, emergency or outside."""

    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    at: datetime
    os_user: str | None = None
    how: str = "direct"
    request_id: int | None = None


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from."""

    model: str
    version: int
    run_id: str | None
    commit: str | None
    branch: str | None
    dirty: bool | None
    data_versions: dict[str, int]
    metrics: dict[str, float]
    copied_from: str | None
    feature_tables: list[str]


class Registry:
    """The MLflow model registry of one target, plus promotion history in its state store."""

    def __init__(self, project: Project, target: Target, state: StateStore) -> None:
        self.project = project
        self.target = target
        self.state = state
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.target)
        return self._client

    # -- names and lookups --------------------------------------------------------------

    def model_name(self, name: str) -> str:
        """A validated ``catalog.schema.model`` name (two parts get this target's catalog)."""
        return str(TableName.parse(name, default_catalog=self.target.catalog, kind="model"))

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        model = self.model_name(name)
        try:
            return self.client.get_registered_model(model)
        except MlflowException:
            known = [m.name for m in self.client.search_registered_models()]
            close = difflib.get_close_matches(model, known, n=3)
            raise ModelNotFoundError(
                f"model {model} is not registered in target {self.target.name!r}",
                hint=f"did you mean {', '.join(close)}?" if close else "`lakeforge models list`",
            ) from None

    def version(self, name: str, version: int | str) -> ModelVersion:
        """A version of a model; errors name the model and the versions that exist."""
        from mlflow.exceptions import MlflowException

        model = self._model(name).name
        try:
            return self.client.get_model_version(model, str(version))
        except MlflowException:
            existing = sorted(
                int(v.version) for v in self.client.search_model_versions(f"name='{model}'")
            )
            raise ModelNotFoundError(
                f"model {model} has no version {version} (versions: "
                f"{', '.join(map(str, existing)) or 'none'})"
            ) from None

    def resolve(self, ref: str) -> ModelVersion:
        """``name/3`` or ``name@champion`` to a model version."""
        from mlflow.exceptions import MlflowException

        match = _parse_ref(ref)
        if match["version"]:
            return self.version(match["name"], match["version"])
        model = self._model(match["name"])
        try:
            return self.client.get_model_version_by_alias(model.name, match["alias"])
        except MlflowException:
            raise ModelNotFoundError(
                f"model {model.name} has no alias {match['alias']!r} "
                f"(aliases: {', '.join(sorted(model.aliases)) or 'none'})"
            ) from None

    # -- listing ------------------------------------------------------------------------

    def list(self) -> builtins.list[Any]:
        """Registered models of this target, by name."""
        return sorted(self.client.search_registered_models(), key=lambda m: m.name)

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """Versions of a model, newest first."""
        model = self._model(name).name
        found = self.client.search_model_versions(f"name='{model}'")
        return sorted(found, key=lambda v: int(v.version), reverse=True)

    def versions_using(
        self, feature_table: str
    ) -> builtins.list[tuple[str, int, builtins.list[str]]]:
        """Model versions that look features up in ``feature_table``: (model, version, features)."""
        found = []
        for version in self.client.search_model_versions():
            used = json.loads(version.tags.get("lakeforge.features", "{}"))
            if feature_table in used:
                found.append((version.name, int(version.version), list(used[feature_table])))
        return sorted(found)

    def aliases(self, name: str) -> dict[str, int]:
        return {alias: int(v) for alias, v in self._model(name).aliases.items()}

    def lineage(self, ref: str) -> Lineage:
        """Run, commit and exact table versions behind a model version."""
        version = self.resolve(ref)
        tags = dict(version.tags)
        run_tags: dict[str, str] = {}
        metrics: dict[str, float] = {}
        if version.run_id:
            try:
                run = self.client.get_run(version.run_id)
                run_tags, metrics = dict(run.data.tags), dict(run.data.metrics)
            except Exception:  # the run lives in another target's store (a copy)
                pass
        merged = {**run_tags, **tags}
        dirty = merged.get("lakeforge.git.dirty")
        return Lineage(
            model=version.name,
            version=int(version.version),
            run_id=tags.get(TAG_RUN, version.run_id),
            commit=merged.get("lakeforge.git.commit"),
            branch=merged.get("lakeforge.git.branch"),
            dirty=None if dirty is None else dirty == "true",
            data_versions=json.loads(merged.get(TAG_DATA, "{}")),
            metrics=metrics
            or {
                k.removeprefix("lakeforge.metric."): float(v)
                for k, v in tags.items()
                if k.startswith("lakeforge.metric.")
            },
            copied_from=tags.get(TAG_COPIED_FROM),
            feature_tables=json.loads(merged.get("lakeforge.feature_tables", "[]")),
        )

    # -- aliases ------------------------------------------------------------------------

    def policy(self, name: str) -> EffectivePolicy:
        """The deployment policy of a model in this target (its ``models`` rule or default)."""
        return self.target.deployment.for_model(self.model_name(name))

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | str,
        *,
        reason: str | None = None,
        conn: Connection | None = None,
        emergency: bool = False,
        grant: ApprovalGrant | None = None,
    ) -> builtins.list[AliasEvent]:
        """Point ``alias`` at ``version``; moving ``champion`` moves the old one to ``previous``.

        On a gated target ``champion`` and ``previous`` move only with the ``grant`` of a
        decided approval request, or as an audited ``emergency`` move with a ``reason``.
        """
        if not _ALIAS.fullmatch(alias):
            raise LakeforgeError(
                f"alias {alias!r} is not valid: lowercase letters, digits, '_' and '-'"
            )
        check_emergency(emergency, reason)
        target = self.version(name, version)
        model, number = target.name, int(target.version)
        current = self.aliases(model)
        old = current.get(alias)
        if old == number:
            return []
        how: dict[str, Any] = {"conn": conn, "emergency": emergency, "grant": grant}
        events = []
        if alias == CHAMPION and old is not None:
            self._gate(model, CHAMPION, number, action="set_alias", **how)  # before previous
            events.append(self._move(model, PREVIOUS, current.get(PREVIOUS), old, reason, **how))
        events.append(self._move(model, alias, old, number, reason, **how))
        return events

    def remove_alias(
        self, name: str, alias: str, *, reason: str | None = None, emergency: bool = False
    ) -> AliasEvent:
        check_emergency(emergency, reason)
        model = self._model(name).name
        old = self.aliases(model).get(alias)
        if old is None:
            raise ModelNotFoundError(f"model {model} has no alias {alias!r}")
        return self._move(model, alias, old, None, reason, emergency=emergency, action="remove")

    def rollback(
        self, name: str, *, reason: str | None = None, emergency: bool = False
    ) -> builtins.list[AliasEvent]:
        """Move ``champion`` back to ``previous`` (and ``previous`` to the demoted champion).

        On a gated target a rollback is an approval request
        (:meth:`lakeforge.deployment.Approvals.request_rollback`); here it is refused
        unless it is an ``emergency``.
        """
        check_emergency(emergency, reason)
        model = self._model(name).name
        current = self.aliases(model)
        if PREVIOUS not in current:
            raise LakeforgeError(f"cannot roll back {model}: it has no {PREVIOUS!r} version")
        why = reason or "rollback"
        demoted = current.get(CHAMPION)
        how: dict[str, Any] = {"emergency": emergency, "action": "rollback"}
        events = [self._move(model, CHAMPION, demoted, current[PREVIOUS], why, **how)]
        if demoted is not None:
            events.append(self._move(model, PREVIOUS, current[PREVIOUS], demoted, why, **how))
        return events

    def _move(
        self,
        model: str,
        alias: str,
        old: int | None,
        new: int | None,
        reason: str | None,
        *,
        conn: Connection | None = None,
        emergency: bool = False,
        grant: ApprovalGrant | None = None,
        action: str = "set_alias",
    ) -> AliasEvent:
        """Move an alias in MLflow; record it and its ``alias.moved`` event in one transaction.

        Every alias move of Lakeforge comes here, so the gate is kept here: on a gated
        target ``champion`` and ``previous`` move only with a valid ``grant`` (checked in
        ``conn``, the approval decision's transaction) or as an ``emergency``; anything
        else is refused and audited. With ``conn`` the record joins the caller's transaction.
        """
        how = self._gate(
            model, alias, new, conn=conn, emergency=emergency, grant=grant, action=action
        )
        if new is None:
            self.client.delete_registered_model_alias(model, alias)
        else:
            self.client.set_registered_model_alias(model, alias, str(new))
        event = AliasEvent(
            model,
            alias,
            old,
            new,
            current_user(),
            reason,
            datetime.now(UTC),
            os_user=os_user(),
            how=how,
            request_id=None if grant is None else grant.request_id,
        )
        if conn is None:
            with self.state.connect_engine().begin() as own:
                self._record_move(own, event)
        else:
            self._record_move(conn, event)
        return event

    def _gate(
        self,
        model: str,
        alias: str,
        new: int | None,
        *,
        conn: Connection | None,
        emergency: bool,
        grant: ApprovalGrant | None,
        action: str,
    ) -> str:
        """How a move may be made (direct, approval or emergency); refuses and audits a
        move of a gated alias that has neither a valid grant nor the emergency flag."""
        how = "direct" if grant is None else "approval"
        if alias in GATED_ALIASES and self.policy(model).gated:
            if grant is not None:
                check_grant(conn, model, alias, new, grant)
            elif emergency:
                how = "emergency"
            else:
                refuse(self.state, self.target.name, model, alias, new, action)
        return how

    def _record_move(self, conn: Connection, event: AliasEvent) -> None:
        row = {
            "model": event.model,
            "alias": event.alias,
            "from_version": event.from_version,
            "to_version": event.to_version,
            "actor": event.actor,
            "reason": event.reason,
            "at": event.at,
            "os_user": event.os_user,
            "how": event.how,
            "request_id": event.request_id,
        }
        conn.execute(insert(alias_events), [row])
        payload = {k: v for k, v in row.items() if k not in ("model", "actor", "at")}
        if event.how == "emergency":
            message = (
                f"EMERGENCY move of gated {event.model}@{event.alias} to "
                f"v{event.to_version} by {event.actor} (OS user {event.os_user}): {event.reason}"
            )
            log.warning(message)  # printed on stderr even where logging is not set up
            write_audit(
                conn,
                actor=event.actor,
                action=f"emergency {event.alias}",
                outcome="done",
                model=event.model,
                version=event.to_version,
                detail=event.reason,
            )
        Outbox(self.state).emit(ALIAS_MOVED, event.model, payload, actor=event.actor, conn=conn)

    def check_drift(self, name: str | None = None) -> builtins.list[AliasEvent]:
        """Aliases moved in MLflow directly, behind Lakeforge's back, recorded as such.

        Compares each alias in MLflow with the last recorded move of ``name`` (default:
        every model with a recorded alias move, so a target without one costs no MLflow
        call); a difference is recorded as an unapproved move by
        ``unknown (outside Lakeforge)``, with an ``alias.moved`` event (``how: outside``).
        """
        if name:
            models = [self._model(name)]
        else:
            with self.state.connect_engine().connect() as conn:
                names = conn.execute(select(alias_events.c.model).distinct()).scalars().all()
            models = [m for m in self.list() if m.name in set(names)] if names else []
        found: builtins.list[AliasEvent] = []
        with self.state.connect_engine().begin() as conn:
            for registered in models:
                recorded: dict[str, int | None] = {}
                for row in conn.execute(
                    select(alias_events.c.alias, alias_events.c.to_version)
                    .where(alias_events.c.model == registered.name)
                    .order_by(alias_events.c.id)
                ):
                    recorded[row.alias] = row.to_version
                actual = {a: int(v) for a, v in registered.aliases.items()}
                for alias in sorted(set(recorded) | set(actual)):
                    if recorded.get(alias) == actual.get(alias):
                        continue
                    event = AliasEvent(
                        registered.name,
                        alias,
                        recorded.get(alias),
                        actual.get(alias),
                        OUTSIDE_ACTOR,
                        "moved in MLflow directly, not through Lakeforge: unapproved",
                        datetime.now(UTC),
                        how="outside",
                    )
                    self._record_move(conn, event)
                    found.append(event)
        for event in found:
            log.warning(
                "%s@%s was moved outside Lakeforge (v%s -> v%s): recorded as unapproved",
                event.model,
                event.alias,
                event.from_version,
                event.to_version,
            )
        return found

    def history(self, name: str) -> builtins.list[AliasEvent]:
        """Every recorded alias move of a model, oldest first."""
        model = self.model_name(name)
        with self.state.connect_engine().connect() as conn:
            rows = conn.execute(
                select(alias_events)
                .where(alias_events.c.model == model)
                .order_by(alias_events.c.id)
            )
            return [
                AliasEvent(
                    r.model,
                    r.alias,
                    r.from_version,
                    r.to_version,
                    r.actor,
                    r.reason,
                    as_utc(r.at),
                    os_user=r.os_user,
                    how=r.how or "direct",
                    request_id=r.request_id,
                )
                for r in rows
            ]

    def delete_version(self, name: str, version: int | str, *, reason: str | None = None) -> None:
        """Delete a version that no alias points at; emits ``model_version.deleted``.

        A version behind an alias (``champion``, ``previous``, ...) is refused: serving,
        scoring or a rollback may load it. Move or remove the alias first.
        """
        found = self.version(name, version)
        held = sorted(a for a, v in self.aliases(found.name).items() if v == int(found.version))
        if held:
            raise LakeforgeError(
                f"cannot delete {found.name} v{found.version}: alias(es) {', '.join(held)} "
                "point at it",
                hint=f"move or remove them first, e.g. `lakeforge -t {self.target.name} models "
                f"alias {found.name} {held[0]} --delete`",
            )
        self.client.delete_model_version(found.name, str(found.version))
        payload = {"version": int(found.version), "reason": reason, "run_id": found.run_id}
        Outbox(self.state).emit(MODEL_VERSION_DELETED, found.name, payload, actor=current_user())

    # -- deploy-models: copy a version to another target ---------------------------------

    def copy(self, ref: str, *, to: str, reason: str | None = None) -> ModelVersion:
        """Copy a version (``dev.ml.m/3``) into target ``to``'s registry as a new version.

        Artifacts, description and lineage tags travel with it; the copy records its
        source in ``lakeforge.copied_from``. Allowed only where ``targets.<to>.promote_from``
        lists the source target.
        """
        import mlflow

        match = _parse_ref(ref)
        source_name = TableName.parse(
            match["name"], default_catalog=self.target.catalog, kind="model"
        )
        source_target = self.project.target_for_catalog(source_name.catalog)
        if source_target is None:
            raise ModelNotFoundError(f"{ref}: unknown catalog {source_name.catalog!r}")
        dest_target = self.project.target(to)
        if source_target.name not in dest_target.promote_from:
            raise PermissionDeniedError(
                f"target {dest_target.name!r} does not accept model copies from "
                f"{source_target.name!r} (allowed: {', '.join(dest_target.promote_from) or 'none'})",
                hint=f"add {source_target.name!r} to targets.{dest_target.name}.promote_from",
            )
        source = Registry(self.project, source_target, self.state)
        suffix = f"/{match['version']}" if match["version"] else f"@{match['alias']}"
        version = source.resolve(f"{source_name}{suffix}")
        lineage = source.lineage(f"{version.name}/{version.version}")
        dest_name = str(TableName(dest_target.catalog, source_name.schema, source_name.table))
        with tempfile.TemporaryDirectory(prefix="lakeforge-copy-") as tmp:
            with use_target(source_target):
                local = mlflow.artifacts.download_artifacts(
                    f"models:/{version.name}/{version.version}", dst_path=tmp
                )
            origin = f"{version.name}/{version.version}"
            tags = {k: v for k, v in version.tags.items()}
            tags |= {
                TAG_COPIED_FROM: origin,
                "lakeforge.copied_from_target": source_target.name,
                "lakeforge.copied_from_run": str(version.run_id),
            }
            if lineage.commit:
                tags.setdefault("lakeforge.git.commit", lineage.commit)
            tags.setdefault(TAG_DATA, json.dumps(lineage.data_versions, sort_keys=True))
            with use_target(dest_target) as client:
                exp = experiment_id(
                    client, dest_target, experiment_name(self.project.name, "model-copies")
                )
                run_tags = {k: v for k, v in tags.items() if k.startswith("lakeforge.")}
                with mlflow.start_run(
                    experiment_id=exp, run_name=f"copy of {origin}", tags=run_tags
                ) as run:
                    mlflow.log_artifacts(local, "model")
                copied = mlflow.register_model(
                    f"runs:/{run.info.run_id}/model", dest_name, tags=tags
                )
                description = (version.description or "").strip()
                client.update_model_version(
                    dest_name,
                    copied.version,
                    description=f"{description}\n\nCopied from {origin} (target "
                    f"{source_target.name}){': ' + reason if reason else ''}".strip(),
                )
                result = client.get_model_version(dest_name, copied.version)
        dest_state = StateStore(dest_target.state_store_url)
        try:
            Outbox(dest_state).emit(
                MODEL_VERSION_CREATED,
                dest_name,
                {"version": int(result.version), "run_id": result.run_id, "copied_from": origin},
            )
        finally:
            dest_state.dispose()
        return result


def _parse_ref(ref: str) -> re.Match[str]:
    match = _REF.fullmatch(ref.strip())
    if match is None:
        raise LakeforgeError(
            f"model reference {ref!r} is not NAME/VERSION or NAME@ALIAS (e.g. dev.ml.delay/3)"
        )
    return match
