"""Served entities: the model version each one serves now, swapped without dropping requests.

An :class:`Entity` holds its current :class:`LoadedModel`; a swap replaces that one
reference after the new version is loaded and warmed, so requests in flight finish on
the version they started with. A :class:`Batcher` thread per entity scores the requests
queued at the same moment in one call (up to ``max_batch_rows`` rows), which is where
concurrent throughput comes from; a failed batch is retried request by request, so one
bad request never fails its neighbours. A request that arrives alone, while its batcher
is idle, is scored without it (see :meth:`Batcher.alone`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from lakeforge.project import EntitySpec
from lakeforge.serving._model import LoadedModel, join, split

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.features.online import OnlineStore

log = logging.getLogger("lakeforge.serving")


@dataclass
class Entity:
    """One served entity of an endpoint and the model version it serves now."""

    endpoint: str
    spec: EntitySpec
    model_name: str
    traffic: float
    shadow: bool = False
    current: LoadedModel | None = None
    error: str | None = None
    swaps: int = 0
    batcher: Batcher | None = field(default=None, repr=False)

    @cached_property
    def name(self) -> str:
        return self.spec.entity_name

    @property
    def alias(self) -> str | None:
        return self.spec.alias

    def wanted_version(self, ws: Workspace) -> str:
        """The version the registry points this entity at now."""
        ref = f"@{self.spec.alias}" if self.spec.alias else f"/{self.spec.version}"
        return str(ws.models.resolve(self.model_name + ref).version)

    def refresh(self, ws: Workspace, online: Callable[[], OnlineStore]) -> bool:
        """Load, warm and swap in the wanted version if it changed; True when swapped."""
        try:
            version = self.wanted_version(ws)
            if self.current is not None and self.current.version == version:
                self.error = None
                return False
            loaded = load(ws, self.model_name, version, online)
        except Exception as exc:  # keep serving the old version; report on /health
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("could not load %s for entity %s", self.model_name, self.name)
            return False
        previous = self.current
        self.current = loaded  # one reference assignment: the swap is atomic
        self.error = None
        if previous is not None:
            self.swaps += 1
            log.warning(
                "entity %s: %s v%s -> v%s", self.name, self.model_name, previous.version, version
            )
        return True


def load(
    ws: Workspace, model_name: str, version: str, online: Callable[[], OnlineStore]
) -> LoadedModel:
    """Load a registered version, attach ``online()`` if it is feature-aware, warm it."""
    import mlflow

    from lakeforge.tracking import python_model_of, use_target

    with use_target(ws.target):
        pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    attach = getattr(python_model_of(pyfunc), "use_online_store", None)
    if attach is not None:
        attach(online())  # an unavailable store fails the load: the entity reports it
    loaded = LoadedModel.wrap(model_name, version, pyfunc)
    loaded.warm()
    return loaded


@dataclass
class _Item:
    model: LoadedModel
    frame: Any  # what LoadedModel.frame made: a DataFrame or a matrix
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class Batcher:
    """A thread that scores queued frames of one entity, several requests per call."""

    def __init__(self, name: str, max_rows: int) -> None:
        self.max_rows = max_rows
        self._pending = 0  # submitted, not answered yet (counted on the event loop's thread)
        self._arriving = 0  # requests deciding in :meth:`alone` right now
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    async def alone(self) -> bool:
        """Whether a request may skip the queue: nothing is queued or being scored, and no
        other request arrived with this one (each yields once, so that requests read in
        the same pass of the event loop see each other and are batched together)."""
        if self._pending:
            return False
        self._arriving += 1
        try:
            await asyncio.sleep(0)
        finally:
            self._arriving -= 1
        return not self._arriving and not self._pending

    def submit(self, model: LoadedModel, frame: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending += 1
        future.add_done_callback(self._answered)
        self._queue.put(_Item(model, frame, future, loop))
        return future

    def _answered(self, _future: asyncio.Future[Any]) -> None:
        self._pending -= 1

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, rows = [first], len(first.frame)
            stop = False
            while rows < self.max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                rows += len(item.frame)
            for model in {id(i.model): i.model for i in batch}.values():
                self._score(model, [i for i in batch if i.model is model])
            if stop:
                return

    def _score(self, model: LoadedModel, items: list[_Item]) -> None:
        if len(items) > 1:
            try:
                frame = join([i.frame for i in items])
                parts = split(model.predict_frame(frame), [len(i.frame) for i in items])
            except Exception:
                parts = None
            if parts is not None:
                for item, part in zip(items, parts, strict=True):
                    _resolve(item, result=part)
                return
        for item in items:
            try:
                _resolve(item, result=model.predict_frame(item.frame))
            except Exception as exc:
                _resolve(item, error=exc)


def _resolve(item: _Item, *, result: Any = None, error: BaseException | None = None) -> None:
    def done() -> None:
        if item.future.done():  # timed out and abandoned
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    item.loop.call_soon_threadsafe(done)
