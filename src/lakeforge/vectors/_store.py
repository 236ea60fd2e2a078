"""Where each index lives and how it is opened: one LanceDB database per target and schema.

An index ``gold.docs`` of target ``dev`` is the LanceDB table ``docs`` in the database
``<root>/_vectors/dev/gold``: each target keeps its own indexes under its own root.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakeforge.errors import LakeforgeError
from lakeforge.project import VectorIndexSpec

if TYPE_CHECKING:
    from lancedb.db import DBConnection
    from lancedb.table import Table

    from lakeforge._workspace import Workspace

VECTORS_DIR = "_vectors"
VECTOR = "vector"
SCORE = "score"
_OPEN_VERSIONS = 16  # checked-out table versions kept open per process (search reads them)


class VectorIndexError(LakeforgeError):
    """A vector index that cannot be synced or searched as asked."""


def require_lancedb() -> Any:
    """The ``lancedb`` module, or an error naming the extra that installs it."""
    try:
        import lancedb
    except ImportError:
        raise VectorIndexError(
            "vector indexes need LanceDB: pip install 'lakeforge[vectors]'"
        ) from None
    return lancedb


@dataclass(frozen=True)
class IndexRef:
    """A declared index of a target: its spec and where its LanceDB table lives."""

    spec: VectorIndexSpec
    qualified: str  # catalog.schema.name
    uri: str  # the LanceDB database (a folder or an object-store URI)
    table: str  # the LanceDB table in it
    storage_options: tuple[tuple[str, str], ...] = ()


def resolve(
    ws: Workspace, name: str, declared: Mapping[str, VectorIndexSpec] | None = None
) -> IndexRef:
    """The declared index ``name`` (``schema.name``, or with this target's catalog): of
    ``declared`` (a deployment's, which ``lakeforge serve`` runs), else of lakeforge.yaml."""
    declared = ws.project.config.vector_indexes if declared is None else declared
    catalog = ws.target.catalog
    short = name.strip().lower() if isinstance(name, str) else ""
    parts = short.split(".")
    if len(parts) == 3 and parts[0] == catalog:
        short = ".".join(parts[1:])
    spec = declared.get(short)
    if spec is None:
        known = (
            ", ".join(sorted(declared)) or "none declared under vector_indexes: in lakeforge.yaml"
        )
        raise VectorIndexError(
            f"unknown vector index {name!r} in target {ws.target.name!r} (declared: {known})"
        )
    schema, table = short.split(".")
    return IndexRef(
        spec=spec,
        qualified=f"{catalog}.{short}",
        uri=ws.target.path(VECTORS_DIR, catalog, schema),
        table=table,
        storage_options=tuple(sorted(ws.target.storage_options.items())),
    )


_CONNECTIONS: dict[tuple[str, tuple[tuple[str, str], ...]], DBConnection] = {}
_VERSIONS: OrderedDict[tuple[str, str, int], Table] = OrderedDict()
_LOCK = threading.Lock()


def connect(ref: IndexRef) -> DBConnection:
    """The LanceDB connection of ``ref``'s database (one per process)."""
    key = (ref.uri, ref.storage_options)
    with _LOCK:
        if key not in _CONNECTIONS:
            lancedb = require_lancedb()
            options = dict(ref.storage_options) or None
            _CONNECTIONS[key] = lancedb.connect(ref.uri, storage_options=options)
        return _CONNECTIONS[key]


def open_table(ref: IndexRef) -> Table | None:
    """The index's LanceDB table at its latest version, or None before its first sync."""
    db = connect(ref)
    try:
        return db.open_table(ref.table)
    except (FileNotFoundError, ValueError):
        return None


def open_version(ref: IndexRef, version: int) -> Table:
    """A read-only view of the index at ``version`` (cached: search reads it often)."""
    key = (ref.uri, ref.table, version)
    with _LOCK:
        found = _VERSIONS.get(key)
        if found is not None:
            _VERSIONS.move_to_end(key)
            return found
    table = open_table(ref)
    if table is None:
        raise not_synced(ref)
    try:
        table.checkout(version)
    except (ValueError, RuntimeError, OSError) as exc:
        raise VectorIndexError(
            f"vector index {ref.qualified} has no version {version} ({exc}); "
            f"see `lakeforge vectors history {ref.spec.name}`"
        ) from None
    with _LOCK:
        _VERSIONS[key] = table
        while len(_VERSIONS) > _OPEN_VERSIONS:
            _VERSIONS.popitem(last=False)
    return table


def not_synced(ref: IndexRef) -> VectorIndexError:
    return VectorIndexError(
        f"vector index {ref.qualified} has not been synced yet",
        hint=f"run `lakeforge vectors sync {ref.spec.name}`",
    )


def plain_type(kind: pa.DataType) -> pa.DataType:
    """``kind`` without Arrow view or large variants (LanceDB's filters want the plain ones)."""
    if pa.types.is_string_view(kind) or pa.types.is_large_string(kind):
        return pa.string()
    if pa.types.is_binary_view(kind) or pa.types.is_large_binary(kind):
        return pa.binary()
    return kind


def index_schema(ref: IndexRef, source: pa.Schema, dimensions: int) -> pa.Schema:
    """The index's columns: key, text, metadata (from ``source``) and the vector."""
    spec = ref.spec
    names = source.names
    wanted = [spec.primary_key, *([spec.text_column] if spec.text_column else [])]
    missing = [c for c in [*wanted, *(spec.columns or [])] if c not in names]
    if spec.vector_column is not None and spec.vector_column not in names:
        missing.append(spec.vector_column)
    if missing:
        raise VectorIndexError(
            f"vector index {ref.qualified}: source {spec.source} has no column(s) "
            f"{', '.join(missing)} (columns: {', '.join(names)})"
        )
    own = {*wanted, spec.vector_column}
    metadata = (
        spec.columns
        if spec.columns is not None
        else [c for c in names if c not in own and c not in (VECTOR, SCORE)]
    )
    fields = [pa.field(c, plain_type(source.field(c).type)) for c in [*wanted, *metadata]]
    return pa.schema([*fields, pa.field(VECTOR, pa.list_(pa.float32(), dimensions))])


def forget_versions(ref: IndexRef) -> None:
    """Drop cached views of ``ref`` (after it is recreated)."""
    with _LOCK:
        for key in [k for k in _VERSIONS if k[:2] == (ref.uri, ref.table)]:
            del _VERSIONS[key]
