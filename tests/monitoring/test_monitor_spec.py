"""Monitor specs: validation when lakeforge.yaml loads, endpoint monitors, SDK and deployed specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

import lakeforge
from lakeforge.errors import ConfigError, LakeforgeError
from lakeforge.monitoring import create_monitor, list_monitors, monitor_spec
from lakeforge.project import MonitorSpec, Project


def spec(**fields: Any) -> MonitorSpec:
    return MonitorSpec.model_validate({"name": "m", "table": "s.t", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"profile": "rolling"}, "Input should be 'snapshot', 'time_series' or 'inference'"),
        (
            {"profile": "time_series", "timestamp_col": "ts", "granularities": ["2 days"]},
            "granularity '2 days' is not allowed (allowed: 5 minutes, 30 minutes, 1 hour",
        ),
        ({"profile": "time_series"}, "a time_series monitor needs timestamp_col"),
        ({"granularities": ["1 day"]}, "a snapshot monitor has one window over the whole table"),
        (
            {"profile": "inference", "problem_type": "regression"},
            "an inference monitor needs prediction_col",
        ),
        (
            {"profile": "inference", "prediction_col": "p"},
            "an inference monitor needs problem_type",
        ),
        ({"prediction_col": "p"}, "prediction_col: only an inference monitor has model columns"),
        (
            {
                "profile": "inference",
                "problem_type": "regression",
                "prediction_col": "p",
                "probability_col": "q",
            },
            "probability_col is for classification monitors only",
        ),
        ({"drift": {"x": {"method": "anderson"}}}, "unknown drift method 'anderson' (allowed: ks,"),
        (
            {"custom_metrics": [{"name": "d", "type": "drift", "definition": "{{current_df}}.a"}]},
            "the definition must use {{base_df}}",
        ),
        (
            {
                "custom_metrics": [
                    {"name": "d", "type": "drift", "definition": "{{current_df}}.a - {{base_df}}.a"}
                ]
            },
            "drift metric 'd' compares unknown metric(s) a",
        ),
        (
            {
                "custom_metrics": [
                    {"name": "a", "type": "aggregate", "definition": "avg({{input_column}})"}
                ]
            },
            "uses {{input_column}} but names no input_columns",
        ),
        ({"name": "Bad-Name"}, "monitor name 'Bad-Name' is not valid"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_spec_is_refused_with_a_message_naming_the_problem(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        spec(**fields)
    assert message in str(info.value)


def test_defaults_follow_the_profile_type() -> None:
    assert spec().granularity_list == ["snapshot"]
    series = spec(profile="time_series", timestamp_col="ts")
    assert series.granularities == ["1 day"]
    inference = spec(profile="inference", problem_type="classification", prediction_col="p")
    assert inference.timestamp_col == "timestamp"


def _project(tmp_path: Path, extra: str) -> Path:
    folder = lakeforge.init_project("mon", tmp_path)
    with (folder / "lakeforge.yaml").open("a") as file:
        file.write(extra)
    return folder


ENDPOINT = """
endpoints:
  scorer:
    served_entities: [{model: ml.m, alias: champion}]
    inference_table: {table: serving.scorer_log}
    monitor:
      problem_type: classification
      prediction_col: prediction
      granularities: ["1 hour"]
      labels: {table: serving.truth, join_on: [request_id], label_col: label}
monitors:
  flights:
    table: silver.flights
    profile: time_series
    timestamp_col: time_hour
    granularities: ["1 day", "1 month"]
    slicing_exprs: [origin]
"""


def test_the_project_file_declares_monitors_and_endpoint_monitors(tmp_path: Path) -> None:
    project = Project.load(_project(tmp_path, ENDPOINT))
    monitors = project.config.all_monitors()
    assert sorted(monitors) == ["flights", "scorer"]
    scorer = monitors["scorer"]
    assert (scorer.table, scorer.profile, scorer.granularities) == (
        "serving.scorer_log",
        "inference",
        ["1 hour"],
    )
    assert monitors["flights"].name == "flights"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "monitors:\n  m: {table: s.t, profile: time_series, timestamp_col: ts, "
            "granularities: [1 fortnight]}\n",
            "field monitors.m.granularities: Value error, granularity '1 fortnight' is not allowed",
        ),
        (
            "monitors:\n  m: {table: s.t, profile: inference, problem_type: regression}\n",
            "an inference monitor needs prediction_col",
        ),
        (
            "monitors:\n  m: {table: s.t, profil: snapshot}\n",
            "field monitors.m.profil: unknown field (allowed:",
        ),
        (
            "endpoints:\n  e:\n    served_entities: [{model: ml.m, alias: champion}]\n"
            "    monitor: {problem_type: regression, prediction_col: p}\n",
            "the endpoint has no inference_table to monitor",
        ),
        (
            "endpoints:\n  e:\n    served_entities: [{model: ml.m, alias: champion}]\n"
            "    inference_table: {table: s.log}\n"
            "    monitor: {problem_type: regression, prediction_col: p}\n"
            "monitors:\n  e: {table: s.t}\n",
            "monitor name 'e' is already declared",
        ),
    ],
)
def test_a_bad_monitor_in_the_project_file_names_its_field(
    tmp_path: Path, extra: str, message: str
) -> None:
    folder = _project(tmp_path, extra)
    with pytest.raises(ConfigError) as info:
        Project.load(folder)
    assert message.replace("Value error, ", "") in str(info.value)


def test_sdk_monitors_are_stored_and_listed(ws: lakeforge.Workspace) -> None:
    ws.tables.write("dev.s.t", pa.table({"x": [1.0, 2.0]}))
    create_monitor(ws, spec())
    assert monitor_spec(ws, "m") == spec()
    assert [m.name for m in list_monitors(ws)] == ["m"]
    with pytest.raises(LakeforgeError, match="already exists"):
        create_monitor(ws, spec())
    create_monitor(ws, spec(columns=["x"]), replace=True)
    assert monitor_spec(ws, "m").columns == ["x"]
    with pytest.raises(LakeforgeError, match=r"table dev\.s\.nope does not exist"):
        create_monitor(ws, spec(name="n", table="s.nope"))
    with pytest.raises(LakeforgeError, match="unknown monitor 'zzz' on target dev"):
        monitor_spec(ws, "zzz")


def test_production_refreshes_the_deployed_spec_only(tmp_path: Path) -> None:
    from lakeforge.bundle import deploy

    folder = _project(tmp_path, "monitors:\n  m: {table: s.t, columns: [x]}\n")
    from tests.conftest import git_init

    git_init(folder)
    with lakeforge.connect("prod", project_dir=folder) as ws:
        with pytest.raises(LakeforgeError, match="is not deployed to target prod"):
            monitor_spec(ws, "m")
        plan = deploy(ws)
        assert [(c.action, c.kind, c.name) for c in plan.changes] == [("create", "monitor", "m")]
        assert monitor_spec(ws, "m").columns == ["x"]
    text = (folder / "lakeforge.yaml").read_text().replace("columns: [x]", "columns: [x, y]")
    (folder / "lakeforge.yaml").write_text(text)
    with lakeforge.connect("prod", project_dir=folder) as ws:
        assert monitor_spec(ws, "m").columns == ["x"]  # the working copy is not deployed
        with lakeforge.connect("dev", project_dir=folder) as dev:
            assert monitor_spec(dev, "m").columns == ["x", "y"]


def test_a_monitor_schedule_becomes_a_deployed_refresh_job(tmp_path: Path) -> None:
    from lakeforge.bundle import deploy, deployed_jobs
    from lakeforge.jobs import JobRunner
    from tests.conftest import git_init

    folder = _project(
        tmp_path,
        "monitors:\n  m:\n    table: s.t\n"
        "    schedule: {cron: '0 6 * * *', timezone: UTC}\n"
        "  unscheduled: {table: s.t}\n",
    )
    git_init(folder)
    with lakeforge.connect("prod", project_dir=folder) as ws:
        ws.tables.write("prod.s.t", pa.table({"x": [1.0, 2.0, 3.0]}))
        plan = deploy(ws)
        assert ("create", "job", "monitor_m") in [(c.action, c.kind, c.name) for c in plan.changes]
        assert list(deployed_jobs(ws)) == ["monitor_m"]
        runner = JobRunner(ws)
        job = runner.spec("monitor_m")
        assert job.schedule is not None and job.schedule.cron == "0 6 * * *"
        run = runner.run("monitor_m")
        assert run is not None and run.status == "succeeded", run
        assert ws.tables.exists("prod.s.t_profile_metrics")


def test_a_job_named_like_a_monitors_refresh_job_is_refused(tmp_path: Path) -> None:
    folder = _project(
        tmp_path,
        "monitors:\n  m: {table: s.t, schedule: {cron: '0 6 * * *'}}\n"
        "jobs:\n  monitor_m: {tasks: [{key: a, python: 'x:y'}]}\n",
    )
    with pytest.raises(ConfigError, match="it gets the refresh job 'monitor_m'"):
        Project.load(folder)
