"""Metadata filters of a search: one boolean SQL expression over the index's columns.

The string reaches LanceDB's SQL engine, so it is parsed here against a small grammar
and rebuilt from its tokens; anything outside it is refused with the reason:

    expr      := and_expr (OR and_expr)*
    and_expr  := not_expr (AND not_expr)*
    not_expr  := NOT not_expr | '(' expr ')' | predicate
    predicate := operand [cmp operand | IS [NOT] NULL | [NOT] IN '(' literal, ... ')'
                 | [NOT] LIKE string | [NOT] BETWEEN operand AND operand]
    operand   := column | literal
    literal   := number | 'string' | TRUE | FALSE | NULL | DATE 'x' | TIMESTAMP 'x'

Columns must be the index's; functions, subqueries, casts, comments and ``;`` are refused.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from lakeforge.vectors._store import VectorIndexError

MAX_FILTER_CHARS = 4096
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),]))"
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "BETWEEN", "TRUE", "FALSE"}
_TYPED = {"DATE", "TIMESTAMP"}
_ALLOWED = (
    "a filter is one boolean expression over the index's columns with =, !=, <, <=, >, >=, "
    "AND, OR, NOT, IN (...), IS [NOT] NULL, LIKE, BETWEEN and literals, e.g. "
    "\"kind = 'airport' AND faa IN ('JFK', 'LGA')\""
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # string, number, word, keyword, op, punct
    text: str
    at: int


class _Parser:
    def __init__(self, text: str, columns: Collection[str], where: str) -> None:
        self.text, self.columns, self.where = text, columns, where
        self.tokens = _tokens(text, where)
        self.pos = 0
        self.out: list[str] = []

    def fail(self, why: str) -> VectorIndexError:
        tok = self.tokens[self.pos] if self.pos < len(self.tokens) else None
        at = f"at {tok.text!r} (character {tok.at + 1})" if tok else "at its end"
        return VectorIndexError(f"filter {self.text!r} on {self.where}: {why} {at}; {_ALLOWED}")

    def peek(self, *texts: str) -> bool:
        if self.pos >= len(self.tokens):
            return False
        tok = self.tokens[self.pos]
        return tok.kind in ("keyword", "punct", "op") and tok.text in texts

    def take(self, *texts: str) -> str:
        if not self.peek(*texts):
            raise self.fail(f"expected {' or '.join(texts)}")
        tok = self.tokens[self.pos]
        self.pos += 1
        self.out.append(tok.text)
        return tok.text

    def expr(self) -> None:
        self.and_expr()
        while self.peek("OR"):
            self.take("OR")
            self.and_expr()

    def and_expr(self) -> None:
        self.not_expr()
        while self.peek("AND"):
            self.take("AND")
            self.not_expr()

    def not_expr(self) -> None:
        if self.peek("NOT"):
            self.take("NOT")
            self.not_expr()
        elif self.peek("("):
            self.take("(")
            self.expr()
            self.take(")")
        else:
            self.predicate()

    def predicate(self) -> None:
        self.operand()
        if self.pos >= len(self.tokens) or self.peek("AND", "OR", ")"):
            return  # a boolean column or literal on its own
        tok = self.tokens[self.pos]
        if tok.kind == "op":
            self.take(tok.text)
            self.operand()
        elif self.peek("IS"):
            self.take("IS")
            if self.peek("NOT"):
                self.take("NOT")
            self.take("NULL")
        else:
            if self.peek("NOT"):
                self.take("NOT")
            if self.peek("IN"):
                self.take("IN")
                self.take("(")
                self.literal()
                while self.peek(","):
                    self.take(",")
                    self.literal()
                self.take(")")
            elif self.peek("LIKE"):
                self.take("LIKE")
                self.literal(strings_only=True)
            elif self.peek("BETWEEN"):
                self.take("BETWEEN")
                self.operand()
                self.take("AND")
                self.operand()
            else:
                raise self.fail("expected a comparison, IS, IN, LIKE or BETWEEN")

    def operand(self) -> None:
        tok = self.tokens[self.pos] if self.pos < len(self.tokens) else None
        if tok is not None and tok.kind == "word":
            if tok.text not in self.columns:
                raise VectorIndexError(
                    f"filter {self.text!r} on {self.where}: unknown column {tok.text!r} "
                    f"(columns: {', '.join(sorted(self.columns))})"
                )
            self.pos += 1
            self.out.append(tok.text)
            return
        self.literal()

    def literal(self, *, strings_only: bool = False) -> None:
        tok = self.tokens[self.pos] if self.pos < len(self.tokens) else None
        if tok is None:
            raise self.fail("expected a value")
        if tok.kind == "typed" and not strings_only:
            after = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
            if after is None or after.kind != "string":
                raise self.fail(f"{tok.text} needs a quoted value, e.g. {tok.text} '2024-01-31'")
            self.pos += 2
            self.out.append(f"{tok.text} {after.text}")
            return
        literal_words = ("TRUE", "FALSE", "NULL")
        ok = tok.kind == "string" or (
            not strings_only
            and (tok.kind == "number" or (tok.kind == "keyword" and tok.text in literal_words))
        )
        if not ok:
            raise self.fail("expected a quoted string" if strings_only else "expected a value")
        self.pos += 1
        self.out.append(tok.text)


def _tokens(text: str, where: str) -> list[_Tok]:
    found: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            start = len(text) - len(text[pos:].lstrip())
            raise VectorIndexError(
                f"filter {text!r} on {where}: {text[start]!r} (character {start + 1}) is not "
                f"allowed; {_ALLOWED}"
            )
        kind = match.lastgroup or ""
        value = match.group(kind)
        at = match.start(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        elif kind == "word" and value.upper() in _TYPED:
            kind, value = "typed", value.upper()
        found.append(_Tok(kind, value, at))
        pos = match.end()
    return found


def check_filter(text: str, columns: Collection[str], *, where: str) -> str:
    """``text`` validated and rebuilt from its tokens (what LanceDB is given)."""
    if not isinstance(text, str) or not text.strip():
        raise VectorIndexError(f"filter on {where} is empty; {_ALLOWED}")
    if len(text) > MAX_FILTER_CHARS:
        raise VectorIndexError(
            f"filter on {where} has {len(text)} characters (at most {MAX_FILTER_CHARS})"
        )
    parser = _Parser(text, columns, where)
    parser.expr()
    if parser.pos != len(parser.tokens):
        raise parser.fail("expected the end of the expression (one expression only)")
    return " ".join(parser.out)
