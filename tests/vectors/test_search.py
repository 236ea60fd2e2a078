"""Search: vector, keyword and hybrid, metadata filters (and attempts to escape them), pins."""

from __future__ import annotations

import pytest

from lakeforge import Workspace
from lakeforge.vectors import VectorIndexError, check_filter
from tests.vectors.conftest import docs_table

COLUMNS = ["doc_id", "text", "kind", "faa"]


@pytest.fixture
def synced(vws: Workspace) -> Workspace:
    vws.vectors.sync("gold.docs_index")
    return vws


def test_vector_search_ranks_by_meaning_with_scores(synced: Workspace) -> None:
    found = synced.vectors.search("gold.docs_index", "storms delayed the flights leaving JFK", k=3)
    assert found.column_names == [*COLUMNS, "score"]
    assert found["doc_id"][0].as_py() == 5  # thunderstorms delayed departures
    scores = found["score"].to_pylist()
    assert scores == sorted(scores, reverse=True)
    df = synced.vectors.search("gold.docs_index", "airport", k=2, columns=["faa"]).to_pandas()
    assert list(df.columns) == ["doc_id", "text", "faa", "score"]


def test_filters_restrict_every_kind_of_search(synced: Workspace) -> None:
    for query_type in ("vector", "hybrid", "keyword"):
        found = synced.vectors.search(
            "gold.docs_index",
            "JFK airport",
            k=10,
            query_type=query_type,
            filter="kind = 'incident' AND faa IN ('JFK', 'LGA')",
        )
        assert set(found["doc_id"].to_pylist()) <= {5, 6}, query_type
        assert found.num_rows >= 1
    none = synced.vectors.search("gold.docs_index", "x", filter="doc_id BETWEEN 100 AND 200")
    assert none.num_rows == 0


def test_keyword_search_matches_words_and_hybrid_fuses(synced: Workspace) -> None:
    keyword = synced.vectors.search("gold.docs_index", "runway", k=5, query_type="keyword")
    assert keyword["doc_id"].to_pylist() == [6]
    hybrid = synced.vectors.search(
        "gold.docs_index", "runway closed by snow", k=3, query_type="hybrid"
    )
    assert hybrid["doc_id"][0].as_py() == 6


@pytest.mark.parametrize(
    ("predicate", "message"),
    [
        ("kind = 'a'; DROP TABLE docs", "';' .* is not allowed"),
        ("kind = 'a' -- comment", "'-' .* is not allowed"),
        ("secret = 1", "unknown column 'secret'"),
        ("kind = (SELECT 1)", "expected a value"),
        ("lower(kind) = 'a'", "unknown column 'lower'"),
        ("kind(faa) = 'a'", "expected a comparison"),
        ("kind = 'a' kind = 'b'", "expected"),
        ("kind = 'unterminated", "is not allowed"),
        ("", "is empty"),
        ("CAST(doc_id AS TEXT) = '1'", "unknown column 'CAST'"),
        ('kind = "faa"', "is not allowed"),
    ],
)
def test_bad_filters_are_refused_before_lancedb(predicate: str, message: str) -> None:
    with pytest.raises(VectorIndexError, match=message):
        check_filter(predicate, COLUMNS, where="index x")


def test_good_filters_are_rebuilt_from_their_tokens() -> None:
    text = "NOT (kind = 'it''s' OR faa IS NOT NULL) and doc_id >= -3 AND kind LIKE 'a%'"
    assert check_filter(text, COLUMNS, where="x") == (
        "NOT ( kind = 'it''s' OR faa IS NOT NULL ) AND doc_id >= -3 AND kind LIKE 'a%'"
    )


def test_bad_arguments_name_what_is_allowed(synced: Workspace) -> None:
    with pytest.raises(VectorIndexError, match=r"declared: gold.docs_index, gold.manual_index"):
        synced.vectors.search("gold.nope", "x")
    for k in (0, 1001):
        with pytest.raises(VectorIndexError, match="k must be an integer from 1 to 1000"):
            synced.vectors.search("gold.docs_index", "x", k=k)
    with pytest.raises(VectorIndexError, match="unknown column"):
        synced.vectors.search("gold.docs_index", "x", columns=["vector"])
    with pytest.raises(VectorIndexError, match="keyword search needs a keyword index"):
        synced.vectors.search("gold.manual_index", "x", query_type="keyword")
    with pytest.raises(VectorIndexError, match="query_type 'fuzzy'"):
        synced.vectors.search("gold.docs_index", "x", query_type="fuzzy")  # type: ignore[arg-type]


def test_pin_and_rollback_change_what_search_reads(synced: Workspace) -> None:
    first = synced.vectors.history("gold.docs_index")[0].index_version
    synced.tables.delta("gold.docs", write=True).delete("kind = 'incident'")
    second = synced.vectors.sync("gold.docs_index").index_version
    assert synced.vectors.search("gold.docs_index", "storm", k=20).num_rows == 5
    assert synced.vectors.rollback("gold.docs_index") == first
    assert synced.vectors.search("gold.docs_index", "storm", k=20).num_rows == 8
    assert synced.vectors.pin("gold.docs_index", second) == first
    assert synced.vectors.search("gold.docs_index", "storm", k=20).num_rows == 5
    # an explicit version reads that one, whatever is pinned
    assert synced.vectors.search("gold.docs_index", "storm", k=20, version=first).num_rows == 8
    history = synced.vectors.history("gold.docs_index")
    assert [(h.index_version, h.rows, h.pinned) for h in history] == [
        (second, 5, True),
        (first, 8, False),
    ]
    with pytest.raises(VectorIndexError, match="has no version 999"):
        synced.vectors.pin("gold.docs_index", 999)


def test_a_manual_index_is_searched_only_once_pinned(vws: Workspace) -> None:
    result = vws.vectors.sync("gold.manual_index")
    assert result.pinned is None
    with pytest.raises(VectorIndexError, match="no pinned version") as exc:
        vws.vectors.search("gold.manual_index", "x")
    assert exc.value.hint is not None and "vectors pin gold.manual_index" in exc.value.hint
    vws.vectors.pin("gold.manual_index", result.index_version)
    assert vws.vectors.search("gold.manual_index", "x", k=3).num_rows == 3
    vws.tables.write("gold.docs", docs_table([(30, "more", "note", "JFK")]))
    vws.vectors.sync("gold.manual_index")  # syncs, but search stays on the pinned version
    assert vws.vectors.search("gold.manual_index", "x", k=20).num_rows == 8
    info = {i.name: i for i in vws.vectors.list()}
    assert info["gold.manual_index"].pinned_version == result.index_version
    assert info["gold.docs_index"].latest_version is None
