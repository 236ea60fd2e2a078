"""Step 5: a tracked, registered, validated and promoted late-arrival classifier."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace, connect
from lakeforge.errors import LakeforgeError

MODEL = "dev.ml.flight_delay"
FEATURES = ["dep_delay", "distance", "hour", "month", "sched_dep_time"]


def train_model(ws: Workspace, console: Console) -> None:
    """Train, track and register a late-arrival classifier; promote it; copy it to staging."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    console.print(Rule("5. Training with lineage, registry and promotion"))
    # scikit-learn deprecation chatter from inside MLflow's autolog is not the demo's news
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    with ws.start_run("train", run_name="late-arrival") as run:
        data = ws.sql(f"""
            SELECT {", ".join(FEATURES)}, (arr_delay > 15)::INT AS late
            FROM dev.silver.flights""").to_pandas()
        data[FEATURES] = data[FEATURES].astype("float64")
        train, test = data[data.month <= 10], data[data.month > 10]  # hold out Nov-Dec
        model = HistGradientBoostingClassifier(max_iter=100, random_state=7)
        model.fit(train[FEATURES], train["late"])
        auc = roc_auc_score(test["late"], model.predict_proba(test[FEATURES])[:, 1])
        run.log_metrics({"test_roc_auc": auc})
        version = ws.log_model(
            model,
            MODEL,
            input_example=train[FEATURES].head(5),
            description="Predicts whether a flight arrives more than 15 minutes late, from "
            "its schedule and departure delay.",
            # skops asks to trust this reviewed type explicitly; the model is our own.
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    console.print(
        f"  run {run.run_id[:12]}: held-out ROC AUC {auc:.3f}; registered {MODEL} "
        f"v{version.version}"
    )
    lineage = ws.models.lineage(f"{MODEL}/{version.version}")
    commit = lineage.commit[:12] if lineage.commit else "none (not a git checkout)"
    console.print(f"  lineage: commit {commit}, data {lineage.data_versions}")
    deployment = ws.deploy(MODEL, version.version, reason="first model of the demo")
    report = deployment.report
    for result in report.results if report else []:
        mark = "pass" if result.passed else "FAIL"
        console.print(f"  validation {mark}: {result.check}: {result.message}")
    console.print(
        f"  deployment: {deployment.outcome} (policy: approval {ws.target.deployment.approval})"
    )
    if deployment.outcome != "champion" and report:  # e.g. latency on a very busy machine
        console.print(f"  [yellow]not promoted[/yellow]: {', '.join(report.failed_checks)}")
    copied = ws.models.copy(f"{MODEL}/{version.version}", to="staging", reason="deploy-models demo")
    console.print(
        f"  copied to staging as {copied.name} v{copied.version}; prod needs a manual "
        "approval (lakeforge -t prod approvals approve ID)"
    )
    prod_gate(ws, console, f"{copied.name}/{copied.version}")
    for event in ws.models.history(MODEL):
        console.print(
            f"  history: {event.alias} -> v{event.to_version} by {event.actor} ({event.reason})"
        )
    kinds = sorted({event.type for event in ws.events.list(limit=1000)})
    console.print(f"  events in dev's outbox, for webhooks and jobs: {', '.join(kinds)}")


def prod_gate(ws: Workspace, console: Console, staged: str) -> None:
    """prod's manual gate: a direct champion move is refused; a second person approves."""
    from lakeforge.deployment import outcome_line

    claimed = os.environ.get("LAKEFORGE_USER")
    prod = connect("prod", project_dir=ws.project.directory)
    try:
        os.environ["LAKEFORGE_USER"] = "ada"  # the ML engineer
        copied = ws.models.copy(staged, to="prod", reason="release 1")
        name, version = copied.name, int(copied.version)
        try:
            prod.models.set_alias(name, "champion", version)
        except LakeforgeError as refused:
            console.print(f"  prod gate: ada moves champion directly -> refused: {refused.message}")
        deployment = prod.deploy(name, version, reason="release 1")
        console.print(
            f"  prod gate: ada deploys {name} v{version}: {outcome_line(deployment, 'prod')}"
        )
        if deployment.request is not None:
            os.environ["LAKEFORGE_USER"] = "grace"  # in group ml-leads, prod's approvers
            prod.approvals.approve(deployment.request.id, comment="reviewed the validation")
            console.print(
                f"  prod gate: approved by grace: {name} v{prod.models.aliases(name)['champion']} "
                "is prod's champion"
            )
    finally:
        prod.close()
        if claimed is None:
            os.environ.pop("LAKEFORGE_USER", None)
        else:
            os.environ["LAKEFORGE_USER"] = claimed


DEMO_POLICY = """\
    deployment:
      approval: auto
      validation:
        mode: enabled
        checks:
          signature: true
          lineage: true
          metrics: {test_roc_auc: {min: 0.75}}
          max_latency_p95_ms: 250
        champion:
          sql: >
            SELECT dep_delay, distance, hour, month, sched_dep_time, (arr_delay > 15)::INT AS late
            FROM dev.silver.flights WHERE month > 10
          label: late
          model_type: classifier
          metrics: {roc_auc: {min_improvement: 0.0, max_regression: 0.01}}
          baseline: heuristic
"""


def use_demo_policy(project: Path) -> None:
    """Give dev a policy that also compares with the champion on held-out months, and
    prod an approver (grace)."""
    file = project / "lakeforge.yaml"
    text = file.read_text()
    start = text.index("    deployment:", text.index("  dev:"))
    end = text.index("  staging:")
    text = text[:start] + DEMO_POLICY + text[end:]
    start = text.index("  ml-leads: [")
    file.write_text(text[:start] + "  ml-leads: [grace]" + text[text.index("]", start) + 1 :])
