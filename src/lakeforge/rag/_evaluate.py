"""Retrieval evaluation without an LLM judge: recall@k, MRR and nDCG@k on labelled questions.

Relevance is binary: a document is relevant when its id is in the question's list.
For one question with relevant set R and ranked results d_1..d_n:

- recall@k = |R ∩ {d_1..d_k}| / |R|
- reciprocal rank = 1 / (rank of the first relevant result), 0 when none is retrieved
- nDCG@k = DCG@k / IDCG@k, DCG@k = Σ_{i<=k, d_i in R} 1 / log2(i + 1),
  IDCG@k = Σ_{i <= min(|R|, k)} 1 / log2(i + 1)

Each is averaged over the questions; MRR looks at every result retrieved (max k). Logged
as ``recall_at_<k>``, ``ndcg_at_<k>`` and ``mrr`` so deployment policies can gate on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError
from lakeforge.rag._chain import index_columns, retrieve, short_index_name
from lakeforge.rag._config import MAX_K, ChainConfig
from lakeforge.vectors import QueryType

if TYPE_CHECKING:
    import pyarrow as pa

    from lakeforge._workspace import Workspace


@dataclass(frozen=True)
class RetrievalEvaluation:
    """Averaged metrics, and per question what was retrieved and how it scored."""

    metrics: dict[str, float]
    questions: pa.Table
    run_id: str | None


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant documents found in the first ``k`` results."""
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], relevant: set[str]) -> float:
    """1 / rank of the first relevant result (0 when none is retrieved)."""
    return next((1.0 / i for i, doc in enumerate(ranked, 1) if doc in relevant), 0.0)


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Normalized discounted cumulative gain of the first ``k`` results, binary relevance."""
    dcg = sum(1.0 / math.log2(i + 1) for i, doc in enumerate(ranked[:k], 1) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def retrieval_metrics(
    rankings: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: Sequence[int]
) -> dict[str, float]:
    """recall@k, nDCG@k for each k, and MRR, averaged over questions."""
    if not rankings:
        raise LakeforgeError("retrieval evaluation needs at least one question")
    n = len(rankings)
    metrics: dict[str, float] = {}
    for cut in k:
        metrics[f"recall_at_{cut}"] = sum(map(recall_at, rankings, relevant, [cut] * n)) / n
        metrics[f"ndcg_at_{cut}"] = sum(map(ndcg_at, rankings, relevant, [cut] * n)) / n
    metrics["mrr"] = sum(map(reciprocal_rank, rankings, relevant)) / n
    return metrics


def evaluate_retrieval(
    ws: Workspace,
    index: str | ChainConfig,
    questions: Any,
    *,
    k: Sequence[int] = (1, 5, 10),
    question_column: str = "question",
    relevant_column: str = "relevant_ids",
    filter: str | None = None,
    query_type: QueryType = "vector",
    log: bool = True,
    prefix: str = "",
) -> RetrievalEvaluation:
    """Score retrieval from ``index`` on labelled ``questions`` (a table or frame with a
    question column and a list of relevant ids per row).

    ``index`` is an index name, searched ``max(k)`` deep with ``filter`` and
    ``query_type``; or a chain's :class:`ChainConfig`, searched as the chain does, at
    most its own ``k`` deep (a chain that retrieves 2 documents has recall@5 of recall@2).
    With ``log`` and an active run (``ws.start_run``), the metrics are logged on it.
    """
    cuts = _cuts(k)
    texts, relevant = _labelled(questions, question_column, relevant_column)
    if isinstance(index, ChainConfig):
        name, depth = index.index, min(max(cuts), index.k)
        filter, query_type = index.filter, index.query_type
    else:
        name, depth = short_index_name(ws, index), max(cuts)
    index_columns(ws, name)  # a clear error for an undeclared index
    rankings = [
        [d.id for d in retrieve(ws, name, text, k=depth, filter=filter, query_type=query_type)]
        for text in texts
    ]
    metrics = {
        f"{prefix}{name}": value
        for name, value in retrieval_metrics(rankings, relevant, cuts).items()
    }
    table = _per_question(texts, relevant, rankings, cuts)
    run_id = None
    training = ws.tracking.active_run if log else None
    if training is not None:
        run_id = training.run_id
        training.log_metrics(metrics)
        training.client.log_text(
            run_id, table.to_pandas().to_json(orient="records", lines=True), "retrieval_eval.jsonl"
        )
    return RetrievalEvaluation(metrics, table, run_id)


def _cuts(k: Sequence[int] | int) -> list[int]:
    values = [k] if isinstance(k, int) else list(k)
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_K for v in values
    ):
        raise LakeforgeError(
            f"k must be one or more whole numbers from 1 to {MAX_K}, got {k!r} (e.g. k=(1, 5, 10))"
        )
    return sorted(set(values))


def _labelled(questions: Any, question: str, relevant: str) -> tuple[list[str], list[set[str]]]:
    """Question texts and relevant-id sets, checked row by row."""
    import pyarrow as pa

    if isinstance(questions, pa.Table):
        table = questions
    elif hasattr(questions, "to_arrow"):  # polars
        table = questions.to_arrow()
    elif isinstance(questions, list):
        table = pa.Table.from_pylist(questions)
    else:
        try:
            table = pa.Table.from_pandas(questions, preserve_index=False)
        except (TypeError, AttributeError):
            raise LakeforgeError(
                f"questions must be a table, frame or list of dicts, got {type(questions).__name__}"
            ) from None
    missing = [c for c in (question, relevant) if c not in table.column_names]
    if missing:
        raise LakeforgeError(
            f"the questions lack column(s) {', '.join(missing)} (columns: "
            f"{', '.join(table.column_names)})",
            hint="pass question_column= and relevant_column= to name yours",
        )
    texts = table.column(question).to_pylist()
    ids = table.column(relevant).to_pylist()
    if not texts:
        raise LakeforgeError("retrieval evaluation needs at least one question")
    sets = []
    for row, (text, found) in enumerate(zip(texts, ids, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise LakeforgeError(f"question row {row}: {question!r} must be non-empty text")
        if not isinstance(found, list) or not found:
            raise LakeforgeError(
                f"question row {row}: {relevant!r} must be a non-empty list of document ids, "
                f"got {found!r}"
            )
        sets.append({str(v) for v in found})
    return texts, sets


def _per_question(
    texts: list[str], relevant: list[set[str]], rankings: list[list[str]], cuts: list[int]
) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, Any] = {
        "question": texts,
        "relevant_ids": [sorted(r) for r in relevant],
        "retrieved_ids": rankings,
        "reciprocal_rank": [reciprocal_rank(x, r) for x, r in zip(rankings, relevant, strict=True)],
    }
    for cut in cuts:
        columns[f"recall_at_{cut}"] = [
            recall_at(x, r, cut) for x, r in zip(rankings, relevant, strict=True)
        ]
    return pa.table(columns)
