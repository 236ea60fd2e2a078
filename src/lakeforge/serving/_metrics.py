"""Prometheus metrics per endpoint, entity and version, summed over worker processes.

``lakeforge serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before its workers start, so each
worker writes its samples to shared files and ``/metrics`` on any worker shows them all.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

LABELS = ("endpoint", "entity", "version")
REQUESTS = Counter("lakeforge_serving_requests", "Requests answered.", [*LABELS, "status"])
ERRORS = Counter("lakeforge_serving_errors", "Requests answered with a status >= 400.", LABELS)
LATENCY = Histogram(
    "lakeforge_serving_latency_seconds",
    "Time from request received to response ready.",
    LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
SWAPS = Counter(
    "lakeforge_serving_model_swaps", "Hot swaps to a new version.", ["endpoint", "entity"]
)


_children: dict[tuple[str, str, str, int], tuple[Any, Any, Any]] = {}


def observe(endpoint: str, entity: str, version: str, status: int, seconds: float) -> None:
    """Count one answered request (label children are looked up once per label set)."""
    key = (endpoint, entity, version, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (
            REQUESTS.labels(endpoint, entity, version, str(status)),
            ERRORS.labels(endpoint, entity, version) if status >= 400 else None,
            LATENCY.labels(endpoint, entity, version),
        )
    requests, errors, latency = children
    requests.inc()
    if errors is not None:
        errors.inc()
    latency.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics text of every worker (or this process alone outside ``lakeforge serve``)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
