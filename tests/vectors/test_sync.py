"""Sync from the change data feed: inserts, updates, deletes and overwrites reflected."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakeforge import Workspace
from lakeforge.vectors import VectorIndexError
from tests.vectors.conftest import DOCS, contents, docs_table, source


def test_first_sync_is_a_snapshot_then_changes_follow(vws: Workspace) -> None:
    first = vws.vectors.sync("gold.docs_index")
    assert (first.full, first.upserted, first.deleted, first.delta_version) == (True, 8, 0, 0)
    assert first.pinned == first.index_version
    assert contents(vws) == source(vws)

    dt = vws.tables.delta("gold.docs", write=True)
    dt.delete("doc_id = 2")
    dt.update(
        updates={"text": "'JFK opened a new terminal for flights to Europe'"},
        predicate="doc_id = 1",
    )
    vws.tables.write("gold.docs", docs_table([(9, "Fog at Newark", "incident", "EWR")]))
    second = vws.vectors.sync("gold.docs_index")
    assert (second.full, second.upserted, second.deleted) == (False, 2, 1)
    assert second.delta_version == vws.tables.delta("gold.docs").version()
    assert contents(vws) == source(vws)
    top = vws.vectors.search("gold.docs_index", "a new terminal for European flights", k=1)
    assert top["doc_id"].to_pylist() == [1]

    again = vws.vectors.sync("gold.docs_index")  # nothing new: nothing done
    assert (again.upserted, again.deleted, again.index_version) == (0, 0, second.index_version)


def test_last_change_per_key_wins_across_commits(vws: Workspace) -> None:
    vws.vectors.sync("gold.docs_index")
    dt = vws.tables.delta("gold.docs", write=True)
    dt.delete("doc_id = 3")  # deleted, then inserted again with new text
    vws.tables.write("gold.docs", docs_table([(3, "Newark reopened", "airport", "EWR")]))
    dt = vws.tables.delta("gold.docs", write=True)
    dt.update(updates={"kind": "'incident'"}, predicate="doc_id = 3")
    vws.tables.write("gold.docs", docs_table([(10, "short-lived", "incident", "JFK")]))
    vws.tables.delta("gold.docs", write=True).delete("doc_id = 10")  # inserted, then deleted
    result = vws.vectors.sync("gold.docs_index")
    assert (result.upserted, result.deleted) == (1, 1)
    assert contents(vws)[3] == ("Newark reopened", "incident")
    assert contents(vws) == source(vws)


def test_overwrite_of_the_source_replaces_the_rows(vws: Workspace) -> None:
    vws.vectors.sync("gold.docs_index")
    vws.tables.write("gold.docs", docs_table(DOCS[:3]), mode="overwrite")
    vws.vectors.sync("gold.docs_index")
    assert contents(vws) == source(vws)
    assert sorted(contents(vws)) == [1, 2, 3]


def test_full_sync_rebuilds_from_a_snapshot(vws: Workspace) -> None:
    vws.vectors.sync("gold.docs_index")
    vws.tables.delta("gold.docs", write=True).delete("doc_id > 6")
    result = vws.vectors.sync("gold.docs_index", full=True)
    assert result.full and result.upserted == 6
    assert contents(vws) == source(vws)


def test_a_source_without_change_data_feed_is_refused_with_the_fix(vws: Workspace) -> None:
    vws.tables.create(
        "gold.plain",
        pa.schema([("doc_id", pa.int64()), ("text", pa.string())]),
        change_data_feed=False,
    )
    vws.tables.write("gold.plain", pa.table({"doc_id": [1], "text": ["a"]}))
    spec = vws.project.config.vector_indexes["gold.docs_index"]
    vws.project.config.vector_indexes["gold.plain_index"] = spec.model_copy(
        update={
            "name": "gold.plain_index",
            "source": "gold.plain",
            "columns": None,
            "full_text": False,
        }
    )
    vws.vectors.sync("gold.plain_index")  # the first sync reads a snapshot
    vws.tables.write("gold.plain", pa.table({"doc_id": [2], "text": ["b"]}))
    with pytest.raises(VectorIndexError, match="change data feed of gold.plain is off") as exc:
        vws.vectors.sync("gold.plain_index")
    assert exc.value.hint is not None and "enableChangeDataFeed" in exc.value.hint


def test_precomputed_vectors_and_search_by_vector(vws: Workspace) -> None:
    vectors = pa.array(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0]], pa.list_(pa.float32(), 3)
    )
    vws.tables.write("gold.points", pa.table({"id": ["a", "b", "c"], "emb": vectors}))
    from lakeforge.project import VectorIndexSpec

    vws.project.config.vector_indexes["gold.points_index"] = VectorIndexSpec(
        name="gold.points_index",
        source="gold.points",
        primary_key="id",
        vector_column="emb",
        index={"metric": "l2"},
    )
    vws.vectors.sync("gold.points_index")
    found = vws.vectors.search("gold.points_index", vector=[0.0, 1.0, 0.0], k=2)
    assert found["id"].to_pylist() == ["b", "c"]
    assert found["score"][0].as_py() == pytest.approx(1.0)
    with pytest.raises(VectorIndexError, match="no embedding model"):
        vws.vectors.search("gold.points_index", "text")
    with pytest.raises(VectorIndexError, match="must be 3 finite numbers"):
        vws.vectors.search("gold.points_index", vector=[1.0, float("nan"), 0.0])
