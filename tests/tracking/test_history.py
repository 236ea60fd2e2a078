"""`lakeforge runs list|show|compare` over the target's tracked runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeforge import Workspace
from lakeforge.cli import main
from lakeforge.errors import LakeforgeError
from lakeforge.tracking import get_run, list_runs


def _cli(capsys: pytest.CaptureFixture[str], project: Path, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), *args])
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out + out.err


def test_runs_are_listed_shown_and_compared(
    ws: Workspace, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for depth, auc in ((3, 0.71), (5, 0.74)):
        with ws.start_run("train", run_name=f"depth{depth}", autolog=False) as run:
            run.log_params({"max_depth": depth, "lr": 0.1})
            run.log_metrics({"auc": auc})
            ids.append(run.run_id)
    with ws.start_run("tune", run_name="other", autolog=False):
        pass
    listed = list_runs(ws.project, ws.target)
    assert [r.name for r in listed] == ["other", "depth5", "depth3"]  # newest first
    assert [r.name for r in list_runs(ws.project, ws.target, pipeline="train")] == [
        "depth5",
        "depth3",
    ]
    assert get_run(ws.project, ws.target, ids[0][:10]).params["max_depth"] == "3"

    code, out = _cli(capsys, project_dir, "runs", "list", "--pipeline", "train")
    assert code == 0 and ids[0][:12] in out and ids[1][:12] in out and "other" not in out
    code, out = _cli(capsys, project_dir, "runs", "show", ids[1][:8])
    assert code == 0 and "max_depth" in out and "0.74" in out and "depth5" in out
    code, out = _cli(capsys, project_dir, "runs", "compare", ids[0][:8], ids[1][:8])
    assert code == 0
    lines = out.splitlines()
    assert any("≠ param" in line and "max_depth" in line for line in lines)
    assert any("≠ metric" in line and "0.71" in line and "0.74" in line for line in lines)
    assert any("param" in line and "lr" in line and "≠" not in line for line in lines)


def test_unknown_or_bad_run_ids_are_named(
    ws: Workspace, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ws.start_run("train", autolog=False):
        pass
    with pytest.raises(LakeforgeError, match="no run of project 'testproj' on target dev"):
        get_run(ws.project, ws.target, "ffffffff")
    with pytest.raises(LakeforgeError, match="is not valid"):
        get_run(ws.project, ws.target, "'; drop")
    code, out = _cli(capsys, project_dir, "runs", "compare", "abc")
    assert code == 2 and "at least two run ids" in out
