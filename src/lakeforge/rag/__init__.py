"""RAG chains: retrieve from a vector index, fill a registered prompt, ask an LLM endpoint.

A chain is logged as an MLflow pyfunc (models from code) and served like any model; it
resolves its index and prompt in the target that loads it. Retrieval is evaluated
without an LLM judge (recall@k, MRR, nDCG@k), as metrics deployment policies gate on.

Names load on first use, so importing the package does not import MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

if TYPE_CHECKING:
    from lakeforge.rag._chain import Answer, ChainError, Document, LLMUnavailableError, RagChain
    from lakeforge.rag._config import ChainConfig, LLMConfig
    from lakeforge.rag._evaluate import (
        RetrievalEvaluation,
        evaluate_retrieval,
        ndcg_at,
        recall_at,
        reciprocal_rank,
        retrieval_metrics,
    )
    from lakeforge.rag._log import index_lineage, log_chain

__all__ = [
    "Answer",
    "ChainConfig",
    "ChainError",
    "Document",
    "LLMConfig",
    "LLMUnavailableError",
    "RagChain",
    "RetrievalEvaluation",
    "evaluate_retrieval",
    "index_lineage",
    "log_chain",
    "ndcg_at",
    "recall_at",
    "reciprocal_rank",
    "retrieval_metrics",
]

__getattr__ = lazy_names(
    __name__,
    {
        "Answer": "_chain",
        "ChainError": "_chain",
        "Document": "_chain",
        "LLMUnavailableError": "_chain",
        "RagChain": "_chain",
        "ChainConfig": "_config",
        "LLMConfig": "_config",
        "RetrievalEvaluation": "_evaluate",
        "evaluate_retrieval": "_evaluate",
        "ndcg_at": "_evaluate",
        "recall_at": "_evaluate",
        "reciprocal_rank": "_evaluate",
        "retrieval_metrics": "_evaluate",
        "index_lineage": "_log",
        "log_chain": "_log",
    },
)
