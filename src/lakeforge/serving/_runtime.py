"""What one serving worker runs: its endpoints, their entities, watcher and logs."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakeforge.project import EndpointSpec, LLMEndpointSpec, VectorIndexSpec
from lakeforge.serving import _llm_log, _metrics
from lakeforge.serving._entities import Batcher, Entity
from lakeforge.serving._inference_log import Flusher, Spool, spool_dir
from lakeforge.serving._watch import Watcher

if TYPE_CHECKING:
    from lakeforge.features.online import OnlineStore
    from lakeforge.llm import GatewayEndpoint

log = logging.getLogger("lakeforge.serving")


@dataclass
class Endpoint:
    """One endpoint as a worker runs it."""

    name: str
    spec: EndpointSpec
    entities: list[Entity]
    shadow: Entity | None
    tokens: frozenset[str]
    flusher: Flusher | None = None
    _weights: list[float] = field(default_factory=list)

    def choose(self) -> Entity:
        """An entity drawn by the traffic shares."""
        if len(self.entities) == 1:
            return self.entities[0]
        if not self._weights:
            self._weights = [e.traffic for e in self.entities]
        return random.choices(self.entities, weights=self._weights)[0]


@dataclass
class LLMEndpoint:
    """One LLM endpoint as a worker runs it: its gateway and its log."""

    name: str
    spec: LLMEndpointSpec
    gateway: GatewayEndpoint
    tokens: frozenset[str]
    flusher: Flusher


class Runtime:
    """Everything a worker serves: endpoints, their watcher, logs and online store, and
    the specs of the vector indexes it serves (``indexes``)."""

    def __init__(
        self,
        project_dir: str,
        target: str,
        specs: dict[str, EndpointSpec],
        llm_specs: dict[str, LLMEndpointSpec] | None = None,
        index_specs: dict[str, VectorIndexSpec] | None = None,
    ) -> None:
        from lakeforge._workspace import connect

        self.ws = connect(target, project_dir=project_dir)
        self._online: OnlineStore | None = None
        self.endpoints: dict[str, Endpoint] = {}
        for name, spec in specs.items():
            self.endpoints[name] = _endpoint(self.ws, name, spec)
        self.llm: dict[str, LLMEndpoint] = {
            name: _llm_endpoint(self.ws, name, spec) for name, spec in (llm_specs or {}).items()
        }
        self.indexes: dict[str, VectorIndexSpec] = dict(index_specs or {})
        entities = [e for ep in self.endpoints.values() for e in all_entities(ep)]
        interval = min((spec.poll_interval_s for spec in specs.values()), default=5.0)
        self.watcher = Watcher(
            self.ws,
            entities,
            self.online_store,
            poll_interval_s=interval,
            on_swap=lambda e: _metrics.SWAPS.labels(e.endpoint, e.name).inc(),
        )
        self.shadow_tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Load every entity, then keep watching the registry."""
        self.watcher.start()
        # What is loaded now (libraries, models) lives as long as the worker: keep it out of
        # the collector's full passes, which otherwise stall requests for 100+ ms.
        gc.collect()
        gc.freeze()

    def online_store(self) -> OnlineStore:
        """The target's online store, opened when the first feature-aware model loads."""
        if self._online is None:
            from lakeforge.features import online_store

            self._online = online_store(self.ws)
        return self._online

    @property
    def ready(self) -> bool:
        return self.watcher.ready.is_set()

    async def close(self) -> None:
        """Drain shadow calls, stop the watcher and batchers, flush every log."""
        if self.shadow_tasks:
            await asyncio.wait(self.shadow_tasks, timeout=10)
        self.watcher.stop()
        for endpoint in self.endpoints.values():
            for entity in all_entities(endpoint):
                assert entity.batcher is not None
                entity.batcher.stop()
            if endpoint.flusher is not None:
                endpoint.flusher.close()
        for llm in self.llm.values():
            await llm.gateway.aclose()
            llm.flusher.close()
        if self._online is not None:
            self._online.close()
        self.ws.close()


def all_entities(endpoint: Endpoint) -> list[Entity]:
    return [*endpoint.entities, *([endpoint.shadow] if endpoint.shadow else [])]


def _endpoint(ws: Any, name: str, spec: EndpointSpec) -> Endpoint:
    entities = [
        Entity(name, e, ws.models.model_name(e.model), e.traffic) for e in spec.served_entities
    ]
    shadow = (
        Entity(name, spec.shadow, ws.models.model_name(spec.shadow.model), 0.0, shadow=True)
        if spec.shadow
        else None
    )
    endpoint = Endpoint(
        name,
        spec,
        entities,
        shadow,
        frozenset(spec.auth.token_sha256) if spec.auth else frozenset(),
    )
    for entity in all_entities(endpoint):
        entity.batcher = Batcher(f"{name}-{entity.name}", spec.max_batch_rows)
    if spec.inference_table is not None:
        table = spec.inference_table
        endpoint.flusher = Flusher(
            ws,
            table.table,
            Spool(spool_dir(ws, name)),
            interval_s=table.flush_interval_s,
            max_rows=table.flush_rows,
        )
    return endpoint


def _llm_endpoint(ws: Any, name: str, spec: LLMEndpointSpec) -> LLMEndpoint:
    from lakeforge.llm import GatewayEndpoint

    prompted = spec.prompt is not None or any(m.prompt for m in spec.models)
    spool = spool_dir(ws, name)
    gateway = GatewayEndpoint(
        name,
        spec,
        prompts=ws.prompts.source() if prompted else None,
        # the workers of this host share their rate limits through a file here
        limits_dir=spool.parent.parent / "limits" / os.uname().nodename,
        target=ws.target,  # the registry of provider: mlflow routes, the store of traces
    )
    flusher = Flusher(
        ws,
        spec.table(name),
        Spool(spool),
        interval_s=spec.logging.flush_interval_s,
        max_rows=spec.logging.flush_rows,
        committer=_llm_log.commit,
    )
    tokens = frozenset(spec.auth.token_sha256) if spec.auth else frozenset()
    return LLMEndpoint(name, spec, gateway, tokens, flusher)
