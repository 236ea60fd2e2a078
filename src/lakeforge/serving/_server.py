"""``lakeforge serve``: check the endpoints, recover inference and LLM logs, run the workers.

Model endpoints (``endpoints:``), LLM endpoints (``llm_endpoints:``) and vector indexes
(``vector_indexes:``) are served side by side by the same workers; ``-e NAME`` selects any
of them. The workers get the specs from here (never from the working copy): the caller
chooses them, from a deployment on a production-mode target.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lakeforge.errors import ConfigError
from lakeforge.project import EndpointSpec, LLMEndpointSpec, ServedEntitySpec, VectorIndexSpec
from lakeforge.serving import _llm_log
from lakeforge.serving._inference_log import create_table, recover, spool_dir

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

AnySpec = EndpointSpec | LLMEndpointSpec | VectorIndexSpec
_REF = re.compile(r"^(?P<model>[^@/]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


def endpoint_for_model(ref: str) -> tuple[str, EndpointSpec]:
    """An ad-hoc endpoint serving ``name@alias`` or ``name/3`` (named after the model)."""
    match = _REF.fullmatch(ref)
    if match is None:
        raise ConfigError(f"--model {ref!r} is not NAME@ALIAS or NAME/VERSION")
    entity = ServedEntitySpec(
        model=match["model"],
        alias=match["alias"],
        version=int(match["version"]) if match["version"] else None,
    )
    return match["model"].rsplit(".", 1)[-1], EndpointSpec(served_entities=[entity])


def select_endpoints(
    declared: Mapping[str, AnySpec], names: list[str] | None, *, source: str = "lakeforge.yaml"
) -> dict[str, AnySpec]:
    """What to serve (model and LLM endpoints, vector indexes by their ``schema.name``):
    ``names`` of ``declared``, or all of them.

    ``source`` names where ``declared`` comes from (the working copy or a deployment).
    """
    if not declared:
        raise ConfigError(
            f"{source} declares no endpoints or vector indexes",
            hint="add an `endpoints:`, `llm_endpoints:` or `vector_indexes:` section (and "
            "deploy it on a production-mode target), or serve one model with --model NAME@ALIAS",
        )
    unknown = [n for n in names or [] if n not in declared]
    if unknown:
        raise ConfigError(
            f"unknown endpoint(s) {', '.join(unknown)} in {source} "
            f"(declared endpoints and vector indexes: {', '.join(declared)})"
        )
    return {n: declared[n] for n in names} if names else dict(declared)


def prepare(ws: Workspace, endpoints: dict[str, AnySpec]) -> dict[str, int]:
    """Check every served model exists, create inference and LLM log tables, recover
    spooled logs (vector indexes need nothing: an unsynced one answers 409).

    Returns the rows recovered per endpoint from an earlier run that stopped uncleanly.
    """
    recovered: dict[str, int] = {}
    for name, spec in endpoints.items():
        if isinstance(spec, VectorIndexSpec):
            continue
        if isinstance(spec, LLMEndpointSpec):
            table = spec.table(name)
            _llm_log.create_tables(ws, table)
            recovered[name] = recover(ws, table, spool_dir(ws, name), _llm_log.commit)
            continue
        entities = [*spec.served_entities, *([spec.shadow] if spec.shadow else [])]
        for entity in entities:
            ref = f"@{entity.alias}" if entity.alias else f"/{entity.version}"
            try:
                ws.models.resolve(entity.model + ref)
            except Exception as exc:
                raise ConfigError(f"endpoint {name}, entity {entity.entity_name}: {exc}") from None
        if spec.inference_table is not None:
            create_table(ws, spec.inference_table.table)
            recovered[name] = recover(ws, spec.inference_table.table, spool_dir(ws, name))
    return recovered


def serve(
    ws: Workspace,
    endpoints: dict[str, AnySpec],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
) -> None:
    """Run ``workers`` server processes until SIGINT/SIGTERM, then drain and flush."""
    import uvicorn

    os.environ["LAKEFORGE_PROJECT_DIR"] = str(ws.project.directory)
    os.environ["LAKEFORGE_TARGET"] = ws.target.name
    for variable, kind in (
        ("LAKEFORGE_SERVE_ENDPOINTS", EndpointSpec),
        ("LAKEFORGE_SERVE_LLM_ENDPOINTS", LLMEndpointSpec),
        ("LAKEFORGE_SERVE_VECTOR_INDEXES", VectorIndexSpec),
    ):
        os.environ[variable] = json.dumps(
            {
                name: spec.model_dump(mode="json")
                for name, spec in endpoints.items()
                if isinstance(spec, kind)
            }
        )
    stopped_by: int | None = None
    in_main = threading.current_thread() is threading.main_thread()  # where signals go
    previous = {sig: signal.signal(sig, _stop) for sig in _STOP_SIGNALS if in_main}
    try:
        with tempfile.TemporaryDirectory(prefix="lakeforge-metrics-") as metrics:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
            uvicorn.run(
                "lakeforge.serving._app:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=30,
            )
    except _Stopped as stop:
        stopped_by = stop.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped_by is not None:
        signal.raise_signal(stopped_by)  # the metrics folder is gone: now stop as signalled


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopped(BaseException):
    """A stop signal, raised so that ``with`` blocks clean up before the process ends."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame: object) -> None:
    # uvicorn handles stop signals itself while it serves, then raises them again: they
    # reach this handler only outside its graceful shutdown (and after it).
    raise _Stopped(signum)
