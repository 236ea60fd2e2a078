"""SQL over the lakehouse: DuckDB scanning delta-rs Arrow datasets.

Tables are referenced by three-part names. Time travel appends ``@v<N>`` (a version)
or ``@<yyyyMMddHHmmss[SSS]>`` (a UTC timestamp), as Databricks SQL does::

    SELECT carrier, count(*) FROM dev.silver.flights@v3 GROUP BY carrier

Queries are read-only by default. With ``read_only=False`` two write forms are
accepted and become Delta commits: ``CREATE [OR REPLACE] TABLE cat.schema.t AS <query>``
and ``INSERT INTO cat.schema.t <query>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from lakeforge.errors import SqlError
from lakeforge.lakehouse._names import TableName

if TYPE_CHECKING:
    from lakeforge.lakehouse._tables import Lakehouse, WriteMode

_READ_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
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


def connect() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the settings Lakeforge relies on."""
    con = duckdb.connect()
    # Without this DuckDB may plan ASOF joins over Arrow scans as a nested loop (500x slower).
    con.execute("SET asof_loop_join_threshold = 0")
    return con


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


def query_dataset(
    dataset: pads.Dataset, *, columns: list[str] | None, where: str, label: str
) -> pa.Table:
    """Filter a dataset with a SQL predicate through DuckDB (pushdown into the Arrow scan)."""
    con = connect()
    try:
        con.register("__lf_scan", dataset)
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        return con.sql(f"SELECT {select} FROM __lf_scan WHERE {where}").to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(f"filter {where!r} on {label}: {_first_line(exc)}") from None
    finally:
        con.close()


_WRITE_HEAD = re.compile(
    r"(?:(?P<create>CREATE\s+(?P<replace>OR\s+REPLACE\s+)?TABLE)|(?P<insert>INSERT\s+INTO))\s+$",
    re.IGNORECASE,
)
_WRITE_TARGET = re.compile(r"__lf_w(\d+)")


class SqlSession:
    """Runs SQL for one target; registers each referenced table as an Arrow dataset."""

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

    def run(self, query: str, *, read_only: bool = True) -> pa.Table:
        """Run ``query`` and return the result of its last statement as an Arrow table."""
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
        for statement in statements:
            if read_only and statement.type not in _READ_TYPES:
                raise SqlError(
                    f"{statement.type.name} statements are not allowed: SQL is read-only by "
                    "default (pass --write / read_only=False for CREATE TABLE AS and INSERT INTO)"
                )
        con = connect()
        try:
            self._register(con, scans)
            result: pa.Table | None = None
            for statement in statements:
                if statement.type in _READ_TYPES:
                    result = self._select(con, statement.query)
                else:
                    result = self._write(con, statement.query, targets)
            assert result is not None
            return result
        finally:
            con.close()

    def _register(self, con: duckdb.DuckDBPyConnection, scans: dict[str, TableRef]) -> None:
        """Expose each referenced snapshot to DuckDB as a view, then lock file access down."""
        allowed: list[str] = []
        for view, ref in scans.items():
            allowed += register_snapshot(
                con, view, self.lakehouse, ref.name, version=ref.version, as_of=ref.as_of
            )
        if allowed:
            con.execute(f"SET allowed_paths = {_string_list(allowed)}")
        con.execute("SET enable_external_access = false")

    def _select(self, con: duckdb.DuckDBPyConnection, text: str) -> pa.Table:
        try:
            return con.sql(text).to_arrow_table()
        except duckdb.Error as exc:
            message = _first_line(exc)
            if "Catalog" in message and "does not exist" in message:
                message += f" (lakehouse catalogs: {', '.join(self.lakehouse.project.catalogs)})"
            raise SqlError(f"SQL failed: {message}") from None

    def _write(
        self, con: duckdb.DuckDBPyConnection, text: str, targets: list[TableName]
    ) -> pa.Table:
        match = _WRITE_TARGET.search(text)
        head = _WRITE_HEAD.search(text[: match.start()]) if match else None
        if match is None or head is None:
            raise SqlError(
                "only CREATE [OR REPLACE] TABLE catalog.schema.table AS <query> and "
                "INSERT INTO catalog.schema.table <query> can write to the lakehouse"
            )
        target = targets[int(match.group(1))]
        body = text[match.end() :].lstrip()
        if head.group("create"):
            if body[:2].upper() != "AS":
                raise SqlError(f"CREATE TABLE {target} needs AS <query>")
            body = body[2:].lstrip()
            if not head.group("replace") and self.lakehouse.exists(target):
                raise SqlError(f"table {target} already exists (use CREATE OR REPLACE TABLE)")
        data = self._select(con, body)
        exists = self.lakehouse.exists(target)
        if head.group("insert"):
            data = self._positional(target, data)
        mode: WriteMode = "append" if head.group("insert") else "overwrite"
        written = self.lakehouse.write(
            target,
            data,
            mode=mode,
            schema_evolution="overwrite" if mode == "overwrite" and exists else None,
        )
        return pa.table(
            {
                "table": [str(written.table)],
                "version": [written.version],
                "rows_written": [written.rows_written],
            }
        )

    def _positional(self, target: TableName, data: pa.Table) -> pa.Table:
        """INSERT INTO matches columns by position, as SQL does."""
        columns = self.lakehouse.schema(target).names
        if data.num_columns > len(columns):
            raise SqlError(
                f"INSERT INTO {target}: the query returns {data.num_columns} columns, the table "
                f"has {len(columns)} ({', '.join(columns)})"
            )
        return data.rename_columns(columns[: data.num_columns])


def register_snapshot(
    con: duckdb.DuckDBPyConnection,
    view: str,
    lakehouse: Lakehouse,
    name: TableName | str,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> list[str]:
    """Make a table snapshot scannable by DuckDB as ``view``; the local files it reads.

    Plain local snapshots are read by DuckDB's own parallel Parquet reader (DuckDB
    reads an Arrow dataset as one stream); others (partitioned, remote, deletion
    vectors) through delta-rs's Arrow dataset.
    """
    native = lakehouse.parquet_snapshot(name, version=version, as_of=as_of)
    if native is None:
        con.register(view, lakehouse.scan(name, version=version, as_of=as_of))
        return []
    files, schema = native
    columns = ", ".join(_quote_ident(c) for c in schema.names)
    con.execute(
        f"CREATE TEMP VIEW {view} AS SELECT {columns} FROM "
        f"read_parquet({_string_list(files)}, union_by_name = true)"
    )
    return files


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
