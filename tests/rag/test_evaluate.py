"""Retrieval metrics checked by hand and against scikit-learn; evaluation on a real index,
logged to MLflow and gating deployment."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import ndcg_score

from lakeforge._workspace import Workspace
from lakeforge.errors import LakeforgeError
from lakeforge.rag import (
    evaluate_retrieval,
    log_chain,
    ndcg_at,
    recall_at,
    reciprocal_rank,
    retrieval_metrics,
)
from lakeforge.testing.fake_openai import FakeOpenAI
from tests.rag.conftest import INDEX, PROMPT, questions_table


def test_metrics_match_a_hand_computed_case() -> None:
    ranked, relevant = ["a", "b", "c", "d"], {"b", "d", "z"}
    assert recall_at(ranked, relevant, 1) == 0.0
    assert recall_at(ranked, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at(ranked, relevant, 10) == pytest.approx(2 / 3)
    assert reciprocal_rank(ranked, relevant) == 0.5
    assert reciprocal_rank(["x"], relevant) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # hits at ranks 2 and 4
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # three relevant, all on top
    assert ndcg_at(ranked, relevant, 4) == pytest.approx(dcg / ideal)  # 1.06161 / 2.13093
    assert ndcg_at(ranked, relevant, 4) == pytest.approx(0.49819, abs=1e-5)
    assert ndcg_at(["b", "d", "z"], relevant, 3) == pytest.approx(1.0)
    averaged = retrieval_metrics([ranked, ["b"]], [relevant, {"b"}], [1])
    assert averaged == pytest.approx({"recall_at_1": 0.5, "ndcg_at_1": 0.5, "mrr": (0.5 + 1.0) / 2})


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    documents = [f"d{i}" for i in range(30)]
    ranked = list(rng.permutation(documents)[:15])
    relevant = set(rng.choice(documents, size=int(rng.integers(1, 8)), replace=False))
    # scikit-learn scores every document: ranked ones by position, the rest below them all
    scores = [
        len(documents) - ranked.index(d) if d in ranked else -i for i, d in enumerate(documents)
    ]
    truth = [1.0 if d in relevant else 0.0 for d in documents]
    for k in (1, 5, 10):
        expected = ndcg_score([truth], [scores], k=k)
        assert ndcg_at(ranked, relevant, k) == pytest.approx(expected)


def test_evaluate_retrieval_on_the_index_logs_metrics(rag_ws: Workspace) -> None:
    with rag_ws.start_run("rag-eval", autolog=False) as run:
        result = evaluate_retrieval(rag_ws, INDEX, questions_table(), k=(1, 5))
    assert result.run_id == run.run_id
    metrics = rag_ws.models.client.get_run(run.run_id).data.metrics
    assert set(metrics) == {"recall_at_1", "recall_at_5", "ndcg_at_1", "ndcg_at_5", "mrr"}
    assert metrics == pytest.approx(result.metrics)
    assert result.metrics["recall_at_5"] >= 0.9 and result.metrics["mrr"] >= 0.8
    table = result.questions
    assert table.num_rows == 6 and table.column("retrieved_ids").to_pylist()[0][0] == "n03"
    # recomputed from the per-question rows, the averages agree
    recomputed = sum(table.column("recall_at_5").to_pylist()) / table.num_rows
    assert recomputed == pytest.approx(result.metrics["recall_at_5"])


def test_a_filter_that_hides_the_answers_scores_low(rag_ws: Workspace) -> None:
    hidden = evaluate_retrieval(
        rag_ws, INDEX, questions_table(), k=5, filter="kind = 'ops'", log=False
    )
    assert hidden.metrics["recall_at_5"] == 0.0 and hidden.run_id is None


def test_bad_questions_are_refused(rag_ws: Workspace) -> None:
    with pytest.raises(LakeforgeError, match=r"lack column\(s\) relevant_ids"):
        evaluate_retrieval(rag_ws, INDEX, pa.table({"question": ["q"]}), log=False)
    empty = pa.table({"question": ["q"], "relevant_ids": [[]]})
    with pytest.raises(LakeforgeError, match="row 0: 'relevant_ids' must be a non-empty list"):
        evaluate_retrieval(rag_ws, INDEX, empty, log=False)
    blank = [{"question": " ", "relevant_ids": ["n01"]}]
    with pytest.raises(LakeforgeError, match="row 0: 'question' must be non-empty text"):
        evaluate_retrieval(rag_ws, INDEX, blank, log=False)
    with pytest.raises(LakeforgeError, match="k must be one or more whole numbers from 1 to 100"):
        evaluate_retrieval(rag_ws, INDEX, questions_table(), k=(0, 5), log=False)


@pytest.mark.slow
def test_recall_gate_passes_a_good_chain_and_blocks_a_bad_one(
    rag_ws: Workspace, fake_llm: FakeOpenAI
) -> None:
    """dev's policy: validation.checks.metrics {recall_at_5: {min: 0.8}}."""
    llm = {"base_url": fake_llm.url, "model": "chat"}
    versions = {}
    for label, extra in (("good", {}), ("bad", {"filter": "kind = 'ops'"})):
        version = log_chain(
            rag_ws,
            name="rag.gated",
            index=INDEX,
            prompt=PROMPT,
            llm=llm,
            k=5,
            trace=False,
            questions=questions_table(),
            **extra,  # type: ignore[arg-type]
        )
        versions[label] = int(version.version)
        assert float(version.tags["lakeforge.metric.recall_at_5"]) >= (
            0.8 if label == "good" else 0
        )
    good = rag_ws.validate("rag.gated", versions["good"])
    assert good.passed, good.results
    bad = rag_ws.validate("rag.gated", versions["bad"])
    assert bad.blocking and bad.failed_checks == ["metric:recall_at_5"]
    message = next(r.message for r in bad.results if not r.passed)
    assert message == "recall_at_5 = 0"


def test_a_chain_that_retrieves_too_few_scores_what_it_retrieves(rag_ws: Workspace) -> None:
    """A chain with k=1 is evaluated at most 1 deep: recall@5 of the chain is recall@1."""
    from lakeforge.rag import ChainConfig

    config = ChainConfig(
        index=INDEX, prompt=PROMPT, llm={"base_url": "http://127.0.0.1:9", "model": "m"}, k=1
    )
    shallow = evaluate_retrieval(rag_ws, config, questions_table(), k=(1, 5), log=False)
    deep = evaluate_retrieval(rag_ws, INDEX, questions_table(), k=(1, 5), log=False)
    assert shallow.metrics["recall_at_5"] == pytest.approx(shallow.metrics["recall_at_1"])
    assert shallow.metrics["recall_at_5"] < deep.metrics["recall_at_5"]
