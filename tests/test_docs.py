"""Every Python snippet in the README and docs/ is (an excerpt of) an example the tests run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SOURCE = re.compile(r"examples/(\w+\.py)")


def _snippets() -> list[tuple[str, int, str, str | None]]:
    """(doc, line, code, example named in the text just before the block) per python block."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        previous_end = 0
        for match in _BLOCK.finditer(text):
            named = _SOURCE.findall(text[previous_end : match.start()])
            line = text.count("\n", 0, match.start()) + 1
            where = str(doc.relative_to(ROOT))
            found.append((where, line, match.group(1), named[-1] if named else None))
            previous_end = match.end()
    return found


def test_docs_have_python_snippets() -> None:
    # guards the test below against a pattern that silently matches nothing
    assert len(_snippets()) >= 5


@pytest.mark.parametrize(
    ("doc", "line", "code", "source"),
    [pytest.param(*snippet, id=f"{snippet[0]}:{snippet[1]}") for snippet in _snippets()],
)
def test_snippet_is_the_text_of_the_example_it_names(
    doc: str, line: int, code: str, source: str | None
) -> None:
    assert source is not None, (
        f"{doc}:{line}: the python block names no example; link the file it comes from "
        "(examples/NAME.py) in the text just before the block"
    )
    example = EXAMPLES / source
    assert example.is_file(), f"{doc}:{line}: names examples/{source}, which does not exist"
    assert "\n" + code in "\n" + example.read_text(), (
        f"{doc}:{line}: the python block is not a run of whole lines of examples/{source}; "
        "copy the text from the file (the docs must show what the tests run)"
    )
