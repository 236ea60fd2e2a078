"""Prompts, versioned in the MLflow prompt registry of each target.

Names are qualified like models, ``catalog.schema.name`` (``schema.name`` gets the
target's catalog); MLflow OSS accepts dots in prompt names, so they are stored as they
are. Prompts and registered models share MLflow's namespace: a prompt cannot take a
model's name. References: ``name`` (the newest version), ``name/3``, ``name@alias``,
each optionally prefixed ``prompts:/``.

An alias move emits ``alias.moved`` (payload ``kind: prompt``) in the target's outbox,
as a model's does. :meth:`Prompts.source` is what an LLM endpoint reads its system
prompt through: cached, and reloaded within seconds of an alias move.
"""

from __future__ import annotations

import builtins
import difflib
import json
import logging
import math
import re
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeforge._identity import current_user
from lakeforge.errors import LakeforgeError, PermissionDeniedError, TableNameError
from lakeforge.events import ALIAS_MOVED, Outbox
from lakeforge.lakehouse import TableName
from lakeforge.tracking import TAG_COPIED_FROM, client_for

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import PromptVersion

    from lakeforge.project import Project, Target
    from lakeforge.state import StateStore

TAG_COPIED_FROM_TARGET = "lakeforge.copied_from_target"
LATEST = "latest"
log = logging.getLogger("lakeforge.llm")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_REF = re.compile(
    r"(?:prompts:/)?(?P<name>[^/@\s]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))?"
)
_REF_FORMS = "NAME, NAME/VERSION or NAME@ALIAS, optionally prefixed prompts:/"


class PromptNotFoundError(LakeforgeError):
    """A prompt, version or alias that does not exist."""


@dataclass(frozen=True)
class PromptInfo:
    """A registered prompt: its newest version and where its aliases point."""

    name: str
    latest: int
    aliases: dict[str, int]
    description: str | None


@dataclass(frozen=True)
class PromptRef:
    """A parsed reference: a qualified name and a version, an alias, or neither (newest)."""

    name: str
    version: int | None = None
    alias: str | None = None


class Prompts:
    """The prompt registry of one target (``ws.prompts``)."""

    def __init__(self, project: Project, target: Target, state: StateStore) -> None:
        self.project = project
        self.target = target
        self.state = state
        self._client: MlflowClient | None = None
        self._sources: weakref.WeakSet[CachedPromptSource] = weakref.WeakSet()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.target)
        return self._client

    # -- names and references -----------------------------------------------------------

    def prompt_name(self, name: str) -> str:
        """A validated ``catalog.schema.name`` of this target (two parts get its catalog)."""
        try:
            parsed = TableName.parse(name, default_catalog=self.target.catalog, kind="model")
        except TableNameError:
            raise LakeforgeError(
                f"prompt name {name!r} is not valid: use catalog.schema.name, or schema.name "
                f"in target {self.target.name!r}; each part letters, digits and '_', starting "
                f"with a letter or '_' (e.g. {self.target.catalog}.prompts.support)"
            ) from None
        if parsed.catalog != self.target.catalog:
            owner = self.project.target_for_catalog(parsed.catalog)
            where = f"target {owner.name!r}" if owner else "no target of this project"
            raise LakeforgeError(
                f"prompt {parsed} is in catalog {parsed.catalog!r} ({where}), not in target "
                f"{self.target.name!r} (catalog {self.target.catalog!r})",
                hint=f"use -t {owner.name}" if owner else None,
            )
        return str(parsed)

    def parse(self, ref: str) -> PromptRef:
        """``name``, ``name/3``, ``name@alias`` or ``prompts:/...`` to a qualified reference."""
        match = _REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
        if match is None:
            raise LakeforgeError(
                f"prompt reference {ref!r} is not {_REF_FORMS} "
                f"(e.g. {self.target.catalog}.prompts.support@production)"
            )
        version = match["version"]
        return PromptRef(
            self.prompt_name(match["name"]),
            None if version is None else int(version),
            match["alias"],
        )

    # -- reading ------------------------------------------------------------------------

    def _check_exists(self, name: str) -> None:
        if self.client.get_prompt(name) is not None:
            return
        known = [p.name for p in self._search()]
        close = difflib.get_close_matches(name, known, n=3)
        raise PromptNotFoundError(
            f"prompt {name} is not registered in target {self.target.name!r}",
            hint=f"did you mean {', '.join(close)}?" if close else "`lakeforge prompts list`",
        )

    def load(self, ref: str) -> PromptVersion:
        """The prompt version a reference names (a bare name: the newest version)."""
        from mlflow.exceptions import MlflowException

        parsed = self.parse(ref)
        self._check_exists(parsed.name)
        if parsed.alias not in (None, LATEST):
            try:
                return self.client.get_prompt_version_by_alias(parsed.name, parsed.alias)
            except MlflowException:
                aliases = self._aliases(parsed.name)
                raise PromptNotFoundError(
                    f"prompt {parsed.name} has no alias {parsed.alias!r} (aliases: "
                    f"{', '.join(sorted(aliases)) or 'none'})"
                ) from None
        numbers = [int(v.version) for v in self._search_versions(parsed.name)]
        wanted = numbers[0] if parsed.version is None else parsed.version
        try:
            found = self.client.get_prompt_version(parsed.name, wanted)
        except MlflowException:
            found = None
        if found is None:
            raise PromptNotFoundError(
                f"prompt {parsed.name} has no version {wanted} (versions: "
                f"{', '.join(map(str, reversed(numbers)))})"
            )
        return found

    def _search(self) -> builtins.list[Any]:
        found, token = [], None
        while True:
            page = self.client.search_prompts(page_token=token)
            found += list(page)
            token = page.token
            if not token:
                return found

    def _search_versions(self, qualified: str) -> builtins.list[PromptVersion]:
        """Versions newest first, without their aliases (MLflow's search leaves them out)."""
        found: builtins.list[PromptVersion] = []
        token = None
        while True:
            page = self.client.search_prompt_versions(qualified, page_token=token)
            found += list(page)
            token = page.token
            if not token:
                return sorted(found, key=lambda v: int(v.version), reverse=True)

    def _versions(self, qualified: str) -> builtins.list[PromptVersion]:
        """Versions newest first, each read on its own to carry its aliases."""
        return [
            self.client.get_prompt_version(qualified, v.version)
            for v in self._search_versions(qualified)
        ]

    def _aliases(self, qualified: str) -> dict[str, int]:
        return {a: int(v.version) for v in self._versions(qualified) for a in v.aliases}

    def versions(self, name: str) -> builtins.list[PromptVersion]:
        """Versions of a prompt, newest first."""
        qualified = self.prompt_name(name)
        self._check_exists(qualified)
        return self._versions(qualified)

    def aliases(self, name: str) -> dict[str, int]:
        """Where each alias of a prompt points."""
        qualified = self.prompt_name(name)
        self._check_exists(qualified)
        return self._aliases(qualified)

    def list(self) -> builtins.list[PromptInfo]:
        """Registered prompts of this target, by name."""
        infos = []
        for prompt in self._search():
            versions = self._versions(prompt.name)
            infos.append(
                PromptInfo(
                    prompt.name,
                    int(versions[0].version),
                    {a: int(v.version) for v in versions for a in v.aliases},
                    prompt.description,
                )
            )
        return sorted(infos, key=lambda info: info.name)

    def diff(self, a: str, b: str) -> str:
        """A unified diff of two versions' templates (empty when they are equal)."""
        old, new = self.load(a), self.load(b)
        lines = difflib.unified_diff(
            template_text(old).splitlines(),
            template_text(new).splitlines(),
            fromfile=f"{old.name}/{old.version}",
            tofile=f"{new.name}/{new.version}",
            lineterm="",  # a last line without a newline still ends its diff line
        )
        return "".join(f"{line}\n" for line in lines)

    # -- writing ------------------------------------------------------------------------

    def register(
        self,
        name: str,
        template: str,
        *,
        commit_message: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> PromptVersion:
        """Register ``template`` as the next version of prompt ``name`` (the first creates it)."""
        from mlflow.exceptions import MlflowException

        qualified = self.prompt_name(name)
        if not isinstance(template, str) or not template.strip():
            raise LakeforgeError(f"prompt {qualified}: the template must be non-empty text")
        try:
            return self.client.register_prompt(
                qualified, template, commit_message=commit_message, tags=tags
            )
        except MlflowException as exc:
            raise LakeforgeError(f"cannot register prompt {qualified}: {exc.message}") from None

    def set_alias(self, name: str, alias: str, version: int) -> PromptVersion:
        """Point ``alias`` at ``version``; a move emits ``alias.moved`` (``kind: prompt``)."""
        if not _ALIAS.fullmatch(alias) or alias == LATEST:
            raise LakeforgeError(
                f"alias {alias!r} is not valid: lowercase letters, digits, '_' and '-', "
                f"starting with a letter; {LATEST!r} is reserved (the newest version)"
            )
        target = self.load(f"{self.prompt_name(name)}/{int(version)}")
        old = self._aliases(target.name).get(alias)
        if old == int(target.version):
            return target
        self.client.set_prompt_alias(target.name, alias, int(target.version))
        for source in builtins.list(self._sources):
            source.invalidate(target.name)
        payload = {
            "kind": "prompt",
            "alias": alias,
            "from_version": old,
            "to_version": int(target.version),
        }
        Outbox(self.state).emit(ALIAS_MOVED, target.name, payload, actor=current_user())
        return self.load(f"{target.name}/{target.version}")

    def copy(self, ref: str, *, to: str) -> PromptVersion:
        """Copy a version into target ``to``'s registry as its next version.

        The copy keeps the template, commit message, tags, response format and model
        config, and records its source in ``lakeforge.copied_from``
        (``dev.prompts.support/2``). Each copy is a new version. Allowed only where
        ``targets.<to>.promote_from`` lists this target.
        """
        from mlflow.exceptions import MlflowException

        version = self.load(ref)
        dest = self.project.target(to)
        if self.target.name not in dest.promote_from:
            raise PermissionDeniedError(
                f"target {dest.name!r} does not accept prompt copies from {self.target.name!r} "
                f"(allowed: {', '.join(dest.promote_from) or 'none'})",
                hint=f"add {self.target.name!r} to targets.{dest.name}.promote_from",
            )
        parsed = TableName.parse(version.name, kind="model")
        dest_name = str(TableName(dest.catalog, parsed.schema, parsed.table))
        tags = dict(version.tags) | {
            TAG_COPIED_FROM: f"{version.name}/{version.version}",
            TAG_COPIED_FROM_TARGET: self.target.name,
        }
        try:
            return client_for(dest).register_prompt(
                dest_name,
                version.template,
                commit_message=version.commit_message,
                tags=tags,
                response_format=version.response_format,
                model_config=version.model_config,
            )
        except MlflowException as exc:
            raise LakeforgeError(
                f"cannot copy prompt {version.name}/{version.version} to {dest_name}: {exc.message}"
            ) from None

    def source(self, *, ttl_s: float = 5.0) -> CachedPromptSource:
        """The ``PromptSource`` an LLM endpoint resolves its prompt reference through."""
        created = CachedPromptSource(self, ttl_s=ttl_s)
        self._sources.add(created)
        return created


def template_text(version: PromptVersion) -> str:
    """A version's template as text (a chat template as indented JSON)."""
    template = version.template
    return template if isinstance(template, str) else json.dumps(template, indent=2)


class CachedPromptSource:
    """``"name@alias"`` -> (template, ``"name/version"``), cached ``ttl_s`` seconds.

    Versions (``name/3``) never change and stay cached; an alias (or a bare name, the
    newest version) is looked up again once its entry is ``ttl_s`` old, and at once after
    :meth:`Prompts.set_alias` in this process or :meth:`invalidate`. While the registry
    cannot be read, the version last read keeps being served (logged).
    """

    def __init__(self, prompts: Prompts, *, ttl_s: float = 5.0) -> None:
        self._prompts = prompts
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, _Entry] = {}

    def __call__(self, ref: str) -> tuple[str, str]:
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(ref)
        if entry is not None and now < entry.expires:
            return entry.template, entry.version
        parsed = self._prompts.parse(ref)
        try:
            found = self._prompts.load(ref)
        except PromptNotFoundError:
            raise
        except Exception:
            if entry is None:
                raise
            log.warning("cannot reload prompt %s; serving %s", ref, entry.version, exc_info=True)
            return entry.template, entry.version
        if not isinstance(found.template, str):
            raise LakeforgeError(
                f"prompt {found.name}/{found.version} is a chat prompt; an LLM endpoint's "
                "prompt must be a text prompt (its system message)"
            )
        fixed = parsed.version is not None
        entry = _Entry(
            found.name,
            found.template,
            f"{found.name}/{found.version}",
            math.inf if fixed else now + self._ttl_s,
        )
        with self._lock:
            self._cache[ref] = entry
        return entry.template, entry.version

    def invalidate(self, name: str | None = None) -> None:
        """Forget where the aliases of prompt ``name`` (default: every prompt) point."""
        with self._lock:
            for ref, entry in builtins.list(self._cache.items()):
                if (name is None or entry.name == name) and entry.expires != math.inf:
                    del self._cache[ref]


@dataclass(frozen=True)
class _Entry:
    name: str
    template: str
    version: str
    expires: float
