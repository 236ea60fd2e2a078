"""SQL over the lakehouse: DuckDB scanning delta-rs Arrow datasets.

Tables are referenced by three-part names. Time travel appends ``@v<N>`` (a version)
or ``@<yyyyMMddHHmmss[SSS]>`` (a UTC timestamp), as Databricks SQL does::

    SELECT carrier, count(*) FROM dev.silver.flights@v3 GROUP BY carrier

Queries are read-only by default: statements are classified with DuckDB's parser and
only queries (and EXPLAIN [ANALYZE] of a query) run. With ``read_only=False`` two write
forms are accepted and become Delta commits: ``CREATE [OR REPLACE] TABLE cat.schema.t AS
<query>`` and ``INSERT INTO cat.schema.t <query>``; a batch of statements commits only
once every statement has been computed and checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from lakeforge.errors import SqlError
from lakeforge.lakehouse._arrow import conform
from lakeforge.lakehouse._duckdb import (
    connect_duckdb,
    parse_tree,
    register_snapshot,
    string_list,
    tree_nodes,
)
from lakeforge.lakehouse._names import TableName

if TYPE_CHECKING:
    from lakeforge.lakehouse._tables import Lakehouse, WriteMode

_TIMESTAMP = re.compile(r"^\d{8}(\d{6}(\d{3})?)?$")


@dataclass(frozen=True)
class TableRef:
    """A lakehouse table referenced in a query, with its optional time-travel suffix."""

    name: TableName
    version: int | None
    as_of: datetime | None
    start: int
    end: int
    has_alias: bool


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str
    kind: duckdb.token_type


def _tokens(query: str) -> list[_Token]:
    raw = duckdb.tokenize(query)
    out = []
    for i, (start, kind) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else len(query)
        text = query[start:end].rstrip()
        out.append(_Token(start, start + len(text), text, kind))
    return out


def _ident(token: _Token) -> str | None:
    if token.kind not in (duckdb.token_type.identifier, duckdb.token_type.keyword):
        return None
    text = token.text
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _parse_suffix(token: _Token, name: TableName) -> tuple[int | None, datetime | None]:
    text = token.text
    if re.fullmatch(r"[vV]\d+", text):
        return int(text[1:]), None
    if _TIMESTAMP.match(text):
        padded = text.ljust(17, "0")
        stamp = datetime.strptime(padded[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        return None, stamp.replace(microsecond=int(padded[14:]) * 1000)
    raise SqlError(
        f"bad time-travel suffix @{text} on {name}: use @v<version> (e.g. @v3) or "
        "@<yyyyMMddHHmmss> (e.g. @20240501120000)"
    )


def find_table_refs(query: str, catalogs: list[str]) -> list[TableRef]:
    """Three-part names whose catalog is one of ``catalogs``, skipping strings and comments."""
    tokens = _tokens(query)
    refs: list[TableRef] = []
    known = {c.lower() for c in catalogs}
    i = 0
    while i + 4 < len(tokens):
        window = tokens[i : i + 5]
        parts = [_ident(window[0]), _ident(window[2]), _ident(window[4])]
        preceded_by_dot = i > 0 and tokens[i - 1].text == "."
        if (
            not preceded_by_dot
            and all(parts)
            and window[1].text == "."
            and window[3].text == "."
            and window[0].end == window[1].start
            and parts[0].lower() in known  # type: ignore[union-attr]
        ):
            name = TableName.parse(".".join(parts))  # type: ignore[arg-type]
            end_index = i + 4
            version = as_of = None
            if end_index + 2 < len(tokens) and tokens[end_index + 1].text == "@":
                version, as_of = _parse_suffix(tokens[end_index + 2], name)
                end_index += 2
            nxt = tokens[end_index + 1] if end_index + 1 < len(tokens) else None
            has_alias = nxt is not None and (
                nxt.kind == duckdb.token_type.identifier or nxt.text.upper() == "AS"
            )
            refs.append(
                TableRef(name, version, as_of, window[0].start, tokens[end_index].end, has_alias)
            )
            i = end_index + 1
            continue
        i += 1
    return refs


_FILTER_ALLOWED = (
    "a filter is one SQL expression over the table's columns, e.g. "
    "\"carrier = 'UA' AND distance > 500\"; statements, subqueries and table functions "
    "are not allowed"
)


@dataclass(frozen=True)
class RowFilter:
    """A validated row filter: one SQL expression and the column names it references."""

    expression: duckdb.Expression
    columns: frozenset[str]


def parse_filter(where: str, *, label: str) -> RowFilter:
    """Parse ``where`` as exactly one SQL expression without subqueries, or raise SqlError."""
    try:
        expression = duckdb.SQLExpression(where)
    except duckdb.Error as exc:
        raise SqlError(
            f"filter {where!r} on {label} is not one SQL expression ({_first_line(exc)}): "
            + _FILTER_ALLOWED
        ) from None
    tree = parse_tree(f"SELECT 1 WHERE {where}")
    statements: list[dict[str, Any]] = tree.get("statements", [])
    if tree.get("error") or len(statements) != 1:
        raise SqlError(f"filter {where!r} on {label} is not one SQL expression: {_FILTER_ALLOWED}")
    nodes = list(tree_nodes(statements[0]["node"]["where_clause"]))
    if any(node.get("class") == "SUBQUERY" for node in nodes):
        raise SqlError(f"filter {where!r} on {label} has subqueries: {_FILTER_ALLOWED}")
    columns = frozenset(
        node["column_names"][-1].lower() for node in nodes if node.get("class") == "COLUMN_REF"
    )
    return RowFilter(expression, columns)


def query_dataset(
    source: pads.Dataset | pa.RecordBatchReader,
    *,
    columns: list[str] | None,
    where: str,
    label: str,
) -> pa.Table:
    """Rows of ``source`` where the SQL expression ``where`` holds (see :func:`parse_filter`).

    DuckDB evaluates the filter on a connection without any file access: ``source``
    is an Arrow dataset or stream, so nothing else is reachable from the expression.
    """
    row_filter = parse_filter(where, label=label)
    con = _locked(connect_duckdb())
    try:
        relation = con.from_arrow(source).filter(row_filter.expression)
        if columns:
            relation = relation.select(*(duckdb.ColumnExpression(c) for c in columns))
        return relation.to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(
            f"filter {where!r} on {label}: {_first_line(exc)} ({_FILTER_ALLOWED})"
        ) from None
    finally:
        con.close()


def _locked(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Turn file access off (except paths already allowed) and freeze the settings."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


_WRITE_HEAD = re.compile(
    r"(?:(?P<create>CREATE\s+(?P<replace>OR\s+REPLACE\s+)?TABLE)|(?P<insert>INSERT\s+INTO)"
    r"|(?P<drop>DROP\s+TABLE(?P<if_exists>\s+IF\s+EXISTS)?))\s+$",
    re.IGNORECASE,
)
_WRITE_TARGET = re.compile(r"__lf_w(\d+)")
_READ_ONLY_HINT = (
    "SQL is read-only by default: only queries (SELECT, and EXPLAIN of a SELECT) run; pass "
    "--write / read_only=False for CREATE [OR REPLACE] TABLE ... AS, INSERT INTO and DROP TABLE"
)
_WRITE_FORMS = (
    "only CREATE [OR REPLACE] TABLE catalog.schema.table AS <query>, "
    "INSERT INTO catalog.schema.table <query> and DROP TABLE [IF EXISTS] catalog.schema.table "
    "can write to the lakehouse"
)


@dataclass(frozen=True)
class _Query:
    """A query to run; ``explain`` is the EXPLAIN prefix when the statement explains it."""

    text: str
    explain: str = ""


@dataclass(frozen=True)
class _Write:
    """A CREATE TABLE AS or INSERT INTO whose data comes from the query ``body``."""

    target: TableName
    create: bool
    replace: bool
    body: str


@dataclass(frozen=True)
class _Drop:
    """A DROP TABLE of a lakehouse table."""

    target: TableName
    if_exists: bool


@dataclass(frozen=True)
class _Prepared:
    """A write whose data is computed and checked, ready to commit."""

    target: TableName
    data: pa.Table
    mode: WriteMode
    exists: bool


class SqlSession:
    """Runs SQL for one target; registers each referenced table as a DuckDB view.

    Every statement is classified with DuckDB's parser before anything runs, and the
    executor only ever submits one ``SELECT * FROM (<query>)`` (or an EXPLAIN of one),
    which DuckDB's grammar cannot turn into COPY, ATTACH, SET or any other write.
    With ``read_only=False`` every statement is computed and checked before the first
    write commits, so a batch that fails leaves every table as it was.
    """

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse

    @staticmethod
    def _rewrite(
        query: str, refs: list[TableRef]
    ) -> tuple[str, dict[str, TableRef], list[TableName]]:
        """Replace lakehouse names with dataset views (``__lf_tN``) or write targets (``__lf_wN``)."""
        views: dict[tuple[TableName, int | None, datetime | None], str] = {}
        scans: dict[str, TableRef] = {}
        targets: list[TableName] = []
        pieces: list[str] = []
        cursor = 0
        for ref in refs:
            pieces.append(query[cursor : ref.start])
            cursor = ref.end
            if _WRITE_HEAD.search(pieces[-1]):
                if ref.version is not None or ref.as_of is not None:
                    raise SqlError(f"cannot write to a past version of {ref.name}")
                pieces.append(f"__lf_w{len(targets)}")
                targets.append(ref.name)
                continue
            view = views.setdefault((ref.name, ref.version, ref.as_of), f"__lf_t{len(views)}")
            scans[view] = ref
            pieces.append(view + ("" if ref.has_alias else f' AS "{ref.name.table}"'))
        pieces.append(query[cursor:])
        return "".join(pieces), scans, targets

    def _plan(
        self, query: str, *, read_only: bool
    ) -> tuple[dict[str, TableRef], list[_Query | _Write | _Drop]]:
        """The views to register and what each statement of ``query`` does, all checked."""
        if not query.strip():
            raise SqlError("empty SQL query")
        refs = find_table_refs(query, self.lakehouse.project.catalogs)
        bound, scans, targets = self._rewrite(query, refs)
        try:
            statements = duckdb.extract_statements(bound)
        except duckdb.Error as exc:
            raise SqlError(f"SQL does not parse: {_first_line(exc)}") from None
        if not statements:
            raise SqlError("no SQL statement found")
        return scans, [_classify(s, targets, read_only=read_only) for s in statements]

    def run(self, query: str, *, read_only: bool = True) -> pa.Table:
        """Run ``query`` and return the result of its last statement as an Arrow table."""
        scans, plan = self._plan(query, read_only=read_only)
        written = [step.target for step in plan if isinstance(step, _Write | _Drop)]
        twice = sorted({str(t) for t in written if written.count(t) > 1})
        if twice:
            raise SqlError(
                f"{', '.join(twice)} is written by more than one statement: run each write "
                "as its own call"
            )
        con = connect_duckdb()
        try:
            self._register(con, scans)
            results: list[pa.Table | _Prepared | _Drop] = [
                self._prepare(con, step)
                if isinstance(step, _Write)
                else self._check_drop(step)
                if isinstance(step, _Drop)
                else self._query(con, step)
                for step in plan
            ]
        finally:
            con.close()
        last: pa.Table | None = None
        for result in results:
            if isinstance(result, _Prepared):
                last = self._commit(result)
            elif isinstance(result, _Drop):
                last = self._drop(result)
            else:
                last = result
        assert last is not None
        return last

    def stream(self, query: str, *, batch_rows: int) -> pa.RecordBatchReader:
        """Run one read-only query and stream its result in batches of about ``batch_rows``.

        The same checks as :meth:`run` with ``read_only=True``; the snapshots are pinned
        when the call returns. The DuckDB connection stays open while the stream is read
        and closes once it is exhausted, fails or is dropped (``close()`` of a pyarrow
        reader over Python batches releases nothing: drop the reader to stop early).
        """
        if batch_rows < 1:
            raise SqlError(f"batch_rows must be at least 1, got {batch_rows}")
        scans, plan = self._plan(query, read_only=True)
        if len(plan) != 1:
            raise SqlError(
                f"a streamed query is one statement, got {len(plan)}: run the others first"
            )
        step = plan[0]
        assert isinstance(step, _Query)  # read-only: nothing else gets past _classify
        con = connect_duckdb()
        try:
            self._register(con, scans)
            reader: pa.RecordBatchReader = con.sql(self._query_text(step)).to_arrow_reader(
                batch_rows
            )
        except duckdb.Error as exc:
            con.close()
            raise self._failed(exc) from None
        except BaseException:
            con.close()
            raise
        batches = self._drain(con, reader)
        next(batches)  # started, so closing the stream runs its cleanup
        return pa.RecordBatchReader.from_batches(reader.schema, batches)

    def _drain(
        self, con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader
    ) -> Iterator[pa.RecordBatch | None]:
        """Yield None once, then ``reader``'s batches; close the connection at the end."""
        try:
            yield None
            yield from reader
        except (duckdb.Error, OSError) as exc:  # DuckDB's Arrow stream raises OSError
            raise self._failed(exc) from None
        finally:
            reader.close()
            con.close()

    def _register(self, con: duckdb.DuckDBPyConnection, scans: dict[str, TableRef]) -> None:
        """Expose each referenced snapshot to DuckDB as a view, then lock file access down."""
        allowed: list[str] = []
        for view, ref in scans.items():
            allowed += register_snapshot(
                con, view, self.lakehouse, ref.name, version=ref.version, as_of=ref.as_of
            )
        if allowed:
            con.execute(f"SET allowed_paths = {string_list(allowed)}")
        _locked(con)

    def _query(self, con: duckdb.DuckDBPyConnection, query: _Query) -> pa.Table:
        return self._fetch(con, self._query_text(query))

    @staticmethod
    def _query_text(query: _Query) -> str:
        """The one statement submitted for ``query``: a wrapped SELECT, or an EXPLAIN of one."""
        wrapped = _wrapped_query(query.text)
        if not query.explain:
            return wrapped
        text = f"{query.explain}\n{wrapped}"
        parsed = duckdb.extract_statements(text)
        if len(parsed) != 1 or parsed[0].type != duckdb.StatementType.EXPLAIN:
            raise SqlError(f"EXPLAIN of {query.text!r} is not allowed: {_READ_ONLY_HINT}")
        return text

    def _select(self, con: duckdb.DuckDBPyConnection, text: str) -> pa.Table:
        """Run one query, as ``SELECT * FROM (<text>)``: anything but a query fails to parse."""
        return self._fetch(con, _wrapped_query(text))

    def _fetch(self, con: duckdb.DuckDBPyConnection, text: str) -> pa.Table:
        try:
            return con.sql(text).to_arrow_table()
        except duckdb.Error as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> SqlError:
        message = _first_line(exc)
        if "Catalog" in message and "does not exist" in message:
            message += f" (lakehouse catalogs: {', '.join(self.lakehouse.project.catalogs)})"
        return SqlError(f"SQL failed: {message}")

    def _prepare(self, con: duckdb.DuckDBPyConnection, write: _Write) -> _Prepared:
        """Compute a write's data and check it against the target, committing nothing."""
        target = write.target
        self.lakehouse.owner_of(target, write=True)
        exists = self.lakehouse.exists(target)
        if write.create and not write.replace and exists:
            raise SqlError(f"table {target} already exists (use CREATE OR REPLACE TABLE)")
        data = self._select(con, write.body)
        if write.create:
            return _Prepared(target, data, "overwrite", exists)
        schema = self.lakehouse.schema(target)
        data = _positional(target, data, schema.names)
        return _Prepared(
            target,
            conform(data, schema, table=str(target), allow_new_columns=False),
            "append",
            exists,
        )

    def _check_drop(self, drop: _Drop) -> _Drop:
        """Check a DROP TABLE may run (the target's own table, existing unless IF EXISTS)."""
        self.lakehouse.owner_of(drop.target, write=True)
        if not drop.if_exists and not self.lakehouse.exists(drop.target):
            raise SqlError(f"DROP TABLE {drop.target}: the table does not exist (use IF EXISTS)")
        return drop

    def _drop(self, drop: _Drop) -> pa.Table:
        existed = self.lakehouse.exists(drop.target)
        if existed:
            self.lakehouse.drop(drop.target)
        return pa.table({"table": [str(drop.target)], "dropped": [existed]})

    def _commit(self, prepared: _Prepared) -> pa.Table:
        written = self.lakehouse.write(
            prepared.target,
            prepared.data,
            mode=prepared.mode,
            schema_evolution="overwrite"
            if prepared.mode == "overwrite" and prepared.exists
            else None,
        )
        return pa.table(
            {
                "table": [str(written.table)],
                "version": [written.version],
                "rows_written": [written.rows_written],
            }
        )


def _classify(
    statement: duckdb.Statement, targets: list[TableName], *, read_only: bool
) -> _Query | _Write | _Drop:
    """What one parsed statement may do: a query, an EXPLAIN of a query, or a lakehouse write."""
    kind = statement.type
    if kind == duckdb.StatementType.SELECT:
        return _Query(statement.query)
    if kind == duckdb.StatementType.EXPLAIN:
        prefix, inner = _split_explain(statement.query)
        try:
            parsed = duckdb.extract_statements(inner)
        except duckdb.Error as exc:
            raise SqlError(f"SQL does not parse: {_first_line(exc)}") from None
        if len(parsed) != 1 or parsed[0].type != duckdb.StatementType.SELECT:
            inner_kind = parsed[0].type.name if len(parsed) == 1 else "multi-statement"
            raise SqlError(
                f"EXPLAIN of a {inner_kind} statement is not allowed: only queries "
                "(SELECT ...) can be explained"
            )
        return _Query(parsed[0].query, explain=prefix)
    writes = (duckdb.StatementType.CREATE, duckdb.StatementType.INSERT, duckdb.StatementType.DROP)
    if read_only or kind not in writes:
        allowed = _READ_ONLY_HINT if read_only else _WRITE_FORMS
        raise SqlError(f"{kind.name} statements are not allowed: {allowed}")
    text = statement.query
    match = _WRITE_TARGET.search(text)
    head = _WRITE_HEAD.search(text[: match.start()]) if match else None
    if match is None or head is None:
        raise SqlError(_WRITE_FORMS)
    target = targets[int(match.group(1))]
    if head.group("drop"):
        if text[match.end() :].strip().rstrip(";").strip():
            raise SqlError(f"DROP TABLE {target}: nothing may follow the table name")
        return _Drop(target, bool(head.group("if_exists")))
    body = text[match.end() :].lstrip()
    if head.group("create"):
        if body[:2].upper() != "AS":
            raise SqlError(f"CREATE TABLE {target} needs AS <query>")
        body = body[2:].lstrip()
    return _Write(target, bool(head.group("create")), bool(head.group("replace")), body)


def _split_explain(text: str) -> tuple[str, str]:
    """``EXPLAIN [ANALYZE | (options)] <statement>`` as (prefix, statement)."""
    tokens = [t for t in _tokens(text) if t.kind != duckdb.token_type.comment]
    end = 1
    if len(tokens) > 1 and tokens[1].text.upper() in ("ANALYZE", "ANALYSE"):
        end = 2
    elif len(tokens) > 1 and tokens[1].text == "(":
        depth = 0
        for index, token in enumerate(tokens[1:], start=1):
            depth += {"(": 1, ")": -1}.get(token.text, 0)
            if depth == 0:
                end = index + 1
                break
    if end >= len(tokens):
        raise SqlError(f"EXPLAIN needs a query to explain: {text.strip()!r}")
    return text[: tokens[end - 1].end], text[tokens[end].start :]


def _wrapped_query(text: str) -> str:
    """``SELECT * FROM (<text>)``, checked to be exactly one SELECT statement."""
    wrapped = f"SELECT * FROM (\n{text.strip().rstrip(';')}\n)"
    try:
        parsed = duckdb.extract_statements(wrapped)
    except duckdb.Error as exc:
        raise SqlError(f"not a query ({_first_line(exc)}): {_READ_ONLY_HINT}") from None
    if len(parsed) != 1 or parsed[0].type != duckdb.StatementType.SELECT:
        raise SqlError(f"not one query: {_READ_ONLY_HINT}")
    return wrapped


def _positional(target: TableName, data: pa.Table, columns: list[str]) -> pa.Table:
    """INSERT INTO matches columns by position, as SQL does."""
    if data.num_columns > len(columns):
        raise SqlError(
            f"INSERT INTO {target}: the query returns {data.num_columns} columns, the table "
            f"has {len(columns)} ({', '.join(columns)})"
        )
    return data.rename_columns(columns[: data.num_columns])


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
