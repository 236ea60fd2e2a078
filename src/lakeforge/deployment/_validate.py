"""Validation of a model version against the target's policy, with its results recorded.

Results go on the version (tags, and a line appended to its description), one row per
check into ``<catalog>.system.validation_results``, and a ``validation.passed`` or
``validation.failed`` event into the outbox. In ``dry_run`` mode everything is recorded
but nothing is blocked; ``disabled`` skips validation.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakeforge._identity import current_user
from lakeforge.deployment._checks import Candidate, CheckResult, input_columns, run_compliance
from lakeforge.deployment._compare import compare
from lakeforge.events import VALIDATION_FAILED, VALIDATION_PASSED, Outbox
from lakeforge.lakehouse import SYSTEM_SCHEMA, TableName
from lakeforge.project import ValidationMode, ValidationPolicy
from lakeforge.registry import CHAMPION
from lakeforge.tracking import use_target

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

RESULTS_TABLE = "validation_results"
TAG_STATUS = "lakeforge.validation.status"
TAG_ID = "lakeforge.validation.id"
TAG_FAILED = "lakeforge.validation.failed_checks"

_RESULTS_SCHEMA = pa.schema(
    [
        pa.field("validation_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("check", pa.string(), nullable=False),
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("threshold", pa.string()),
        pa.field("message", pa.string()),
        pa.field("actor", pa.string(), nullable=False),
    ]
)


@dataclass
class ValidationReport:
    """Every check run on one version, and whether the version may go on."""

    model: str
    version: int
    mode: ValidationMode
    validation_id: str
    results: list[CheckResult] = field(default_factory=list)
    policy: str = "given by the caller"
    """Which policy was applied, as a path in ``lakeforge.yaml``."""

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def blocking(self) -> bool:
        """Whether the outcome stops the deployment (only a failure in ``enabled`` mode)."""
        return self.mode == "enabled" and not self.passed

    @property
    def failed_checks(self) -> list[str]:
        return [r.check for r in self.results if not r.passed]

    def summary(self) -> dict[str, Any]:
        return {
            "validation_id": self.validation_id,
            "mode": self.mode,
            "policy": self.policy,
            "passed": self.passed,
            "failed_checks": self.failed_checks,
            "results": [asdict(r) for r in self.results],
        }


def validate(
    ws: Workspace,
    name: str,
    version: int | str,
    *,
    mode: ValidationMode | None = None,
    policy: ValidationPolicy | None = None,
) -> ValidationReport:
    """Run the model's validation policy on ``name`` version ``version`` and record it.

    The policy is the model's rule in ``targets.<t>.deployment.models`` (first matching
    pattern) or the target default; the report names which one.
    """
    registry = ws.models
    mv = registry.version(name, version)
    source = "given by the caller"
    if policy is None:
        effective = registry.policy(mv.name)
        policy, source = effective.validation, effective.describe(ws.target.name)
    mode = mode or policy.mode
    report = ValidationReport(mv.name, int(mv.version), mode, uuid.uuid4().hex[:12], policy=source)
    if mode == "disabled":
        return report
    import mlflow

    with use_target(ws.target) as client, tempfile.TemporaryDirectory(prefix="lf-val-") as tmp:
        uri = f"models:/{mv.name}/{mv.version}"
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
        info = mlflow.models.Model.load(str(local))  # the MLmodel file (also for copies)
        run = client.get_run(mv.run_id) if mv.run_id else None
        candidate = Candidate(
            name=mv.name,
            version=int(mv.version),
            description=mv.description or "",
            tags=dict(mv.tags),
            run_tags=dict(run.data.tags) if run else {},
            run_metrics=dict(run.data.metrics) if run else {},
            local_path=local,
            signature=info.signature,
            has_input_example=info.saved_input_example_info is not None,
        )
        report.results += run_compliance(candidate, policy.checks)
        if policy.champion is not None:
            report.results += _champion_checks(ws, policy, candidate, tmp)
    _record(ws, report)
    return report


def _champion_checks(
    ws: Workspace, policy: ValidationPolicy, candidate: Candidate, tmp: str
) -> list[CheckResult]:
    import mlflow

    comparison = policy.champion
    assert comparison is not None
    champion_version = ws.models.aliases(candidate.name).get(CHAMPION)
    champion = None
    if champion_version is not None and champion_version != candidate.version:
        champion = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{candidate.name}/{champion_version}", dst_path=f"{tmp}/champion"
            )
        )
    if comparison.sql is not None:
        data = ws.sql(comparison.sql).to_pandas()
    else:
        data = ws.tables.read(comparison.table or "", format="pandas")
    return compare(
        comparison, data, candidate.local_path, champion, input_columns(candidate.signature)
    )


def _record(ws: Workspace, report: ValidationReport) -> None:
    now = datetime.now(UTC)
    actor = current_user()
    status = "passed" if report.passed else "failed"
    client = ws.models.client
    tags = {
        TAG_STATUS: status if report.mode == "enabled" else f"{status} (dry run)",
        TAG_ID: report.validation_id,
        TAG_FAILED: ", ".join(report.failed_checks),
    }
    for key, value in tags.items():
        client.set_model_version_tag(report.model, str(report.version), key, value)
    mv = client.get_model_version(report.model, str(report.version))
    failed = f"; failed: {', '.join(report.failed_checks)}" if report.failed_checks else ""
    line = (
        f"Validation {report.validation_id} ({report.mode}, {now:%Y-%m-%d %H:%M} UTC): "
        f"{status.upper()}, {len(report.results)} checks{failed}"
    )
    client.update_model_version(
        report.model,
        str(report.version),
        description=f"{(mv.description or '').rstrip()}\n\n{line}".strip(),
    )
    rows = [
        {
            "validation_id": report.validation_id,
            "timestamp": now,
            "model": report.model,
            "version": report.version,
            "mode": report.mode,
            "check": r.check,
            "passed": r.passed,
            "value": r.value,
            "threshold": r.threshold,
            "message": r.message,
            "actor": actor,
        }
        for r in report.results
    ]
    if rows:
        table = TableName(ws.target.catalog, SYSTEM_SCHEMA, RESULTS_TABLE)
        ws.tables.write(table, pa.Table.from_pylist(rows, schema=_RESULTS_SCHEMA))
    Outbox(ws.state).emit(
        VALIDATION_PASSED if report.passed else VALIDATION_FAILED,
        report.model,
        {
            "version": report.version,
            "validation_id": report.validation_id,
            "mode": report.mode,
            "failed_checks": report.failed_checks,
        },
        actor=actor,
    )
