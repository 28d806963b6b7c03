"""Engine: segments and rules looked up by what changed, and rules skipped without their segment, act as a scan."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.manyrules import many_rules_toml
from engine import engine as engine_module
from engine.config import load_config
from engine.decode import decode_line
from engine.events import Event
from engine.pipeline import run_events
from leadstream.generate import GenerateOptions, write_events

# Appended after the 100 generated segments: segments that read only other segments'
# membership (which a condition may do for segments defined before it). When an event
# moves a score, gen_segment_003 (score >= 50) changes, and these must follow in the same
# pass although nothing they read was dirty when the pass began.
CASCADE = """
[segments.zz_high_scorers]
all = [{ field = "segments", op = "contains", value = "gen_segment_003" }]

[segments.zz_high_or_pricing]
any = [{ field = "segments", op = "contains", value = "zz_high_scorers" },
       { field = "segments", op = "contains", value = "gen_segment_004" }]

# Fires at every entry into gen_segment_004 (5 pricing pages within a day): the rule must be
# looked at when the contact leaves, or it would still count as matching at the next entry.
[automation_rules.zz_pricing_again]
all = [{ field = "segments", op = "contains", value = "gen_segment_004" }, { field = "visits", op = "ge", value = 1 }]
repeat = true
actions = [{ action = "notify_sales", params = { channel = "pricing", message = "again" } }]
"""


@pytest.fixture(scope="module")
def many_rules(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, list[Event]]:
    """The many_rules config plus cascading segments, and 3,000 events for it."""
    path = tmp_path_factory.mktemp("cfg") / "many_rules.toml"
    path.write_text(many_rules_toml(100, 100) + CASCADE, encoding="utf-8")
    buf = io.BytesIO()
    write_events(GenerateOptions(events=3_000, contacts=150, seed=5, days=2.0), buf)
    events = [e for e in map(decode_line, buf.getvalue().splitlines()) if isinstance(e, Event)]
    return load_config(Path(path)), events


def test_index_and_scan_give_the_same_results(many_rules, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 102 segments and 101 rules the index and the guards are used; forcing a scan changes nothing."""
    config, events = many_rules
    assert len(config.segments) > engine_module._SCAN_UP_TO
    indexed = run_events(config, events, batch=100)
    monkeypatch.setattr(engine_module, "_SCAN_UP_TO", 10_000)
    scanned = run_events(config, events, batch=100)
    assert [t.to_dict() for t in indexed.triggers] == [t.to_dict() for t in scanned.triggers]
    assert indexed.results() == scanned.results()
    entered = {t.params["segment"] for t in indexed.triggers if t.action == "segment_entered"}
    # The cascade was exercised: a membership change moved segments listed after it.
    assert {"gen_segment_003", "zz_high_scorers", "zz_high_or_pricing"} <= entered
    assert sum(t.rule.startswith("automation_rules.") for t in indexed.triggers) > 50
    again = Counter(t.contact_id for t in indexed.triggers if t.rule == "automation_rules.zz_pricing_again")
    assert max(again.values()) >= 2  # left the segment and came back: fired again
