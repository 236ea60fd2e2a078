from __future__ import annotations

import pytest

from lakeforge.errors import TableNameError
from lakeforge.lakehouse import TableName


def test_parse_three_parts_and_default_catalog() -> None:
    assert str(TableName.parse("Dev.Bronze.Flights")) == "dev.bronze.flights"
    assert TableName.parse("bronze.flights", default_catalog="dev") == TableName(
        "dev", "bronze", "flights"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("flights", "must have three parts"),
        ("a.b.c.d", "must have three parts"),
        ("dev..flights", "empty schema part"),
        ("dev.bronze.", "empty table part"),
        ("dev.../etc", "must have three parts"),
        ("dev.bronze.../x", "must have three parts"),
        ("dev.bro/nze.x", "schema part 'bro/nze' is not valid"),
        ("dev.bronze.x y", "table part 'x y' is not valid"),
        ("dev.bronze.1x", "table part '1x' is not valid"),
    ],
)
def test_bad_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(TableNameError, match=message):
        TableName.parse(name)


@pytest.mark.parametrize("name", ["dev.bronze\n.nl", "dev\n.bronze.nl", "dev.bronze\r\n.nl"])
def test_a_newline_inside_a_name_is_refused(name: str) -> None:
    """``$`` matches before a trailing newline: parts must match as whole strings."""
    with pytest.raises(TableNameError, match="is not valid"):
        TableName.parse(name)


def test_model_names_are_worded_as_models() -> None:
    with pytest.raises(
        TableNameError,
        match=r"model name 'species' must have three parts, "
        r"catalog.schema.model, or schema.model in the current target "
        r"\(e.g. dev.ml.flight_delay\)",
    ):
        TableName.parse("species", default_catalog="dev", kind="model")
    assert str(TableName.parse("ml.delay", default_catalog="dev", kind="model")) == "dev.ml.delay"
