"""Vector indexes declared under ``vector_indexes:`` in ``lakeforge.yaml``.

```yaml
vector_indexes:
  gold.airport_docs_index:          # schema.name; catalog = the target's catalog
    source: gold.airport_docs       # a Delta table with change data feed enabled
    primary_key: doc_id
    text_column: text               # or vector_column: embedding (precomputed)
    columns: [faa, kind]            # metadata kept for filters and results (default: all)
    embedding: {model: all-MiniLM-L6-v2}          # a local [llm] model, or
    # embedding: {endpoint: http://127.0.0.1:8080/v1, model: embed, api_key: {env: X}}
    index: {type: ivf_hnsw_sq, metric: cosine}    # or ivf_pq / none (exact search)
    full_text: true                 # a keyword index, for keyword and hybrid search
    pin: auto                       # auto: each sync pins its version; manual: `vectors pin`
    auth: {token_sha256: [9f86d08...]}  # bearer tokens for `lakeforge serve`'s query route
```

An index is synced from its source's change data feed (``lakeforge vectors sync``);
search reads the pinned version of the index.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lakeforge.project._base import Strict
from lakeforge.project._endpoints import AuthSpec
from lakeforge.project._llm import SecretRef

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_INDEX_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}$")
_SOURCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}$")
#: Column names an index keeps for itself (the stored vector and the search score).
RESERVED_COLUMNS = ("vector", "score")
IndexType = Literal["ivf_hnsw_sq", "ivf_pq", "ivf_flat", "none"]
Metric = Literal["cosine", "l2", "dot"]


def check_index_name(value: str) -> str:
    """``schema.name`` in lowercase, as under ``vector_indexes:``."""
    if not _INDEX_NAME.fullmatch(value):
        raise ValueError(
            f"vector index name {value!r} is not valid: use schema.name, lowercase letters, "
            "digits and '_', each part starting with a letter (e.g. gold.airport_docs_index)"
        )
    return value


def _ident(value: str, what: str) -> str:
    if not _IDENT.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a column name: use letters, digits and '_', "
            "starting with a letter or '_'"
        )
    return value


class EmbeddingSpec(Strict):
    """The model that embeds the text column (and text queries): local or an endpoint."""

    model: str = Field(
        min_length=1,
        description="A local embedding model of the [llm] extra (all-MiniLM-L6-v2), or the "
        "model name an endpoint knows.",
    )
    endpoint: str | None = Field(
        default=None,
        description="An OpenAI-compatible base URL (its /embeddings); default: a local model.",
    )
    api_key: SecretRef | None = None
    batch_size: int = Field(default=128, ge=1, le=4096, description="Texts per embedding call.")
    timeout_s: float = Field(default=60.0, gt=0)
    dimensions: int | None = Field(
        default=None, ge=1, le=65536, description="Vector size (default: asked of the model)."
    )

    @model_validator(mode="after")
    def _source(self) -> EmbeddingSpec:
        if self.endpoint is None:
            if self.api_key is not None:
                raise ValueError("embedding.api_key is for an endpoint: give endpoint too")
        elif not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(
                f"embedding.endpoint {self.endpoint!r} is not an http(s) URL "
                "(e.g. http://127.0.0.1:8080/v1)"
            )
        return self


class IndexParams(Strict):
    """The approximate-nearest-neighbour index and its search defaults.

    Below ``min_rows`` rows search is exact (no index is built). ``nprobes`` and
    ``refine_factor`` trade latency for recall; the defaults aim at recall@10 >= 0.95.
    """

    type: IndexType = "ivf_hnsw_sq"
    metric: Metric = "cosine"
    min_rows: int = Field(default=10_000, ge=256, description="Rows before an ANN index is built.")
    num_partitions: int | None = Field(default=None, ge=1, le=65536)
    num_sub_vectors: int | None = Field(default=None, ge=1, description="ivf_pq only.")
    m: int = Field(default=20, ge=4, le=128, description="ivf_hnsw_sq only: graph degree.")
    ef_construction: int = Field(default=300, ge=16, le=4096, description="ivf_hnsw_sq only.")
    nprobes: int = Field(default=20, ge=1, le=65536, description="Partitions searched.")
    refine_factor: int | None = Field(
        default=5, ge=1, le=100, description="Re-rank k * refine_factor candidates exactly."
    )
    ef: int | None = Field(default=None, ge=1, description="ivf_hnsw_sq only: search breadth.")

    @model_validator(mode="after")
    def _params(self) -> IndexParams:
        if self.num_sub_vectors is not None and self.type != "ivf_pq":
            raise ValueError(f"index.num_sub_vectors applies to ivf_pq, not {self.type}")
        if self.ef is not None and self.type != "ivf_hnsw_sq":
            raise ValueError(f"index.ef applies to ivf_hnsw_sq, not {self.type}")
        return self


class VectorIndexSpec(Strict):
    """One vector index: a Delta source table, its key, its text or vectors, and the index."""

    name: str = Field(default="", description="Set from the key under vector_indexes:.")
    source: str = Field(description="The source table: schema.table or catalog.schema.table.")
    primary_key: str
    text_column: str | None = None
    vector_column: str | None = None
    columns: list[str] | None = Field(
        default=None, description="Metadata columns kept for filters and results (default: all)."
    )
    embedding: EmbeddingSpec | None = None
    index: IndexParams = Field(default_factory=IndexParams)
    full_text: bool = Field(default=False, description="Keep a keyword index of the text.")
    pin: Literal["auto", "manual"] = "auto"
    auth: AuthSpec | None = Field(
        default=None,
        description="Bearer tokens `lakeforge serve` asks of queries (default: none asked).",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not _SOURCE.fullmatch(value):
            raise ValueError(
                f"source {value!r} is not a table name: use schema.table or catalog.schema.table"
            )
        return value

    @field_validator("primary_key", "text_column", "vector_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        return None if value is None else _ident(value, "column")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for column in value:
            _ident(column, "column")
        if len(set(value)) != len(value):
            raise ValueError(f"columns {value} names a column twice")
        return value

    @model_validator(mode="after")
    def _shape(self) -> VectorIndexSpec:
        if (self.text_column is None) == (self.vector_column is None):
            raise ValueError(
                "give exactly one of text_column (embedded by `embedding`) or vector_column "
                "(precomputed vectors)"
            )
        if self.text_column is not None and self.embedding is None:
            raise ValueError(
                "text_column needs an embedding model, e.g. embedding: {model: all-MiniLM-L6-v2}"
            )
        if self.full_text and self.text_column is None:
            raise ValueError("full_text: true needs a text_column to index")
        own = {self.primary_key, self.text_column, self.vector_column} - {None}
        clash = [c for c in self.columns or [] if c in own or c in RESERVED_COLUMNS]
        if clash:
            raise ValueError(
                f"columns: {', '.join(clash)} cannot be metadata (the key, text and vector "
                f"columns are kept anyway; {' and '.join(RESERVED_COLUMNS)} are reserved)"
            )
        if self.primary_key in RESERVED_COLUMNS or self.text_column in RESERVED_COLUMNS:
            raise ValueError(
                f"the key and text columns may not be named {' or '.join(RESERVED_COLUMNS)}"
            )
        return self
