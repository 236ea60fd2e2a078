"""`lakeforge prompts ...`: register, list, show, diff, alias and copy, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeforge import Workspace
from lakeforge.cli import main


def test_prompts_cli(
    ml_ws: Workspace, ml_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(ml_project), *args])
        out = capsys.readouterr()
        assert exit_info.value.code == code, out.out + out.err
        return out.out + out.err

    name = "dev.prompts.cli_support"
    first, second = tmp_path / "v1.txt", tmp_path / "v2.txt"
    first.write_text("You are helpful.\nBe brief.\n")
    second.write_text("You are helpful about [bold]{{product}}[/bold].\nBe brief.\n")
    assert f"registered {name} version 1" in run("prompts", "register", name, "-f", str(first))
    assert f"registered {name} version 2" in run(
        "prompts", "register", "prompts.cli_support", "-f", str(second), "-m", "product slot"
    )
    assert f"{name}@production: none -> v1" in run("prompts", "alias", name, "production", "1")
    assert f"{name}@production: v1 -> v2" in run("prompts", "alias", name, "production", "2")
    assert "already at v2" in run("prompts", "alias", name, "production", "2")
    listed = run("prompts", "list")
    assert name in listed and "production=v2" in listed
    shown = run("prompts", "show", f"{name}@production")
    assert f"{name} v2" in shown and "aliases: production" in shown
    assert "message: product slot" in shown
    assert "[bold]{{product}}[/bold]" in shown  # the template verbatim, not Rich markup
    assert "You are helpful.\nBe brief." in run("prompts", "show", f"{name}/1")
    diff = run("prompts", "diff", f"{name}/1", f"{name}@production")
    assert f"--- {name}/1" in diff and f"+++ {name}/2" in diff
    assert "-You are helpful.\n+You are helpful about [bold]{{product}}[/bold].\n" in diff
    assert "no difference" in run("prompts", "diff", f"{name}/2", name)
    assert "to staging.prompts.cli_support version 1" in run(
        "prompts", "copy", f"{name}@production", "--to", "staging"
    )
    staged = run("-t", "staging", "prompts", "show", "staging.prompts.cli_support")
    assert f"tag lakeforge.copied_from: {name}/2" in staged
    # errors: one line naming what was wrong and what is allowed, exit code 1
    assert "has no version 9 (versions: 1, 2)" in run(
        "prompts", "alias", name, "production", "9", code=1
    )
    assert "is not NAME, NAME/VERSION or NAME@ALIAS" in run("prompts", "show", "a@b@c", code=1)
    assert "prompt name 'support' is not valid" in run("prompts", "show", "support", code=1)
    assert "does not accept prompt copies from 'dev'" in run(
        "prompts", "copy", f"{name}/1", "--to", "prod", code=1
    )
    assert "no alias 'canary' (aliases: production)" in run(
        "prompts", "show", f"{name}@canary", code=1
    )
