"""Continuous deployment: a policy with metric bounds and a manual approval gate, then events.

Run it from any folder: python examples/deployment.py
"""

import os
import time
from pathlib import Path
from tempfile import mkdtemp

import pyarrow.compute as pc
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import lakeforge
from lakeforge.demo import load_flights
from lakeforge.errors import PermissionDeniedError
from lakeforge.events import sign, verify_signature

PROJECT_FILE = """\
name: deploy_example
default_target: dev
groups: {ml-leads: [alice]}
targets:
  dev:
    root: .lakeforge/dev
    deployment:
      approval: manual                  # a person approves; `auto` approves what passed
      approvers: [group:ml-leads]
      separation_of_duties: true        # a requester cannot approve their own request
      validation:
        mode: enabled                   # disabled | dry_run | enabled
        checks:
          signature: true
          description: true
          metrics:                      # bounds on the metrics of the version's run
            test_accuracy: {min: 0.8}
            test_log_loss: {max: 0.6}
        champion:                       # challenger vs champion on the same held-out rows
          sql: >
            SELECT dep_delay::DOUBLE AS dep_delay, distance::DOUBLE AS distance,
                   (arr_delay > 15)::INT AS late
            FROM dev.silver.flights WHERE month = 2 AND arr_delay IS NOT NULL
          label: late
          model_type: classifier
          metrics: {roc_auc: {min_improvement: 0.0, max_regression: 0.01}}
          baseline: heuristic           # no champion yet: beat the majority-class predictor
          absolute: {accuracy: {min: 0.7}}
"""

project = Path(mkdtemp(prefix="lakeforge-deployment-")) / "deploy_example"
project.mkdir()
(project / "lakeforge.yaml").write_text(PROJECT_FILE)
ws = lakeforge.connect("dev", project_dir=project)
flights = load_flights()
ws.tables.write("dev.silver.flights", flights.filter(pc.less_equal(flights["month"], 2)))

os.environ["LAKEFORGE_USER"] = "bob"  # who acts: $LAKEFORGE_USER, else the OS user
with ws.start_run("train", autolog=False) as run:
    df = ws.sql(
        "SELECT dep_delay::DOUBLE AS dep_delay, distance::DOUBLE AS distance, "
        "(arr_delay > 15)::INT AS late "
        "FROM dev.silver.flights WHERE month = 1 AND arr_delay IS NOT NULL"
    ).to_pandas()
    X, y = df[["dep_delay", "distance"]], df["late"]
    model = LogisticRegression().fit(X[:20_000], y[:20_000])
    X_test, y_test = X[20_000:], y[20_000:]
    run.log_metrics(
        {
            "test_accuracy": model.score(X_test, y_test),
            "test_log_loss": log_loss(y_test, model.predict_proba(X_test)),
        }
    )
    version = ws.log_model(
        model,
        "dev.ml.flight_delay",
        input_example=X.head(5),
        description="Late arrival from departure delay and distance; January 2013.",
    )

deployment = ws.deploy("dev.ml.flight_delay", version.version, reason="first model")
for check in deployment.report.results:
    print(f"{'pass' if check.passed else 'FAIL'} {check.check}: {check.message}")
print(f"deployment: {deployment.outcome}")  # awaiting_approval: the policy is manual
assert deployment.request is not None

try:
    ws.approvals.approve(deployment.request.id)  # bob requested it: refused and audited
except PermissionDeniedError as refused:
    print(f"refused: {refused.message}")
os.environ["LAKEFORGE_USER"] = "alice"
ws.approvals.approve(deployment.request.id, comment="ship it")
print(f"champion is v{ws.models.aliases('dev.ml.flight_delay')['champion']}")

# Every step left an event in the outbox; webhooks get them signed.
print("events:", ", ".join(event.type for event in ws.events.list()))
body, sent_at = b'{"type": "alias.moved"}', int(time.time())
signature = sign("webhook-secret", sent_at, body)  # what `lakeforge events deliver` sends
assert verify_signature("webhook-secret", sent_at, body, signature)  # what a receiver checks
print("deployed through the manual approval gate")
