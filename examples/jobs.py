"""Jobs: a DAG of tasks declared in lakeforge.yaml, deployed, run now, and fired by a trigger.

Run it from any folder: python examples/jobs.py
"""

import subprocess
from pathlib import Path
from tempfile import mkdtemp

import pyarrow as pa

import lakeforge
from lakeforge.bundle import deploy, render
from lakeforge.jobs import JobRunner, Scheduler

PIPELINES = '''
import lakeforge
from lakeforge.jobs import job_context


def count_orders(minimum: int) -> dict:
    """A task is a plain function; the dict it returns is its task values."""
    ws = lakeforge.connect()  # the target the job runs on
    n = ws.sql("SELECT count(*) AS n FROM dev.silver.orders").column("n")[0].as_py()
    if n < minimum:
        raise ValueError(f"only {n} orders, expected at least {minimum}")
    return {"orders": n}


def report(orders: int) -> dict:
    print(f"{orders} orders, run {job_context()['run_id']}")
    return {"reported": True}
'''

JOBS = """
jobs:
  order_report:
    parameters: {minimum: 1}
    triggers:
      - {type: table_update, tables: [dev.silver.orders]}
    tasks:
      - key: count
        python: pipelines:count_orders                    # module:function in the project
        parameters: {minimum: "{{parameters.minimum}}"}
        retries: 1
        timeout_s: 300
      - key: report
        python: pipelines:report
        depends_on: [count]
        parameters: {orders: "{{tasks.count.orders}}"}    # an upstream task's value
"""

project = lakeforge.init_project("jobs_example", Path(mkdtemp(prefix="lakeforge-jobs-")))
(project / "pipelines.py").write_text(PIPELINES)
with (project / "lakeforge.yaml").open("a") as file:
    file.write(JOBS)
# deploy snapshots the code git tracks at the commit: commit the pipelines first
me = ["-c", "user.name=jobs example", "-c", "user.email=jobs@example.invalid"]
for git in (["add", "-A"], [*me, "commit", "-qm", "order_report job"]):
    subprocess.run(["git", *git], cwd=project, check=True)
ws = lakeforge.connect("dev", project_dir=project)
ws.tables.write("dev.silver.orders", pa.table({"id": [1, 2, 3]}))

for line in render(deploy(ws)):  # what `lakeforge deploy -t dev` prints, then applies
    print(line)
run = JobRunner(ws).run("order_report")  # what `lakeforge run order_report -t dev` does
assert run is not None and run.status == "succeeded", run
print(f"run {run.id}: {run.status}, task values {run.tasks['count'].values}")

scheduler = Scheduler(ws, background=False)  # one step of `lakeforge scheduler -t dev`
scheduler.tick()  # first look: remembers the table versions
ws.tables.write("dev.silver.orders", pa.table({"id": [4]}))  # a table update
for firing in scheduler.tick():
    fired = JobRunner(ws).get(firing.run_id or 0)
    print(f"trigger {firing.trigger} fired run {fired.id}: {fired.status}")
