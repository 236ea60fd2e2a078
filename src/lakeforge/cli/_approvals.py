"""``lakeforge approvals ...`` and the deployment commands ``models validate|deploy``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace
from lakeforge.cli._models import app as models_app
from lakeforge.cli._models import print_unapproved

if TYPE_CHECKING:
    from lakeforge.deployment import Request, ValidationReport
    from lakeforge.project import ValidationMode

app = typer.Typer(help="Requests to make a version champion, and decisions.", no_args_is_help=True)

Comment = Annotated[str | None, typer.Option(help="Why; kept with the decision.")]


def _print_report(report: ValidationReport) -> None:
    table = Table("check", "result", "detail", header_style="bold cyan")
    for result in report.results:
        mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
        table.add_row(result.check, mark, result.message)
    console.print(table)
    verdict = "PASSED" if report.passed else "FAILED"
    console.print(
        f"{report.model} v{report.version}: {verdict} ({report.mode}, "
        f"validation {report.validation_id}; policy: {report.policy})"
    )


@models_app.command()
def validate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name: catalog.schema.model.")],
    version: Annotated[int, typer.Argument(help="Version to validate.")],
    mode: Annotated[
        str | None, typer.Option(help="disabled, dry_run or enabled (default: policy).")
    ] = None,
) -> None:
    """Run the target's validation policy on a version; exit 1 when it blocks."""
    if mode not in (None, "disabled", "dry_run", "enabled"):
        raise typer.BadParameter(
            f"{mode!r}; allowed: disabled, dry_run, enabled", param_hint="--mode"
        )
    report = workspace(ctx).validate(name, version, mode=cast("ValidationMode | None", mode))
    _print_report(report)
    if report.blocking:
        raise typer.Exit(code=1)


@models_app.command()
def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name: catalog.schema.model.")],
    version: Annotated[int, typer.Argument(help="Version to deploy.")],
    reason: Annotated[str | None, typer.Option(help="Why; recorded with the alias moves.")] = None,
) -> None:
    """validate -> request -> (auto-)approve -> champion, as the model's policy says."""
    ws = workspace(ctx)
    result = ws.deploy(name, version, reason=reason)
    print_unapproved(ws.target.name, list(result.unapproved))
    if result.report is not None:
        _print_report(result.report)
    from lakeforge.deployment import outcome_line

    line = f"{result.model} {outcome_line(result, ws.target.name)}"
    if result.outcome == "blocked":
        console.print(f"[red]{line}[/red]", markup=True, highlight=False)
        raise typer.Exit(code=1)
    console.print(line, markup=False, highlight=False)


def _print_requests(requests: list[Request]) -> None:
    table = Table(
        "id",
        "model",
        "version",
        "kind",
        "status",
        "requested by",
        "requested",
        "validation",
        "decided by",
        "comment",
        header_style="bold cyan",
    )
    for r in requests:
        validation = ""
        if r.validation:
            validation = (
                "passed"
                if r.validation.get("passed")
                else "failed: " + ", ".join(r.validation.get("failed_checks", []))
            )
        table.add_row(
            str(r.id),
            r.model,
            str(r.version),
            r.kind,
            r.status,
            r.requested_by,
            r.requested_at.isoformat(timespec="seconds"),
            validation,
            r.decided_by or "",
            r.comment or "",
        )
    console.print(table)


@app.command("list")
def list_requests(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending, approved or rejected.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """Transition requests of the target, newest first."""
    if status not in (None, "pending", "approved", "rejected"):
        raise typer.BadParameter(
            f"{status!r}; allowed: pending, approved, rejected", param_hint="--status"
        )
    _print_requests(workspace(ctx).approvals.list(status=status, model=model))  # type: ignore[arg-type]


@app.command()
def approve(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(metavar="ID")],
    comment: Comment = None,
) -> None:
    """Approve a request: its version becomes champion, the old champion previous."""
    request = workspace(ctx).approvals.approve(request_id, comment=comment)
    console.print(f"approved #{request.id}: {request.model} v{request.version} is now champion")


@app.command()
def reject(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(metavar="ID")],
    comment: Comment = None,
) -> None:
    """Reject a request: its version is tagged archived."""
    request = workspace(ctx).approvals.reject(request_id, comment=comment)
    console.print(f"rejected #{request.id}: {request.model} v{request.version} archived")
