"""Engine: what it skips must not change what it does.

Segments and rules looked up by what changed, and rules skipped without their segment, act
as a scan; waking a contact only when a count window falls past an edge acts as waking it
at every expiry.
"""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from pathlib import Path

import orjson
import pytest

from benchmarks.manyrules import many_rules_toml
from engine import engine as engine_module
from engine.config import load_config, parse_config
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


# ------------------------------------------------------------ count windows: when to wake a contact

# Count conditions of every operator on one window (page views within 2 hours), so each
# kind of edge is crossed, and a repeating rule that fires on each entry.
WINDOW_CASES = """
[segments.zz_views_ge_3]
all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "ge", value = 3 }]

[segments.zz_views_gt_4]
all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "gt", value = 4 }]

[segments.zz_views_lt_2]
all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "lt", value = 2 }]

[segments.zz_views_le_1]
all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "le", value = 1 }]

[segments.zz_views_eq_2]
all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "eq", value = 2 }]

[segments.zz_views_ne_0]
all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "ne", value = 0 }]

# Exits when the count reaches 4: a run of a workflow with an exit condition.
[workflows.zz_busy_follow_up]
trigger = { event = { all = [{ field = "event.type", op = "eq", value = "track" }] } }
entry = "if_not_active"
exit_when = { all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "ge", value = 4 }] }
steps = [
  { name = "three_hours", wait = "3h" },
  { name = "follow_up", action = "send_email", params = { template = "follow_up" } },
]

[automation_rules.zz_busy_again]
all = [{ count = { all = [{ field = "event.type", op = "eq", value = "page" }] }, within = "2h", op = "ge", value = 2 }]
repeat = true
actions = [{ action = "notify_sales", params = { channel = "busy", message = "again" } }]
"""


@pytest.mark.parametrize(
    ("stamps", "now", "edges", "expected"),
    [
        pytest.param([0, 10, 20], 25, {3}, 100, id="at-the-edge-the-oldest-expiry-crosses"),
        pytest.param([0, 10], 25, {3}, None, id="below-every-edge-never"),
        pytest.param([0, 10, 20, 30, 40], 45, {3}, 120, id="above-the-edge-the-expiry-that-reaches-it"),
        pytest.param([0, 10, 20, 30], 105, {3}, 110, id="expired-stamps-do-not-count"),
        pytest.param([0, 10, 20], 25, {1, 2}, 110, id="the-highest-edge-below-the-count"),
        pytest.param([10, 10, 10, 20], 25, {3}, 110, id="equal-stamps-expire-together"),
        pytest.param([0, 10, 20], 25, None, 100, id="without-edges-the-next-expiry"),
        pytest.param([0, 10], 25, None, 100, id="without-edges-below-the-edge-too"),
        pytest.param([0], 200, {1}, None, id="all-expired"),
        pytest.param([0], 200, None, None, id="all-expired-without-edges"),
    ],
)
def test_window_wakeup(stamps: list[int], now: int, edges: set[int] | None, expected: int | None) -> None:
    """A contact is woken when its count, falling one expiry at a time, first passes an edge."""
    assert engine_module._window_wakeup(stamps, now, 100, None if edges is None else frozenset(edges)) == expected


@pytest.mark.parametrize(
    ("op", "value", "edges"),
    [("ge", 3, {3}), ("gt", 4, {5}), ("lt", 2, {2}), ("le", 1, {2}), ("eq", 2, {2, 3}), ("ne", 0, {1}), ("ge", 0, set())],
)
def test_window_edges_come_from_the_conditions(tmp_path: Path, op: str, value: int, edges: set[int]) -> None:
    """Each count condition adds the counts at which its result changes; conditions on one window share it."""
    path = tmp_path / "w.toml"
    inner = '{ all = [{ field = "event.type", op = "eq", value = "page" }] }'
    path.write_text(f"""
[scoring.default]
[[scoring.default.rules]]
name = "page"
points = 1
all = [{{ field = "event.type", op = "eq", value = "page" }}]

[segments.a]
all = [{{ count = {inner}, within = "1h", op = "{op}", value = {value} }}]

[segments.b]
all = [{{ count = {inner}, within = "1h", op = "ge", value = 7 }}]
""", encoding="utf-8")
    (window,) = load_config(path).windows.values()
    assert window.edges == frozenset(edges | {7})


# A half-life profile: every wake-up settles and rounds its score, so none may be skipped.
HALF_LIFE = """
[scoring.fading]
decay = { half_life = "1h" }
[[scoring.fading.rules]]
name = "page"
points = 7
all = [{ field = "event.type", op = "eq", value = "page" }]
"""


def _window_timer(row: dict) -> int | None:
    timers = row["timers"]
    return timers.pop(engine_module.WINDOW_SETTLED, None) or timers.pop(engine_module.WINDOW_LAGGING, None)


@pytest.mark.parametrize("extra", ["", HALF_LIFE], ids=["edges", "half-life-wakes-at-every-expiry"])
def test_waking_at_edges_acts_as_waking_at_every_expiry(tmp_path: Path, extra: str) -> None:
    """The same triggers and the same contacts as a contact woken whenever an event leaves a window.

    Late events (3 %) and equal instants make the state lag the counts at times, and a
    workflow's exit condition reads a window: the cases where every expiry still wakes.
    """
    path = tmp_path / "windows.toml"
    example = Path(__file__).parents[2] / "examples" / "marketing.toml"
    path.write_text(example.read_text(encoding="utf-8") + WINDOW_CASES + extra, encoding="utf-8")
    config = load_config(path)
    assert len(config.windows) == 2
    every = dataclasses.replace(config, windows={
        wid: dataclasses.replace(w, edges=frozenset(range(1, 1_000))) for wid, w in config.windows.items()})
    buf = io.BytesIO()
    write_events(GenerateOptions(events=4_000, contacts=120, seed=11, days=1.0, late_share=0.03), buf)
    events = [e for e in map(decode_line, buf.getvalue().splitlines()) if isinstance(e, Event)]
    edged = run_events(config, events, batch=100)
    woken = run_events(every, events, batch=100)
    assert [t.to_dict() for t in edged.triggers] == [t.to_dict() for t in woken.triggers]
    a, b = edged.results()["contacts"], woken.results()["contacts"]
    assert a.keys() == b.keys()
    timers_a = {cid: _window_timer(row) for cid, row in a.items()}  # the only difference: the next wake-up
    timers_b = {cid: _window_timer(row) for cid, row in b.items()}
    assert a == b
    # Every kind of edge was crossed by an expiry, not only by events.
    exits = {t.params["segment"] for t in edged.triggers
             if t.action == "segment_exited" and t.reason["cause"].startswith("timer:window@")}
    assert {"zz_views_ge_3", "zz_views_gt_4", "zz_views_eq_2", "zz_views_ne_0"} <= exits
    entries = {t.params["segment"] for t in edged.triggers
               if t.action == "segment_entered" and t.reason["cause"].startswith("timer:window@")}
    assert {"zz_views_lt_2", "zz_views_le_1", "zz_views_eq_2"} <= entries
    assert sum(t.rule == "automation_rules.zz_busy_again" for t in edged.triggers) > 20
    assert sum(t.action == "send_email" and t.rule == "workflows.zz_busy_follow_up" for t in edged.triggers) > 5
    if extra:
        assert timers_a == timers_b
    else:
        # No contact waits for a window that would not before, nor wakes sooner.
        waiting = {cid: due for cid, due in timers_a.items() if due is not None}
        assert all(timers_b[cid] is not None and due >= timers_b[cid] for cid, due in waiting.items())


def test_most_window_wake_ups_are_skipped_with_the_example_config() -> None:
    """With "3 pricing views within 7 days" the only edge is 3: a contact with fewer sleeps through expiries."""
    config = load_config(Path(__file__).parents[2] / "examples" / "marketing.toml")
    (window,) = config.windows.values()
    assert window.edges == {3}
    buf = io.BytesIO()
    write_events(GenerateOptions(events=3_000, contacts=300, seed=3, days=3.0), buf)
    events = [e for e in map(decode_line, buf.getvalue().splitlines()) if isinstance(e, Event)]
    contacts = run_events(config, events, batch=100).contacts().values()
    viewed = [c for c in contacts if c.windows.get(window.id)]
    waiting = [c for c in viewed if engine_module.WINDOW_SETTLED in c.timers or engine_module.WINDOW_LAGGING in c.timers]
    assert len(viewed) > 50
    assert len(waiting) < len(viewed) / 2
    assert all(len(c.windows[window.id]) >= 3 for c in waiting)  # only a count of 3 can fall past the edge


# One scoring rule, 45 points for a "Form" track event, and such an event of u1 (see _form_event).
FORM_SCORING = """
[scoring.default]
[[scoring.default.rules]]
name = "form"
points = 45
all = [{ field = "event.name", op = "eq", value = "Form" }]
"""


def _form_event() -> Event:
    line = b'{"type":"track","event":"Form","userId":"u1","timestamp":"2026-01-05T08:00:00Z","messageId":"m1"}'
    event = decode_line(line)
    assert isinstance(event, Event)
    return event


def test_default_stage_bands_write_the_same_trigger_compiled_or_not() -> None:
    """Without a [stages] table the bands are floats, as a config's are: `40.0` in the trigger either way.

    Compiled code stored the default bands' ints as floats and pure code kept them, so the
    same run wrote `"band_min":40.0` or `"band_min":40` depending on the build.
    """
    config = parse_config(FORM_SCORING, "cfg.toml")
    (trigger,) = run_events(config, [_form_event()]).triggers
    # Compared as JSON text: 40 == 40.0 in Python, and the difference is in the file.
    assert orjson.dumps(trigger.to_dict()["reason"]) == b'{"profile":"default","score":45.0,"band_min":40.0,"cause":"m1"}'


RECONFIG_BEFORE = FORM_SCORING + """
[scoring.gone]
[[scoring.gone.rules]]
name = "form"
points = 5
all = [{ field = "event.name", op = "eq", value = "Form" }]
[segments.removed]
all = [{ field = "score.default", op = "ge", value = 1 }]
[workflows.dropped]
trigger = { event = { all = [{ field = "event.name", op = "eq", value = "Form" }] } }
steps = [{ wait = "30d" }, { action = "send_email", params = { template = "later" } }]
"""
RECONFIG_AFTER = FORM_SCORING + """
[segments.added]
all = [{ field = "score.default", op = "ge", value = 40 }]
[stages]
bands = [{ name = "cold", min = 0 }, { name = "warm", min = 30 }, { name = "hot", min = 100 }]
[workflows.welcome_added]
trigger = { entered_segment = "added" }
steps = [{ action = "send_email", params = { template = "added" } }]
"""


def test_a_contact_saved_under_another_config_is_brought_in_line_with_this_one() -> None:
    """Removed segments, profiles and workflows leave nothing behind; a new segment takes in the contacts that
    match and changed stage bands move them, each with its trigger, as of the time given."""
    from engine.engine import Engine

    event = _form_event()
    contact = run_events(parse_config(RECONFIG_BEFORE, "before.toml"), [event]).contacts()["u1"]
    assert set(contact.segments) == {"removed"} and set(contact.scores) == {"default", "gone"} and contact.runs
    engine = Engine(parse_config(RECONFIG_AFTER, "after.toml"))
    now = event.ts + 60_000
    changed, fired = engine.reconfigured(contact, now, "config:after")
    assert changed
    assert set(contact.segments) == {"added"} and set(contact.scores) == {"default"}
    assert not contact.runs and not [k for k in contact.timers if k.startswith("wf:")]
    assert [(t.action, t.params, t.event_time, t.reason["cause"]) for t in fired] == [
        ("stage_changed", {"from": "sales_ready", "to": "warm"}, now, "config:after"),
        ("segment_entered", {"segment": "added"}, now, "config:after"),
        ("send_email", {"template": "added"}, now, "config:after")]
    assert engine.reconfigured(contact, now, "config:after") == (False, [])  # once in line, nothing more
