"""A RAG chain bound to one target: retrieve -> fill the prompt -> ask the LLM.

Each question is one MLflow trace when tracing is on: a ``rag_chain`` span (CHAIN) holding
``retrieve`` (RETRIEVER, the documents as outputs), ``prompt`` (PARSER) and ``llm``
(CHAT_MODEL). Spans go where MLflow's tracing is pointed (nested in a caller's trace).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError
from lakeforge.rag._config import CONTEXT, QUESTION, ChainConfig
from lakeforge.vectors import QueryType

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

    from lakeforge._workspace import Workspace
    from lakeforge.llm import CachedPromptSource

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ERROR_CHARS = 300


class ChainError(LakeforgeError):
    """A chain that cannot answer: a missing index or prompt, or a failing LLM endpoint."""


class LLMUnavailableError(ChainError):
    """The chain's LLM endpoint failed: unreachable, an error status, or no answer in its
    reply (an upstream's failure, not the chain's: served, a 503)."""


@dataclass(frozen=True)
class Document:
    """One retrieved document: its key (as text), its text and its score (higher = better)."""

    id: str
    text: str
    score: float


@dataclass(frozen=True)
class Answer:
    """A chain's answer to one question, with the documents and prompt version it used."""

    answer: str
    sources: list[str]
    prompt_version: str
    documents: list[Document]


def render(template: str, values: dict[str, str]) -> str:
    """``{{name}}`` placeholders filled in one pass: text put in is never read again, so a
    document containing ``{{question}}`` stays as written."""

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return _VARIABLE.sub(fill, template)


def template_variables(template: str) -> set[str]:
    """The ``{{name}}`` placeholders of a text template."""
    return set(_VARIABLE.findall(template))


def index_columns(ws: Workspace, index: str) -> tuple[str, str | None]:
    """The primary key and text column of a declared index (text None: vectors only)."""
    from lakeforge.vectors import resolve

    spec = resolve(ws, index).spec
    return spec.primary_key, spec.text_column


def short_index_name(ws: Workspace, index: str) -> str:
    """``schema.name`` of a declared index named with or without this target's catalog."""
    from lakeforge.vectors import resolve

    return resolve(ws, index).qualified.split(".", 1)[1]


def documents(result: pa.Table, key: str, text: str | None) -> list[Document]:
    """Search results as documents, best first (text: the text column, else metadata)."""
    rows = result.to_pylist()
    found = []
    for row in rows:
        if text is not None:
            body = str(row.get(text) or "")
        else:
            body = "; ".join(f"{c}: {v}" for c, v in row.items() if c not in (key, "score"))
        found.append(Document(str(row[key]), body, float(row.get("score") or 0.0)))
    return found


def retrieve(
    ws: Workspace,
    index: str,
    question: str,
    *,
    k: int,
    filter: str | None = None,
    query_type: QueryType = "vector",
) -> list[Document]:
    """The top ``k`` documents of ``index`` for ``question``, best first."""
    from lakeforge.vectors import search

    key, text = index_columns(ws, index)
    result = search(ws, index, question, k=k, filter=filter, query_type=query_type)
    return documents(result, key, text)


def context_text(docs: list[Document]) -> str:
    """The documents as the prompt's ``{{context}}``: ``[id] text`` blocks."""
    return "\n\n".join(f"[{d.id}] {d.text}" for d in docs)


class RagChain:
    """One chain on one workspace: :meth:`answer` a question, or :meth:`retrieve` only."""

    def __init__(self, ws: Workspace, config: ChainConfig) -> None:
        self.ws = ws
        self.config = config
        index_columns(ws, config.index)  # a clear error for an undeclared index
        self._prompts: CachedPromptSource = ws.prompts.source()
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def retrieve(self, question: str, *, k: int | None = None) -> list[Document]:
        """The chain's top documents for ``question`` (``k`` defaults to the chain's)."""
        config = self.config
        return retrieve(
            self.ws,
            config.index,
            question,
            k=k or config.k,
            filter=config.filter,
            query_type=config.query_type,
        )

    def prompt(self) -> tuple[str, str]:
        """The prompt's template and ``name/version`` as the registry has them now."""
        template, version = self._prompts(self.config.prompt)
        missing = {QUESTION, CONTEXT} - template_variables(template)
        if missing:
            raise ChainError(
                f"prompt {version} lacks the placeholder(s) "
                f"{', '.join('{{' + m + '}}' for m in sorted(missing))}",
                hint="a RAG prompt takes {{context}} (the documents) and {{question}}",
            )
        return template, version

    def answer(self, question: str) -> Answer:
        """Retrieve, fill the prompt, ask the LLM; traced when the chain's ``trace`` is on."""
        if not isinstance(question, str) or not question.strip():
            raise ChainError(f"the question must be non-empty text, got {question!r}")
        with self._span("rag_chain", "CHAIN", {QUESTION: question}) as root:
            with self._span("retrieve", "RETRIEVER", {"query": question}) as span:
                span.set_attributes(
                    {
                        "index": self.config.index,
                        "k": self.config.k,
                        "query_type": self.config.query_type,
                    }
                )
                docs = self.retrieve(question)
                span.set_outputs([_trace_document(d) for d in docs])
            with self._span("prompt", "PARSER", {"reference": self.config.prompt}) as span:
                template, version = self.prompt()
                filled = render(template, {QUESTION: question, CONTEXT: context_text(docs)})
                span.set_attributes({"prompt_version": version})
                span.set_outputs(filled)
            messages = [{"role": "user", "content": filled}]
            with self._span("llm", "CHAT_MODEL", {"messages": messages}) as span:
                span.set_attributes({"model": self.config.llm.model})
                reply = self._chat(messages)
                span.set_outputs(reply)
            result = Answer(reply, [d.id for d in docs], version, docs)
            root.set_outputs({"answer": reply, "sources": result.sources})
        return result

    def _chat(self, messages: list[dict[str, str]]) -> str:
        import httpx

        from lakeforge.llm import read_secret, redact
        from lakeforge.project import SecretRef

        llm = self.config.llm
        headers = {}
        secret = None
        if llm.api_key_env is not None:
            secret = read_secret(SecretRef(env=llm.api_key_env))
            headers["Authorization"] = f"Bearer {secret}"
        body: dict[str, Any] = {"model": llm.model, "messages": messages}
        if llm.temperature is not None:
            body["temperature"] = llm.temperature
        if llm.max_tokens is not None:
            body["max_tokens"] = llm.max_tokens
        url = f"{llm.base_url}/chat/completions"
        where = f"LLM endpoint {url} (model {llm.model})"
        try:
            response = self._http().post(url, json=body, headers=headers, timeout=llm.timeout_s)
        except httpx.HTTPError as exc:
            raise LLMUnavailableError(f"{where} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            text = redact(response.text[:_ERROR_CHARS], secret)
            raise LLMUnavailableError(f"{where} answered {response.status_code}: {text}")
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            text = redact(response.text[:_ERROR_CHARS], secret)
            raise LLMUnavailableError(
                f"{where} answered without choices[0].message: {text}"
            ) from None

    def _http(self) -> httpx.Client:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client()
            return self._client

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @contextmanager
    def _span(self, name: str, kind: str, inputs: dict[str, Any]) -> Iterator[Any]:
        if not self.config.trace:
            yield _NoSpan()
            return
        import mlflow

        with mlflow.start_span(name=name, span_type=kind) as span:
            span.set_inputs(inputs)
            yield span


def _trace_document(doc: Document) -> dict[str, Any]:
    """A document as MLflow's RETRIEVER spans show it (``mlflow.entities.Document``)."""
    return {
        "id": doc.id,
        "page_content": doc.text,
        "metadata": {"doc_uri": doc.id, "score": doc.score},
    }


class _NoSpan:
    """Stands in for a span when the chain does not trace."""

    def set_inputs(self, _: Any) -> None:
        pass

    def set_outputs(self, _: Any) -> None:
        pass

    def set_attributes(self, _: dict[str, Any]) -> None:
        pass
