"""Every `lakeforge …` command named in a message, hint or docstring is a real command."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import typer.main

from lakeforge.cli import app

ROOT = Path(__file__).parents[2]
SOURCE = ROOT / "src" / "lakeforge"
_MENTION = re.compile(r"(?<!from )(?<!import )\blakeforge((?: +[-a-zA-Z0-9_./@]+)+)")
_VALUED = {"-t", "--target", "--project-dir"}


def _strings(file: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def _problem(root: Any, words: list[str], *, code: bool) -> str | None:
    """Why ``lakeforge <words>`` does not name a command; None when it does.

    Outside code (backticks, quotes, a line that starts with it) a first word that is no
    command is prose ("lakeforge starts ..."), not a mention.
    """
    command, path = root, []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            if word not in _VALUED:
                return None  # a command's own option: its value can't be told apart from here
            i += 2
            continue
        if hasattr(command, "commands"):  # a group (Typer vendors its own click)
            sub = command.commands.get(word)
            default = getattr(command, "default_command", None)  # `lakeforge ingest SOURCE`
            if sub is None and default is not None:
                command, path = command.commands[default], [*path, default]
                continue
            if sub is None:
                if not path and (not code or not re.fullmatch(r"[a-z][a-z-]*", word)):
                    return None  # not a command mention (e.g. "lakeforge 0.1")
                return f"{' '.join(path) or 'lakeforge'} has no command {word!r}"
            command, path = sub, [*path, word]
            i += 1
            continue
        takes_arguments = any(p.param_type_name == "argument" for p in command.params)
        if not takes_arguments:
            return f"`lakeforge {' '.join(path)}` takes no argument, but got {word!r}"
        return None
    return None


def _texts() -> list[tuple[str, int, str]]:
    """Every string in the source, and every line of the README and docs."""
    found = [
        (str(file.relative_to(ROOT)), line, text)
        for file in sorted(SOURCE.rglob("*.py"))
        for line, text in _strings(file)
    ]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line, text in enumerate(doc.read_text().splitlines(), 1):
            found.append((str(doc.relative_to(ROOT)), line, text))
    return found


def test_command_mentions_name_real_commands() -> None:
    root = typer.main.get_command(app)
    wrong = []
    for file, line, text in _texts():
        for match in _MENTION.finditer(text):
            raw = match.group(1).split()
            if text[match.end() : match.end() + 1] == ":":
                raw = raw[:-1]  # "lakeforge task: ..." labels a message
            words = [w.rstrip(".,;`'\")") for w in raw]
            words = [w for w in words if w]
            stop = next(
                (
                    k
                    for k, w in enumerate(words)
                    if not re.fullmatch(r"[-\w./@]+", w) or w.isupper() or w == "..."
                ),
                len(words),
            )
            before = text[: match.start()]
            code = before.strip() == "" or before[-1:] in "`'\"" or before.endswith("$ ")
            problem = _problem(root, words[:stop], code=code)
            if problem:
                wrong.append(f"{file}:{line}: {match.group(0)!r}: {problem}")
    assert not wrong, "\n".join(wrong)
