"""The one loader for golden scenario files: title, config, input events, expected triggers and state.

A scenario file is JSON:
- ``title``: what behaviour it pins down;
- ``config``: a path relative to the repository (default examples/marketing.toml), or
  ``config_toml``: inline TOML;
- ``events``: Segment-spec objects in arrival order. ``timestamp`` may be relative to
  ``base`` (default 2026-01-05T08:00:00Z) as ``"+90s"``, ``"+2d"``; a missing
  ``messageId`` becomes ``m<position>``;
- ``expect.triggers``: the triggers in emission order, each compared on the keys it
  gives (always action, rule and contact_id; optionally params, event_time, reason);
- ``expect.rules``: compare only triggers whose rule starts with one of these prefixes
  (a scenario about segments need not list what the example's workflows do);
- ``expect.contacts``: per contact_id, the fields of ``ContactState.to_row()`` to compare;
- ``expect.absent``: contact ids that must not exist;
- ``expect.counts``: pipeline counters (accepted, duplicates, late, merges, relinks);
- ``order_insensitive``: also run the events sorted by time, expecting the same results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.config import load_config, parse_config, Config
from engine.decode import decode_line
from engine.events import Event
from engine.timeutil import format_ms, parse_duration_ms, parse_iso_ms

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "2026-01-05T08:00:00Z"


@dataclass
class Scenario:
    """One golden scenario, loaded and ready to run."""

    name: str
    title: str
    config: Config
    events: list[Event]
    lines: list[bytes]
    expect: dict[str, Any]
    order_insensitive: bool
    base_ms: int

    def when(self, text: str) -> str:
        """Resolve a relative time like "+2d" to the ISO string triggers carry."""
        return format_ms(self.base_ms + parse_duration_ms(text[1:])) if text.startswith("+") else text


def _resolve_times(obj: dict[str, Any], base_ms: int) -> dict[str, Any]:
    ts = obj.get("timestamp")
    if isinstance(ts, str) and ts.startswith("+"):
        obj = dict(obj, timestamp=format_ms(base_ms + parse_duration_ms(ts[1:])))
    return obj


def load_scenario(path: Path) -> Scenario:
    """Load a golden file; events must all decode (bad input has its own tests)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    base_ms = parse_iso_ms(doc.get("base", DEFAULT_BASE))
    if "config_toml" in doc:
        config = parse_config(doc["config_toml"], f"{path.name}:config_toml")
    else:
        config = load_config(ROOT / doc.get("config", "examples/marketing.toml"))
    events, lines = [], []
    for i, raw in enumerate(doc["events"], start=1):
        obj = _resolve_times(raw, base_ms)
        obj.setdefault("messageId", f"m{i:03d}")
        line = orjson.dumps(obj)
        decoded = decode_line(line, f"{path.name}:{i}")
        if not isinstance(decoded, Event):
            raise ValueError(f"{path.name}: event {i} does not decode: {decoded}")
        events.append(decoded)
        lines.append(line)
    return Scenario(path.stem, doc["title"], config, events, lines, doc.get("expect", {}),
                    bool(doc.get("order_insensitive")), base_ms)


def project_trigger(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys the expectation names (plus the identifying three) from an actual trigger."""
    keys = {"action", "rule", "contact_id"} | set(expected)
    out = {k: actual.get(k) for k in keys}
    if "params" in expected:
        out["params"] = {k: actual["params"].get(k) for k in expected["params"]}
    if "reason" in expected:
        out["reason"] = {k: actual["reason"].get(k) for k in expected["reason"]}
    return out


def scenario_files(folder: Path) -> list[Path]:
    """All golden files in a folder, sorted, for parametrize."""
    return sorted(folder.glob("*.json"))
