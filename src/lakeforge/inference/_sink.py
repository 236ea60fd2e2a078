"""Where scored rows go: a Delta table (with its ``_errors`` table), or one file.

Each Delta commit carries an application transaction ``(app_id, version)``: the errors
are committed first, then the output, so the output table's transaction version says
how far a run got, and a rerun after a crash skips what is there and never duplicates.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from deltalake import CommitProperties, Transaction

from lakeforge.errors import LakeforgeError, SchemaMismatchError, TableNotFoundError
from lakeforge.inference._model import ERRORS_SCHEMA, ScoredBatch
from lakeforge.lakehouse import TableName, conform

if TYPE_CHECKING:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from lakeforge._workspace import Workspace

ERRORS_SUFFIX = "_errors"
FILE_FORMATS = (".parquet", ".csv")


class DeltaSink:
    """Appends scored rows to ``table`` and failed rows to ``errors_table``."""

    def __init__(self, ws: Workspace, table: str, *, errors_table: str | None = None) -> None:
        self.ws = ws
        self.table = ws.tables.name(table)
        self.errors_table = (
            ws.tables.name(errors_table)
            if errors_table is not None
            else self.table.sibling(self.table.table + ERRORS_SUFFIX)
        )
        self._found: set[TableName] = set()  # tables seen to exist (one check each)

    def check(self, schema: pa.Schema) -> None:
        """Refuse an existing output (or errors) table whose schema conflicts with
        ``schema`` (the rows scoring will write), before anything is scored."""
        for table, wanted in ((self.table, schema), (self.errors_table, ERRORS_SCHEMA)):
            self.ws.tables.owner_of(table, write=True)
            if not self.ws.tables.exists(table):
                continue
            try:
                conform(
                    wanted.empty_table(),
                    self.ws.tables.schema(table),
                    table=str(table),
                    allow_new_columns=False,
                )
            except SchemaMismatchError as exc:
                raise SchemaMismatchError(
                    f"scoring output refused before scoring: {exc}\n"
                    "write to a new table, or drop or rename this one",
                ) from None

    def committed(self, app_id: str) -> int | None:
        """The version of application transaction ``app_id`` the output table holds."""
        return self._transaction(self.table, app_id)

    def commit(self, scored: ScoredBatch, *, app_id: str, version: int) -> int | None:
        """Commit the errors, then the output, each with transaction ``(app_id, version)``;
        the output table's new version, or None when it already had this version (or
        there was nothing to create the output table with)."""
        properties = CommitProperties(app_transactions=[Transaction(app_id, version)])
        if scored.errors.num_rows and not self._holds(self.errors_table, app_id, version):
            self.ws.tables.write(
                self.errors_table, scored.errors, commit_properties=properties, quality_log=False
            )
        if self._holds(self.table, app_id, version):
            return None
        if not scored.output.num_rows and not self.ws.tables.exists(self.table):
            return None  # nothing to create the table from; a rerun scores these rows again
        # A concurrent run committing the same version makes this write fail (the
        # lakehouse refuses a transaction version the table already has).
        result = self.ws.tables.write(
            self.table, scored.output, commit_properties=properties, quality_log=False
        )
        return result.version

    def _holds(self, table: TableName, app_id: str, version: int) -> bool:
        done = self._transaction(table, app_id)
        return done is not None and done >= version

    def _transaction(self, table: TableName, app_id: str) -> int | None:
        """The version of transaction ``app_id`` in ``table`` as of its latest commit."""
        if table not in self._found:
            if not self.ws.tables.exists(table):
                return None
            self._found.add(table)
        try:
            dt = self.ws.tables.delta(table)
        except TableNotFoundError:  # dropped meanwhile
            self._found.discard(table)
            return None
        done = dt.transaction_version(app_id)
        return None if done is None else int(done)


class FileSink:
    """Writes scored rows to one Parquet or CSV file: a temporary file in the same folder,
    renamed into place when :meth:`close` is called with ``ok=True`` (atomic)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in FILE_FORMATS:
            raise LakeforgeError(f"output file {self.path} must end in {' or '.join(FILE_FORMATS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self.errors: list[pa.Table] = []

    @property
    def errors_path(self) -> Path:
        """Where failed rows go: ``<name>_errors<suffix>`` beside the output."""
        return self.path.with_name(self.path.stem + ERRORS_SUFFIX + self.path.suffix)

    def write(self, scored: ScoredBatch) -> None:
        """Append a scored batch to the temporary file."""
        if scored.errors.num_rows:
            self.errors.append(scored.errors)
        if self._writer is None:
            self._open(scored.output.schema)
        assert self._writer is not None
        self._writer.write_table(scored.output)

    def _open(self, schema: pa.Schema) -> None:
        self._tmp = _temp_beside(self.path)
        self._writer = _writer(self._tmp, schema)

    def close(self, *, ok: bool, schema: pa.Schema | None = None) -> None:
        """Finish: rename the file into place (``ok``) or remove it. ``schema`` gives the
        file's columns when no batch was written."""
        if self._writer is None and ok and schema is not None:
            self._open(schema)
        if self._writer is not None:
            self._writer.close()
        assert self._tmp is not None or not ok
        if self._tmp is None:
            return
        if not ok:
            self._tmp.unlink(missing_ok=True)
            return
        if self.errors:
            _write_file(self.errors_path, pa.concat_tables(self.errors))
        self._tmp.replace(self.path)


def _temp_beside(path: Path) -> Path:
    """A new empty file in ``path``'s folder with its suffix (renamed into place later)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter | pacsv.CSVWriter:
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        return pacsv.CSVWriter(str(path), schema)
    import pyarrow.parquet as pq

    return pq.ParquetWriter(str(path), schema)


def _write_file(path: Path, data: pa.Table) -> None:
    tmp = _temp_beside(path)
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(data, str(tmp))
    else:
        import pyarrow.parquet as pq

        pq.write_table(data, str(tmp))
    tmp.replace(path)
