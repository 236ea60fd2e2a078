"""What every command shares: the global options, the workspace, and the consoles."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace


# Piped output (scripts, CI logs) gets a wide page instead of Rich's 80-column default.
_PIPE_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
console = Console(width=_PIPE_WIDTH)
err_console = Console(stderr=True, width=_PIPE_WIDTH)


@dataclass
class CliState:
    """Global options given before the command (``-t``, ``--project-dir``)."""

    target: str | None = None
    project_dir: Path | None = None
    _workspace: Workspace | None = field(default=None, repr=False)

    def workspace(self) -> Workspace:
        if self._workspace is None:
            from lakeforge._workspace import connect

            self._workspace = connect(self.target, project_dir=self.project_dir)
        return self._workspace


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def workspace(ctx: typer.Context) -> Workspace:
    return state(ctx).workspace()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops like Ctrl-C, so the consumer's lease is released, not left to expire."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]


def spinner(text: str, *, on: Console, quiet: bool) -> Progress:
    """A one-line progress display (spinner, ``text``, elapsed time) for long work.

    ``text`` may use the task's fields (``{task.description}``, ``{task.completed}``).
    Off when ``on`` is not a terminal or with ``--quiet``; it disappears when done.
    """
    return Progress(
        SpinnerColumn(),
        TextColumn(text),
        TimeElapsedColumn(),
        console=on,
        transient=True,
        disable=quiet or not on.is_terminal,
    )
