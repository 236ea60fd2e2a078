"""A project with a docs table and vector indexes over it (real MiniLM embeddings)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import lakeforge
from lakeforge import Workspace

INDEXES = """
vector_indexes:
  gold.docs_index:
    source: gold.docs
    primary_key: doc_id
    text_column: text
    columns: [kind, faa]
    embedding: {model: all-MiniLM-L6-v2}
    full_text: true
  gold.manual_index:
    source: gold.docs
    primary_key: doc_id
    text_column: text
    embedding: {model: all-MiniLM-L6-v2, dimensions: 384}
    pin: manual
"""

DOCS = [
    (1, "JFK is the largest airport in New York City", "airport", "JFK"),
    (2, "LaGuardia airport serves domestic flights to New York", "airport", "LGA"),
    (3, "Newark Liberty airport lies in New Jersey near Manhattan", "airport", "EWR"),
    (4, "United Airlines flies from Newark to Europe and Asia", "airline", "EWR"),
    (5, "Thunderstorms delayed departures at JFK for three hours", "incident", "JFK"),
    (6, "Snow and ice closed a runway at LaGuardia in January", "incident", "LGA"),
    (7, "Delta Air Lines runs a large hub at JFK", "airline", "JFK"),
    (8, "A bird strike forced a return to Newark after takeoff", "incident", "EWR"),
]


def docs_table(rows: list[tuple[int, str, str, str]] = DOCS) -> pa.Table:
    return pa.table(
        {
            "doc_id": pa.array([r[0] for r in rows], pa.int64()),
            "text": [r[1] for r in rows],
            "kind": [r[2] for r in rows],
            "faa": [r[3] for r in rows],
        }
    )


def make_project(folder: Path, extra: str = "") -> Path:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    project = lakeforge.init_project("vec", folder)
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(INDEXES + extra)
    return project


@pytest.fixture
def vproject(tmp_path: Path) -> Path:
    """A project whose gold.docs table holds DOCS (not synced yet)."""
    project = make_project(tmp_path)
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.tables.write("gold.docs", docs_table())
    return project


@pytest.fixture
def vws(vproject: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=vproject) as ws:
        yield ws


def contents(ws: Workspace, index: str = "gold.docs_index") -> dict[int, tuple[str, str]]:
    """What the index's pinned version holds: doc_id -> (text, kind)."""
    found = ws.vectors.search(index, "anything", k=1000)
    keys = found["doc_id"].to_pylist()
    assert len(keys) == len(set(keys)), f"duplicate keys in the index: {sorted(keys)}"
    return {
        key: (text, kind)
        for key, text, kind in zip(
            keys, found["text"].to_pylist(), found["kind"].to_pylist(), strict=True
        )
    }


def source(ws: Workspace) -> dict[int, tuple[str, str]]:
    table = ws.tables.read("gold.docs")
    return {
        key: (text, kind)
        for key, text, kind in zip(
            table["doc_id"].to_pylist(),
            table["text"].to_pylist(),
            table["kind"].to_pylist(),
            strict=True,
        )
    }
