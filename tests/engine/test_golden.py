"""Golden scenarios: each file pins one behaviour of the engine end to end (both stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.pipeline import LocalPipeline
from engine.timeutil import parse_duration_ms
from tests.golden import Scenario, load_scenario, project_trigger, scenario_files

GOLDEN = Path(__file__).parent / "golden"
FILES = scenario_files(GOLDEN)


def _run(scenario: Scenario, events: list[Any]) -> LocalPipeline:
    pipe = LocalPipeline(scenario.config, shards=8)
    pipe.feed(events)
    pipe.finish()
    return pipe


def _times(value: Any, base_ms: int) -> Any:
    """Resolve relative times ("+2d") in expected contact fields to epoch ms."""
    if isinstance(value, str) and value.startswith("+"):
        return base_ms + parse_duration_ms(value[1:])
    if isinstance(value, dict):
        return {k: _times(v, base_ms) for k, v in value.items()}
    return value


def _check(scenario: Scenario, pipe: LocalPipeline) -> None:
    expect = scenario.expect
    actual_triggers = [t.to_dict() for t in pipe.triggers]
    if "rules" in expect:
        actual_triggers = [t for t in actual_triggers if t["rule"].startswith(tuple(expect["rules"]))]
    if "triggers" in expect:
        wanted = [dict(t, event_time=scenario.when(t["event_time"])) if "event_time" in t else t for t in expect["triggers"]]
        got = [project_trigger(a, w) for a, w in zip(actual_triggers, wanted)]
        assert got == wanted, f"{scenario.title}: triggers differ"
        assert len(actual_triggers) == len(wanted), (
            f"{scenario.title}: expected {len(wanted)} triggers, got {len(actual_triggers)}: "
            f"{[(t['action'], t['rule'], t['contact_id']) for t in actual_triggers]}"
        )
    contacts = pipe.contacts()
    for cid, fields in expect.get("contacts", {}).items():
        assert cid in contacts, f"{scenario.title}: contact {cid!r} missing; have {sorted(contacts)}"
        row = contacts[cid].to_row()
        wanted = _times(fields, scenario.base_ms)
        assert {k: row[k] for k in wanted} == wanted, f"{scenario.title}: contact {cid!r} differs"
    for cid in expect.get("absent", []):
        assert cid not in contacts, f"{scenario.title}: contact {cid!r} should not exist"
    links = {device: link[0] for device, link in pipe.identities().items()}
    for device, cid in expect.get("identities", {}).items():
        assert links.get(device) == cid, f"{scenario.title}: device {device!r} links to {links.get(device)!r}"
    for name, n in expect.get("counts", {}).items():
        assert pipe.counts.get(name, 0) == n, f"{scenario.title}: counter {name!r} is {pipe.counts.get(name, 0)}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden(path: Path) -> None:
    """The scenario's events give exactly the expected triggers and final state."""
    scenario = load_scenario(path)
    _check(scenario, _run(scenario, scenario.events))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_trigger_ids_are_stable(path: Path) -> None:
    """Running a scenario twice gives the same trigger ids (they hash input, never a counter)."""
    scenario = load_scenario(path)
    first = [t.trigger_id for t in _run(scenario, scenario.events).triggers]
    again = [t.trigger_id for t in _run(scenario, scenario.events).triggers]
    assert first == again
    assert len(set(first)) == len(first), "trigger ids must be unique"


ORDERED = [p for p in FILES if load_scenario(p).order_insensitive]


@pytest.mark.parametrize("path", ORDERED, ids=[p.stem for p in ORDERED])
def test_golden_order_insensitive(path: Path) -> None:
    """Scenarios marked order_insensitive give the same results in time order as in arrival order."""
    scenario = load_scenario(path)
    in_order = sorted(scenario.events, key=lambda e: e.sort_key())
    assert in_order != scenario.events, "the scenario should arrive out of order"
    _check(scenario, _run(scenario, in_order))
    assert _run(scenario, in_order).results() == _run(scenario, scenario.events).results()


def test_golden_folder_is_not_empty() -> None:
    """Guards against a glob that silently finds nothing."""
    assert len(FILES) >= 10
