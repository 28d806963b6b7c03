"""Workflow action parameters: how quoted event values read inside them."""

from __future__ import annotations

from typing import Any

import pytest

from engine.workflows import fill, placeholder_text


@pytest.mark.parametrize(("value", "text"), [
    ("ai", "ai"),
    (None, ""),
    ("", ""),
    (True, "true"),
    (False, "false"),
    (3, "3"),
    (2.5, "2.5"),
    ({"a": [1, "two"]}, '{"a":[1,"two"]}'),
    ([1, "two"], '[1,"two"]'),
], ids=["string", "missing", "empty", "true", "false", "int", "float", "object", "array"])
def test_a_quoted_value_reads_as_json_not_as_python(value: Any, text: str) -> None:
    """Strings stay as they are, a missing value is nothing, the rest is compact JSON (never `True` or `{'a': ...}`)."""
    assert placeholder_text(value) == text
    assert fill({"template": "topic_{event.properties.topic}_1"}, {"event.properties.topic": value}) == {
        "template": f"topic_{text}_1"}


def test_fill_leaves_what_has_no_placeholder() -> None:
    """Numbers, strings without braces and nested parameters keep their values."""
    params = {"n": 3, "s": "plain", "nested": {"t": "{event.name}!"}}
    assert fill(params, {"event.name": "Webinar"}) == {"n": 3, "s": "plain", "nested": {"t": "Webinar!"}}
