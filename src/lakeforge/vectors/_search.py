"""Search an index at its pinned version: vector, keyword (full-text) or hybrid (RRF).

Results are an Arrow table, best first: the primary key, the text column, the metadata
columns (or those asked for) and ``score`` (higher is better: ``1 - distance`` for cosine
and dot, ``1 / (1 + distance)`` for l2, BM25 for keyword, reciprocal-rank fusion for hybrid).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.vectors import _embed
from lakeforge.vectors._filters import check_filter
from lakeforge.vectors._pins import pinned_version
from lakeforge.vectors._store import (
    SCORE,
    VECTOR,
    IndexRef,
    VectorIndexError,
    not_synced,
    open_version,
    resolve,
)

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

QueryType = Literal["vector", "hybrid", "keyword"]
QUERY_TYPES: tuple[QueryType, ...] = ("vector", "hybrid", "keyword")
MAX_K = 1000
_MAX_TEXT = 10_000


def search(
    ws: Workspace,
    name: str,
    text: str | None = None,
    *,
    vector: Sequence[float] | None = None,
    k: int = 10,
    filter: str | None = None,
    query_type: QueryType = "vector",
    columns: list[str] | None = None,
    version: int | None = None,
) -> pa.Table:
    """The ``k`` rows of index ``name`` nearest ``text`` (or ``vector``), best first.

    ``filter`` is a SQL predicate on metadata columns; ``version`` reads that index
    version instead of the pinned one.
    """
    return search_ref(
        resolve(ws, name),
        text,
        vector=vector,
        k=k,
        filter=filter,
        query_type=query_type,
        columns=columns,
        version=version,
    )


def search_ref(
    ref: IndexRef,
    text: str | None = None,
    *,
    vector: Sequence[float] | None = None,
    k: int = 10,
    filter: str | None = None,
    query_type: QueryType = "vector",
    columns: list[str] | None = None,
    version: int | None = None,
) -> pa.Table:
    """:func:`search` on a resolved index (what the serving route calls)."""
    spec, where = ref.spec, f"vector index {ref.qualified}"
    if query_type not in QUERY_TYPES:
        raise VectorIndexError(
            f"{where}: query_type {query_type!r} is not one of {', '.join(QUERY_TYPES)}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise VectorIndexError(f"{where}: k must be an integer from 1 to {MAX_K}, got {k!r}")
    if text is not None and (not isinstance(text, str) or len(text) > _MAX_TEXT):
        raise VectorIndexError(f"{where}: text must be a string of at most {_MAX_TEXT} characters")
    if query_type != "vector" and not spec.full_text:
        raise VectorIndexError(
            f"{where}: {query_type} search needs a keyword index (full_text: true in its spec)"
        )
    if query_type != "vector" and not (text and text.strip()):
        raise VectorIndexError(f"{where}: {query_type} search needs query text")
    if query_type != "keyword" and vector is None and text is None:
        raise VectorIndexError(f"{where}: give the query text or a query vector")
    if version is None:
        version = pinned_version(ref)
        if version is None:
            raise (
                not_synced(ref)
                if spec.pin == "auto"
                else VectorIndexError(
                    f"{where} has no pinned version",
                    hint=f"pin one: `lakeforge vectors pin {spec.name} VERSION`",
                )
            )
    table = open_version(ref, version)
    available = [c for c in table.schema.names if c != VECTOR]
    wanted = _columns(ref, available, columns)
    predicate = None if filter is None else check_filter(filter, available, where=where)
    query_vector = None
    if query_type != "keyword":
        size = table.schema.field(VECTOR).type.list_size
        query_vector = _query_vector(ref, text, vector, size)
    if query_type == "keyword":
        builder: Any = table.search(text, query_type="fts")
    elif query_type == "hybrid":
        assert query_vector is not None and text is not None
        builder = table.search(query_type="hybrid").vector(query_vector).text(text)
    else:
        builder = table.search(query_vector, query_type="vector")
    if query_type != "keyword":
        params = spec.index
        builder = builder.distance_type(params.metric).nprobes(params.nprobes)
        if params.refine_factor is not None:
            builder = builder.refine_factor(params.refine_factor)
        if params.ef is not None:
            builder = builder.ef(params.ef)
    if predicate is not None:
        builder = builder.where(predicate, prefilter=True)
    # the score column is asked for by name (LanceDB warns otherwise); hybrid search
    # selects for its two sub-queries itself
    scores = {"vector": ["_distance"], "keyword": ["_score"], "hybrid": None}[query_type]
    if scores is not None:
        builder = builder.select([*wanted, *scores])
    try:
        found: pa.Table = builder.limit(k).to_arrow()
    except (ValueError, RuntimeError, OSError) as exc:
        raise VectorIndexError(f"{where}: search failed ({_first_line(exc)})") from None
    return _scored(found, wanted, query_type, spec.index.metric)


def _columns(ref: IndexRef, available: list[str], asked: list[str] | None) -> list[str]:
    own = [ref.spec.primary_key, *([ref.spec.text_column] if ref.spec.text_column else [])]
    if asked is None:
        return available
    unknown = [c for c in asked if c not in available]
    if unknown:
        raise VectorIndexError(
            f"vector index {ref.qualified}: unknown column(s) {', '.join(unknown)} "
            f"(columns: {', '.join(available)})"
        )
    return [*own, *(c for c in asked if c not in own)]


def _query_vector(
    ref: IndexRef, text: str | None, vector: Sequence[float] | None, size: int
) -> list[float]:
    if vector is None:
        if ref.spec.embedding is None:
            raise VectorIndexError(
                f"vector index {ref.qualified} has precomputed vectors and no embedding model: "
                "search it with vector=..., or declare embedding: to search by text"
            )
        return [float(x) for x in _embed.embed(ref.spec.embedding, [text or ""])[0]]
    values = np.asarray(vector, dtype=np.float32)
    if values.ndim != 1 or values.shape[0] != size or not np.isfinite(values).all():
        raise VectorIndexError(
            f"vector index {ref.qualified}: the query vector must be {size} finite numbers "
            f"(got shape {list(values.shape)})"
        )
    return [float(x) for x in values]


def _scored(found: pa.Table, wanted: list[str], query_type: str, metric: str) -> pa.Table:
    if query_type == "hybrid":
        score = found["_relevance_score"]
    elif query_type == "keyword":
        score = found["_score"]
    elif metric == "l2":
        score = pc.divide(1.0, pc.add(found["_distance"].cast(pa.float64()), 1.0))
    else:
        score = pc.subtract(1.0, found["_distance"].cast(pa.float64()))
    return found.select(wanted).append_column(SCORE, score.cast(pa.float64()))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
