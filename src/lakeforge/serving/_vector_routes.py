"""``POST /vector-indexes/{name}/query``: search a served vector index of the target.

The body is shaped like Databricks Vector Search's query::

    {"query_text": "...", "query_vector": [...], "num_results": 10,
     "columns": ["faa"], "filters": "kind = 'airport'", "query_type": "ANN"}

(``query_type``: ANN, HYBRID or FULL_TEXT). The answer carries ``manifest.columns`` and
``result.data_array`` (rows best first, ``score`` last). Search reads the index's pinned
version, re-read at most every second, so a re-pin is served without a restart.

An index with ``auth:`` answers only bearer tokens whose SHA-256 it lists. The token is
checked before the index is looked for or the body read, so a caller without a valid token
learns nothing, not even whether an index exists: while any served index has ``auth:``, a
query of an index the caller may not read (or of none) gets 401 (no token; with
``WWW-Authenticate: Bearer``) or 403 (a token no index takes), whatever the name. A caller
whose token opens some index gets 404 for the others, which lists only what it may read.
Errors: 400 (a bad body, filter or column, named), 401/403 (bearer token), 404 (unknown
index), 409 (not synced or pinned yet), 413 (body over 1 MB).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from lakeforge.serving._protocol import (
    Receive,
    RequestError,
    Scope,
    bearer_digest,
    dumps,
    read_body,
)
from lakeforge.vectors import MAX_K, IndexRef, VectorIndexError, resolve, search_ref

if TYPE_CHECKING:
    from lakeforge.project import VectorIndexSpec
    from lakeforge.serving._runtime import Runtime

MAX_BODY_MB = 1.0
_QUERY_TYPES = {"ANN": "vector", "HYBRID": "hybrid", "FULL_TEXT": "keyword"}
_FIELDS = ("query_text", "query_vector", "num_results", "columns", "filters", "query_type")
_JSON = [(b"content-type", b"application/json")]


async def query(
    runtime: Runtime, name: str, scope: Scope, receive: Receive
) -> tuple[int, bytes, list[Any]]:
    """Answer one query on index ``name``: (status, body, headers)."""
    headers = dict(scope["headers"])
    try:
        ref = _authorize(runtime, name, headers)
        body = await read_body(receive, headers, MAX_BODY_MB)
        args = _parse(body)
        try:
            found = await asyncio.to_thread(search_ref, ref, **args)
        except VectorIndexError as exc:
            status = 409 if "synced" in exc.message or "pinned" in exc.message else 400
            raise RequestError(status, exc.message, "INVALID_PARAMETER_VALUE") from None
    except RequestError as exc:
        challenge = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
        return exc.status, exc.body(), [*_JSON, *challenge]
    columns = found.column_names
    rows = [list(row.values()) for row in found.to_pylist()]
    answer = {
        "manifest": {"column_count": len(columns), "columns": [{"name": c} for c in columns]},
        "result": {"row_count": len(rows), "data_array": rows},
    }
    return 200, dumps(answer), _JSON


def _authorize(runtime: Runtime, name: str, headers: dict[bytes, bytes]) -> IndexRef:
    """Served index ``name`` if the caller may read it, else a 401, 403 or 404 that tells
    a caller without a valid token nothing about which indexes exist."""
    served = runtime.indexes
    try:
        ref: IndexRef | None = resolve(runtime.ws, name, served)
    except VectorIndexError:
        ref = None
    digest = bearer_digest(headers)
    if ref is not None and _opens(ref.spec, digest):
        return ref
    protected = [spec for spec in served.values() if spec.auth is not None]
    if protected and digest is None:
        raise RequestError(401, f"vector index {name!r} needs a bearer token", "UNAUTHENTICATED")
    if protected and not any(_opens(spec, digest) for spec in protected):
        raise RequestError(
            403, f"the token is not valid for vector index {name!r}", "PERMISSION_DENIED"
        )
    readable = ", ".join(n for n, spec in served.items() if _opens(spec, digest)) or "none"
    raise RequestError(
        404,
        f"unknown vector index {name!r} in target {runtime.ws.target.name!r} "
        f"(served to this caller: {readable})",
        "RESOURCE_DOES_NOT_EXIST",
    )


def _opens(spec: VectorIndexSpec, digest: str | None) -> bool:
    """Whether a caller with the token of ``digest`` may query the index of ``spec``."""
    return spec.auth is None or (digest is not None and digest in spec.auth.token_sha256)


def _parse(body: bytes) -> dict[str, Any]:
    """The search arguments a query body asks for (RequestError 400 naming what is wrong)."""
    try:
        given = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise RequestError(400, "the body is not JSON") from None
    if not isinstance(given, dict):
        raise RequestError(400, "the body must be a JSON object")
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise RequestError(
            400, f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_FIELDS)})"
        )
    kind = given.get("query_type", "ANN")
    if kind not in _QUERY_TYPES:
        raise RequestError(400, f"query_type {kind!r} is not one of {', '.join(_QUERY_TYPES)}")
    text, vector = given.get("query_text"), given.get("query_vector")
    if text is not None and not isinstance(text, str):
        raise RequestError(400, "query_text must be a string")
    if vector is not None and (
        not isinstance(vector, list)
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector)
    ):
        raise RequestError(400, "query_vector must be a list of numbers")
    k = given.get("num_results", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RequestError(400, f"num_results must be an integer from 1 to {MAX_K}")
    columns = given.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        raise RequestError(400, "columns must be a list of column names")
    filters = given.get("filters")
    if filters is not None and not isinstance(filters, str):
        raise RequestError(400, "filters must be a SQL predicate string, e.g. \"kind = 'x'\"")
    return {
        "text": text,
        "vector": vector,
        "k": k,
        "filter": filters,
        "query_type": _QUERY_TYPES[kind],
        "columns": columns,
    }
