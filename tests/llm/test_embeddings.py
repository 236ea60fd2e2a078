"""The [llm] extra's local all-MiniLM-L6-v2, as the gateway serves it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lakeforge.llm import GatewayEndpoint
from lakeforge.project import LLMEndpointSpec

pytestmark = pytest.mark.slow
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply today.",
]


def test_minilm_gives_384_unit_vectors_that_rank_related_sentences_closer() -> None:
    spec = LLMEndpointSpec.model_validate(
        {
            "type": "embeddings",
            "models": [{"name": "minilm", "provider": "local", "model": "all-MiniLM-L6-v2"}],
        }
    )
    gateway = GatewayEndpoint("embed", spec)
    result = asyncio.run(gateway.embeddings({"input": SENTENCES}, user=None, request_id="r1"))
    assert result.status == 200, result.body
    assert result.body is not None and result.route == "minilm"
    vectors = np.array([d["embedding"] for d in result.body["data"]])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.6  # both about eating
    assert similarity[0, 2] < 0.2  # eating vs the stock market
    assert result.input_tokens > 0 and result.output_tokens == 0
    # the same text embeds to the same vector, alone or in a batch
    alone = asyncio.run(gateway.embeddings({"input": SENTENCES[2]}, user=None, request_id="r2"))
    assert alone.body is not None
    np.testing.assert_allclose(alone.body["data"][0]["embedding"], vectors[2], atol=1e-5)
