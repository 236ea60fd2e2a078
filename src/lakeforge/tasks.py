"""Job tasks the platform ships: deployment steps (``lakeforge.tasks:deploy_version`` ...).

Like the CLI, this is a shell over the SDK, above the Workspace: the jobs engine calls
these by ``module:function`` with plain parameters.

Each opens the project on a target, does one step, and returns a JSON-friendly dict
(the task value downstream tasks can read).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from lakeforge._workspace import connect
from lakeforge.deployment import outcome_line


def validate_version(
    model: str, version: int, *, target: str | None = None, project_dir: str | None = None
) -> dict[str, Any]:
    """Validate a version; raises when it fails in ``enabled`` mode."""
    from lakeforge.deployment import validate
    from lakeforge.errors import LakeforgeError

    with connect(target, project_dir=project_dir) as ws:
        report = validate(ws, model, version)
    if report.blocking:
        raise LakeforgeError(
            f"{report.model} v{report.version} failed validation: {', '.join(report.failed_checks)}"
        )
    return report.summary()


def deploy_version(
    model: str, version: int, *, target: str | None = None, project_dir: str | None = None
) -> dict[str, Any]:
    """Run the deployment step, printing each check's result (the task log); the outcome
    and the request id."""
    from lakeforge.deployment import deploy

    with connect(target, project_dir=project_dir) as ws:
        result = deploy(ws, model, version)
        target_name = ws.target.name
    for event in result.unapproved:
        print(
            f"UNAPPROVED: {event.model}@{event.alias} was moved outside Lakeforge "
            f"(v{event.from_version} -> v{event.to_version})",
            flush=True,
        )
    report = result.report
    if report is not None:
        print(f"validation {report.validation_id} ({report.mode}), policy {report.policy}")
        for check in report.results:
            mark = "pass" if check.passed else "FAIL"
            rule = f" [{check.threshold}]" if check.threshold else ""
            print(f"  {mark} {check.check}: {check.message}{rule}")
    print(f"{result.model} v{result.version}: {outcome_line(result, target_name)}", flush=True)
    return {
        "model": result.model,
        "version": result.version,
        "outcome": result.outcome,
        "request_id": result.request.id if result.request else None,
        "failed_checks": [] if report is None else report.failed_checks,
    }


def rollback(
    model: str,
    *,
    target: str | None = None,
    project_dir: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Move champion back to previous (on a gated target: a rollback request)."""
    from lakeforge.deployment import rollback as roll_back

    with connect(target, project_dir=project_dir) as ws:
        result = roll_back(ws, model, reason=reason)
    return {
        "moves": [(e.alias, e.from_version, e.to_version) for e in result.moves],
        "request_id": None if result.request is None else result.request.id,
    }


def refresh_monitor(
    name: str, *, target: str | None = None, project_dir: str | None = None
) -> dict[str, Any]:
    """Refresh a monitor (incrementally) and evaluate its alerts; what it recomputed."""
    from lakeforge.monitoring import refresh

    with connect(target, project_dir=project_dir) as ws:
        result = refresh(ws, name)
    print(
        f"monitor {name}: {len(result.windows)} window(s) recomputed, {result.rows_read} "
        f"row(s) read, {result.profile_rows} profile and {result.drift_rows} drift row(s)",
        flush=True,
    )
    return {
        "monitor": result.monitor,
        "windows": [[start.isoformat(), end.isoformat()] for start, end in result.windows],
        "rows_read": result.rows_read,
        "profile_rows": result.profile_rows,
        "drift_rows": result.drift_rows,
        "tables": list(result.tables),
        "alerts": len(result.alerts),
    }


def score(
    model: str,
    *,
    input: str | None = None,
    sql: str | None = None,
    output: str,
    keys: Sequence[str] | None = None,
    keep_columns: bool = False,
    prediction: str = "prediction",
    features: Literal["offline", "online"] = "offline",
    engine: str = "local",
    workers: int | None = None,
    fail_fast: bool = False,
    stream: bool = False,
    once: bool = True,
    target: str | None = None,
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Score ``input`` (a table) or ``sql`` into ``output`` with ``model`` (a URI).

    A batch run pins the table's current version and skips what the output already holds,
    so a job with a ``table_update`` trigger on the input table and this task scores each
    new version, with no long-lived process. ``stream=True`` scores only the rows that
    arrived since the output's checkpoint (``once``: what is there, then return).
    """
    from lakeforge.inference import run_stream
    from lakeforge.inference import score as score_input

    with connect(target, project_dir=project_dir) as ws:
        if stream:
            if input is None or sql is not None:
                from lakeforge.errors import LakeforgeError

                raise LakeforgeError("a streaming score task reads a table: pass input=, not sql=")
            streamed = run_stream(
                ws,
                model,
                input=input,
                output=output,
                keys=keys,
                keep_columns=keep_columns,
                prediction=prediction,
                features=features,
                once=once,
                fail_fast=fail_fast,
            )
            return {
                "micro_batches": streamed.micro_batches,
                "rows_scored": streamed.rows_scored,
                "rows_failed": streamed.rows_failed,
                "rows_deleted": streamed.rows_deleted,
                "last_input_version": streamed.last_input_version,
                "model_versions": streamed.model_versions,
            }
        result = score_input(
            ws,
            model,
            input=input,
            sql=sql,
            output=output,
            keys=keys,
            keep_columns=keep_columns,
            prediction=prediction,
            features=features,
            engine=engine,
            workers=workers,
            fail_fast=fail_fast,
        )
    print(
        f"scored {result.rows_scored:,} rows ({result.rows_failed:,} failed) into "
        f"{result.output}@v{result.output_version} with {result.model.label}; "
        f"{result.chunks_skipped} chunk(s) already scored",
        flush=True,
    )
    return {
        "model": result.model.name,
        "model_version": result.model.version,
        "rows_scored": result.rows_scored,
        "rows_failed": result.rows_failed,
        "input_version": result.input_version,
        "output_version": result.output_version,
        "chunks_skipped": result.chunks_skipped,
    }


def sync_vector_index(
    name: str, *, full: bool = False, target: str | None = None, project_dir: str | None = None
) -> dict[str, Any]:
    """Sync a vector index with its source table (the changes since its last sync).

    With a ``table_update`` trigger on the source, a job running this keeps the index in
    step with each commit; a run that died is redone by the next (exactly once).
    """
    from lakeforge.vectors import sync

    with connect(target, project_dir=project_dir) as ws:
        result = sync(ws, name, full=full)
    print(
        f"vector index {result.index}: source v{result.delta_version}, {result.upserted} "
        f"upserted, {result.deleted} deleted -> index version {result.index_version}",
        flush=True,
    )
    return {
        "index": result.index,
        "delta_version": result.delta_version,
        "upserted": result.upserted,
        "deleted": result.deleted,
        "index_version": result.index_version,
        "pinned": result.pinned,
    }
