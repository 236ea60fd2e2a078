"""``vector_indexes:`` in lakeforge.yaml: shapes checked when the file loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeforge.errors import ConfigError
from lakeforge.project import parse_config

BASE = """
name: p
vector_indexes:
  gold.idx:
    source: gold.docs
    primary_key: doc_id
"""


def load(extra: str) -> object:
    return parse_config(Path("lakeforge.yaml"), BASE + extra)


def test_a_full_spec_loads_with_defaults() -> None:
    config = parse_config(
        Path("lakeforge.yaml"),
        BASE
        + "    text_column: text\n    embedding: {model: all-MiniLM-L6-v2}\n"
        + "    index: {type: ivf_pq, metric: l2, num_sub_vectors: 16}\n",
    )
    spec = config.vector_indexes["gold.idx"]  # type: ignore[attr-defined]
    assert (spec.name, spec.pin, spec.index.type, spec.index.nprobes) == (
        "gold.idx",
        "auto",
        "ivf_pq",
        20,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    text_column: text\n    vector_column: v\n", "exactly one of text_column"),
        ("    columns: [a]\n", "exactly one of text_column"),
        ("    text_column: text\n", "needs an embedding model"),
        ("    vector_column: v\n    full_text: true\n", "full_text: true needs a text_column"),
        ("    vector_column: v\n    pin: sometimes\n", "pin"),
        ("    vector_column: v\n    index: {type: hnsw}\n", "index.type"),
        ("    vector_column: v\n    index: {type: ivf_pq, ef: 10}\n", "ef applies to ivf_hnsw_sq"),
        ("    vector_column: v\n    index: {nprobes: 0}\n", "nprobes"),
        ("    vector_column: v\n    index: {typo: 1}\n", "unknown field"),
        ("    vector_column: v\n    columns: [score]\n", "reserved"),
        ("    vector_column: 'v; drop'\n", "is not a column name"),
        ("    text_column: t\n    embedding: {model: m, api_key: {env: K}}\n", "give endpoint too"),
        ("    text_column: t\n    embedding: {model: m, endpoint: ftp://x}\n", "not an http"),
        (
            "    text_column: t\n    embedding: {model: m, endpoint: 'http://x', api_key: sk-1}\n",
            "never hold the key itself",
        ),
    ],
)
def test_bad_specs_name_the_field_and_the_rule(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load(extra)
    assert "sk-1" not in exc.value.message


@pytest.mark.parametrize(
    ("name", "source"), [("idx", "gold.docs"), ("Gold.Idx", "gold.docs"), ("gold.idx", "docs")]
)
def test_bad_names_are_refused(name: str, source: str) -> None:
    text = f"name: p\nvector_indexes:\n  {name}:\n    source: {source}\n    primary_key: k\n"
    with pytest.raises(ConfigError, match="not valid|not a table name"):
        parse_config(Path("lakeforge.yaml"), text + "    vector_column: v\n")
