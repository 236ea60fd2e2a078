"""Writes: appends and overwrites through expectations (quarantine, quality log), merges, deletes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from lakeforge.errors import (
    LakeforgeError,
    SchemaMismatchError,
)
from lakeforge.lakehouse._arrow import (
    ArrowData,
    conform,
    conform_stream,
    materialize,
    primary_keys_of,
    to_arrow,
    with_key_metadata,
)
from lakeforge.lakehouse._catalog import CDF_CONFIG, Catalog
from lakeforge.lakehouse._commits import (
    check_transactions,
    own_commit,
    retry_conflicts,
    with_write_id,
)
from lakeforge.lakehouse._names import TableName
from lakeforge.project import Target

if TYPE_CHECKING:
    from lakeforge.lakehouse._expectations import Expectation, QualityOutcome

SYSTEM_SCHEMA = "system"
QUALITY_LOG = "quality_log"

WriteMode = Literal["append", "overwrite"]
SchemaEvolution = Literal["merge", "overwrite"]

_QUALITY_LOG_SCHEMA = pa.schema(
    [
        pa.field("write_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("table_version", pa.int64()),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("rule", pa.string()),
        pa.field("expression", pa.string()),
        pa.field("action", pa.string()),
        pa.field("rows_in", pa.int64(), nullable=False),
        pa.field("rows_failed", pa.int64()),
        pa.field("rows_written", pa.int64(), nullable=False),
        pa.field("rows_dropped", pa.int64(), nullable=False),
    ]
)


@dataclass
class WriteResult:
    """The outcome of one write: the version it made and what the expectations did."""

    table: TableName
    version: int | None
    operation: str
    rows_in: int
    rows_written: int
    rows_dropped: int = 0
    rule_failures: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class TableWriter(Catalog):
    """The write side of the lakehouse: every commit a table gets goes through here."""

    # -- writes -----------------------------------------------------------------------

    def write(
        self,
        name: str | TableName,
        data: Any,
        *,
        mode: WriteMode = "append",
        expectations: Sequence[Expectation] = (),
        schema_evolution: SchemaEvolution | None = None,
        replace_where: str | None = None,
        partition_by: Sequence[str] | None = None,
        primary_keys: Sequence[str] | None = None,
        commit_properties: CommitProperties | None = None,
        quality_log: bool = True,
    ) -> WriteResult:
        """Append or overwrite rows, creating the table on first write.

        Data is checked against the table's schema: narrower types are widened, missing
        nullable columns become null, new columns need ``schema_evolution='merge'``.
        Expectations run first; a failing ``expect_or_fail`` writes nothing. Either the
        whole write commits as one new version or the table stays at its previous version.
        Each write is recorded in ``<catalog>.system.quality_log`` unless ``quality_log``
        is false (for high-frequency machine writes such as inference logs). With other
        writers at work, the result is this write's own commit, and a commit that conflicts
        with theirs is redone on the new snapshot (a stream, which cannot be replayed, fails).
        """
        table = self.name(name)
        owner = self.owner_of(table, write=True)
        arrow = to_arrow(data, what=f"write to {table}")
        dt = self._open(table, owner)
        if dt is not None:
            arrow = self._conform_write(dt, arrow, table, mode, expectations, schema_evolution)
        elif primary_keys:
            arrow = materialize(arrow)
            arrow = arrow.cast(
                with_key_metadata(
                    arrow.schema, primary_keys=list(primary_keys), comments=None, table=str(table)
                )
            )
        write_id = uuid.uuid4().hex
        outcome: QualityOutcome | None = None
        if expectations:
            from lakeforge.lakehouse._expectations import apply_expectations

            outcome = apply_expectations(materialize(arrow), list(expectations), table=str(table))
            arrow = outcome.passed
            if outcome.quarantined is not None and outcome.quarantined.num_rows:
                # Quarantine first: if the main write then fails, a retry may repeat these
                # rows (each carries its write id) but a dropped row is never lost.
                self._write_quarantine(table, outcome.quarantined, write_id)
        properties = with_write_id(commit_properties, write_id)
        options: dict[str, Any] = {
            "mode": mode,
            "schema_mode": schema_evolution,
            "predicate": replace_where,
            "storage_options": owner.storage_options or None,
            "commit_properties": properties,
        }
        what = f"write to {table}"

        def commit(attempt: int) -> tuple[DeltaTable, int]:
            """Commit on the current snapshot; a snapshot and a version at or before ours."""
            nonlocal dt, arrow
            if attempt > 1:  # lost a race: start again from the new snapshot
                dt = self._open(table, owner)
                if dt is not None:
                    arrow = self._conform_write(
                        dt, arrow, table, mode, expectations, schema_evolution
                    )
            if dt is None:
                write_deltalake(
                    self.location(table),
                    arrow,
                    **options,
                    partition_by=list(partition_by or []) or None,
                    name=str(table),
                    configuration=CDF_CONFIG,
                )
                return self.delta(table), 0
            check_transactions(dt, properties, what)
            write_deltalake(dt, arrow, **options)
            return dt, dt.version()  # the snapshot right after our own commit

        try:
            snapshot, since = retry_conflicts(
                commit, what=what, replayable=isinstance(arrow, pa.Table)
            )
        except DeltaError as exc:
            raise LakeforgeError(f"{what} failed; the table is unchanged: {exc}") from None
        version, metrics = own_commit(snapshot, write_id, since=since)
        rows_written = int(metrics.get("num_added_rows", 0))
        result = WriteResult(
            table=table,
            version=version,
            operation=mode,
            rows_in=outcome.rows_in if outcome else rows_written,
            rows_written=rows_written,
            rows_dropped=outcome.rows_dropped if outcome else 0,
            rule_failures={r.rule.name: r.failed for r in outcome.results} if outcome else {},
            metrics=metrics,
        )
        if quality_log or outcome is not None:
            self._log_quality(result, outcome, write_id)
        return result

    def _conform_write(
        self,
        dt: DeltaTable,
        arrow: ArrowData,
        table: TableName,
        mode: WriteMode,
        expectations: Sequence[Expectation],
        schema_evolution: SchemaEvolution | None,
    ) -> ArrowData:
        """The data checked against (and widened to) the table's current schema."""
        current = pa.schema(dt.schema().to_arrow())
        if schema_evolution == "overwrite" and mode == "overwrite":
            return materialize(arrow)
        if isinstance(arrow, pa.RecordBatchReader) and not expectations and not schema_evolution:
            return conform_stream(arrow, current, table=str(table))
        return conform(
            materialize(arrow),
            current,
            table=str(table),
            allow_new_columns=schema_evolution == "merge",
        )

    def _open(self, table: TableName, owner: Target) -> DeltaTable | None:
        """The table, or None when it does not exist yet."""
        try:
            return DeltaTable(self.location(table), storage_options=owner.storage_options or None)
        except DeltaTableNotFound:
            return None

    def _write_quarantine(self, table: TableName, rows: pa.Table, write_id: str) -> None:
        from lakeforge.lakehouse._expectations import QUARANTINE_SUFFIX

        quarantine = table.sibling(table.table + QUARANTINE_SUFFIX)
        rows = rows.append_column("_write_id", pa.repeat(pa.scalar(write_id), rows.num_rows))
        rows = rows.append_column(
            "_quarantined_at",
            pa.repeat(pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")), rows.num_rows),
        )

        def append(_attempt: int) -> None:
            exists = self.exists(quarantine)
            write_deltalake(
                self.location(quarantine),
                rows,
                mode="append",
                schema_mode="merge" if exists else None,
                configuration=None if exists else CDF_CONFIG,
                storage_options=self.target.storage_options or None,
            )

        retry_conflicts(append, what=f"write to {quarantine}")

    def _log_quality(
        self, result: WriteResult, outcome: QualityOutcome | None, write_id: str | None = None
    ) -> None:
        rules = outcome.results if outcome else []
        now = datetime.now(UTC)
        write_id = write_id or uuid.uuid4().hex
        base = {
            "write_id": write_id,
            "timestamp": now,
            "table_name": str(result.table),
            "table_version": result.version,
            "operation": result.operation,
            "rows_in": result.rows_in,
            "rows_written": result.rows_written,
            "rows_dropped": result.rows_dropped,
        }
        rows = [
            {
                **base,
                "rule": r.rule.name,
                "expression": r.rule.sql,
                "action": r.rule.action,
                "rows_failed": r.failed,
            }
            for r in rules
        ] or [{**base, "rule": None, "expression": None, "action": None, "rows_failed": None}]
        log = TableName(self.target.catalog, SYSTEM_SCHEMA, QUALITY_LOG)
        data = pa.Table.from_pylist(rows, schema=_QUALITY_LOG_SCHEMA)
        retry_conflicts(
            lambda _attempt: write_deltalake(
                self.location(log),
                data,
                mode="append",
                storage_options=self.target.storage_options or None,
            ),
            what=f"write to {log}",
        )

    def merge(
        self,
        name: str | TableName,
        data: Any,
        *,
        keys: Sequence[str] | None = None,
        delete_missing: bool = False,
        schema_evolution: bool = False,
        update_if: str | None = None,
    ) -> WriteResult:
        """Upsert rows on ``keys`` (default: the table's primary keys).

        Matched rows are updated (only where the SQL predicate ``update_if`` over ``s``,
        the source row, and ``t``, the table's row, holds, when given), new rows inserted;
        with ``delete_missing`` rows absent from ``data`` are deleted. Duplicate keys in
        ``data`` are refused. A merge that conflicts with a concurrent commit is rerun on
        the new snapshot; the result's version is the merge's own commit.
        """
        table = self.name(name)
        dt = self.delta(table, write=True)
        current = pa.schema(dt.schema().to_arrow())
        keys = list(keys or primary_keys_of(current))
        if not keys:
            raise SchemaMismatchError(
                f"merge into {table}: no keys given and the table has no primary keys"
            )
        source = conform(
            materialize(to_arrow(data, what=f"merge into {table}")),
            current,
            table=str(table),
            allow_new_columns=schema_evolution,
        )
        missing = [k for k in keys if k not in source.column_names]
        if missing:
            raise SchemaMismatchError(f"merge into {table}: key column(s) {missing} not in data")
        check_unique(source, keys, table)
        predicate = " AND ".join(f's."{k}" = t."{k}"' for k in keys)
        write_id = uuid.uuid4().hex

        def execute(attempt: int) -> dict[str, Any]:
            nonlocal source
            if attempt > 1:  # lost a race: merge again into the new snapshot
                dt.update_incremental()
                source = conform(
                    source,
                    pa.schema(dt.schema().to_arrow()),
                    table=str(table),
                    allow_new_columns=schema_evolution,
                )
            merger = (
                dt.merge(
                    source,
                    predicate,
                    source_alias="s",
                    target_alias="t",
                    merge_schema=schema_evolution,
                    commit_properties=with_write_id(None, write_id),
                )
                .when_matched_update_all(predicate=update_if)
                .when_not_matched_insert_all()
            )
            if delete_missing:
                merger = merger.when_not_matched_by_source_delete()
            return merger.execute()

        try:
            metrics = retry_conflicts(execute, what=f"merge into {table}")
        except DeltaError as exc:
            raise LakeforgeError(
                f"merge into {table} failed; the table is unchanged: {exc}"
            ) from None
        result = WriteResult(
            table=table,
            version=dt.version(),  # the snapshot after our own commit
            operation="merge",
            rows_in=source.num_rows,
            rows_written=int(metrics.get("num_target_rows_inserted", 0))
            + int(metrics.get("num_target_rows_updated", 0)),
            metrics=metrics,
        )
        self._log_quality(result, None, write_id)
        return result

    def delete(self, name: str | TableName, predicate: str) -> WriteResult:
        """Delete the rows matching a SQL ``predicate``."""
        table = self.name(name)
        dt = self.delta(table, write=True)

        def delete(attempt: int) -> dict[str, Any]:
            if attempt > 1:  # lost a race: delete again from the new snapshot
                dt.update_incremental()
            return dt.delete(predicate)

        try:
            metrics = retry_conflicts(delete, what=f"delete from {table} where {predicate!r}")
        except DeltaError as exc:
            raise LakeforgeError(f"delete from {table} where {predicate!r} failed: {exc}") from None
        return WriteResult(
            table,
            dt.version(),
            "delete",
            0,
            0,
            rows_dropped=int(metrics.get("num_deleted_rows", 0)),
            metrics=metrics,
        )


def check_unique(data: pa.Table, keys: list[str], table: TableName) -> None:
    counts = data.group_by(keys).aggregate([([], "count_all")])
    dupes = counts.filter(pa.compute.greater(counts.column("count_all"), 1))
    if dupes.num_rows:
        sample = dupes.slice(0, 3).select(keys).to_pylist()
        raise SchemaMismatchError(
            f"merge into {table}: {dupes.num_rows} key(s) appear more than once in the data, "
            f"e.g. {sample}; deduplicate the source first"
        )
