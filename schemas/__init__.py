"""The formats leadstream reads and writes, as files next to this module.

- ``event.schema.json``: an input line (a Segment-spec event) as ``engine.decode.decode_line`` accepts it;
- ``trigger.schema.json``: a trigger record, ``engine.triggers.Trigger.to_dict()``;
- ``dead_letter.schema.json``: a rejected line, ``engine.events.Rejection.to_dict()``.

JSON Schemas follow draft 2020-12. Rules JSON Schema cannot express (the 32 KB line
limit, placeholder identifiers, the 2000..2100 timestamp range) are spelled out in
their ``description`` texts and in the ``x-leadstream-rejections`` keyword.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

__all__ = ["SCHEMA_DIR", "load_schema", "schema_path"]

SCHEMA_DIR = Path(__file__).resolve().parent


def schema_path(name: str) -> Path:
    """Return the path of a format file in this package.

    A bare name means a JSON Schema (``"event"`` -> ``event.schema.json``); a name with
    a suffix is taken as the file name itself (``"warehouse.sql"``, ``"event.schema.json"``).
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"expected a schema name such as 'event' or a file name such as 'warehouse.sql', got {name!r}")
    return SCHEMA_DIR / (name if "." in name else f"{name}.schema.json")


def load_schema(name: str) -> dict[str, Any]:
    """Load a JSON Schema by name (see ``schema_path``) and return it as a dict."""
    doc = orjson.loads(schema_path(name).read_bytes())
    if not isinstance(doc, dict):
        raise ValueError(f"{schema_path(name).name}: expected a JSON object at the top level")
    return doc
