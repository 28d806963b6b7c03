"""Contract tests applied to every registered item (river-style): every operator, every action,
the contact state's merge algebra, the engine's purity, shard snapshots and the pipeline's
independence of sharding, batching and arrival order.

Parametrizing over the registries (OPS, ACTIONS) means a newly added operator or action is
held to the same contracts without anyone writing a test for it.
"""

from __future__ import annotations

import copy
import pickle
import random
import re
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.actions import ACTIONS, compile_actions
from engine.conditions import OPS, CompileContext, compile_condition
from engine.config import load_config
from engine.contact import ContactState
from engine.contacts import ContactShard
from engine.decode import decode_line
from engine.engine import Engine
from engine.errors import Problems
from engine.events import Event
from engine.identity import IdentityShard
from engine.pipeline import LocalPipeline, run_events
from engine.timeutil import format_ms

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "examples" / "marketing.toml")
ENGINE = Engine(CONFIG)
LATENESS = CONFIG.settings.allowed_lateness_ms
START = 1_767_600_000_000  # 2026-01-05T08:00:00Z
MINUTE, DAY = 60_000, 86_400_000

# ================================================================== conditions: every operator

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
SCALARS = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.floats(-1e6, 1e6, allow_nan=False), st.booleans())
REGEXES = st.one_of(
    st.sampled_from([r"^a", r"\d+", r"(cto|vp)\b", r".*", r"x{2,}", r"^$", r"[A-Z]"]),
    st.text(max_size=5).map(re.escape),
)
# A valid `value` for each operator. A new operator must get an entry here
# (test_every_op_has_a_value_strategy), which brings it under all the contracts below.
OP_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "eq": SCALARS,
    "ne": SCALARS,
    "lt": st.one_of(st.integers(-5, 5), st.floats(-10, 10), st.text(max_size=4)),
    "le": st.one_of(st.integers(-5, 5), st.floats(-10, 10), st.text(max_size=4)),
    "gt": st.one_of(st.integers(-5, 5), st.floats(-10, 10), st.text(max_size=4)),
    "ge": st.one_of(st.integers(-5, 5), st.floats(-10, 10), st.text(max_size=4)),
    "in": st.lists(SCALARS, min_size=1, max_size=4),
    "not_in": st.lists(SCALARS, min_size=1, max_size=4),
    "contains": SCALARS,
    "starts_with": st.text(max_size=4),
    "ends_with": st.text(max_size=4),
    "exists": st.booleans(),
    "matches": REGEXES,
}


def _fits(v: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)


# Typed fields take only values of their type: the engine writes nothing else there, and
# compiled (leadstream/native.py) they refuse anything else. Other values leave the field be.
def _set_attr(name: str, *kinds: type) -> Callable[[ContactState, Event, Any], None]:
    return lambda c, e, v: setattr(c, name, v) if _fits(v, kinds) else None


def _set_event_attr(name: str, *kinds: type) -> Callable[[ContactState, Event, Any], None]:
    return lambda c, e, v: setattr(e, name, v) if _fits(v, kinds) else None


# Field kinds: field name -> how to put a generated JSON value where the field reads it.
FIELD_SETTERS: dict[str, Callable[[ContactState, Event, Any], None]] = {
    "traits.x": lambda c, e, v: c.traits.__setitem__("x", v),
    "traits.a.b": lambda c, e, v: c.traits.__setitem__("a", {"b": v}),
    "email": lambda c, e, v: c.traits.__setitem__("email", v),
    "first_campaign.source": lambda c, e, v: setattr(c, "first_campaign", {"source": v}),
    "score.default": lambda c, e, v: c.scores.__setitem__("default", v),
    "counts.Form Submitted": lambda c, e, v: c.counts.__setitem__("Form Submitted", v),
    "stage": _set_attr("stage", str, type(None)),
    "visits": _set_attr("visits", int),
    "fit": _set_attr("fit", float),
    "segments": lambda c, e, v: setattr(c, "segments", {"s": START, **({v: START} if isinstance(v, str) else {})}),
    "lists": lambda c, e, v: setattr(c, "lists", {"l": START, **({v: START} if isinstance(v, str) else {})}),
    "known": lambda c, e, v: None,
    "user_id": lambda c, e, v: None,
    "contact_id": lambda c, e, v: None,
    "event.name": _set_event_attr("name", str, type(None)),
    "event.type": lambda c, e, v: None,
    "event.message_id": lambda c, e, v: None,
    "event.group_id": _set_event_attr("group_id", str, type(None)),
    "event.starts_visit": lambda c, e, v: None,
    "event.properties.x": lambda c, e, v: e.properties.__setitem__("x", v),
    "event.properties.a.b": lambda c, e, v: e.properties.__setitem__("a", {"b": v}),
    "event.context.campaign.source": lambda c, e, v: e.context.__setitem__("campaign", {"source": v}),
    "event.traits.x": lambda c, e, v: e.traits.__setitem__("x", v),
}


def make_contact(known: bool) -> ContactState:
    """A contact with something in every field conditions read."""
    c = ContactState("user-1", "user-1") if known else ContactState("anon-1")
    c.traits = {"email": "a@b.example", "title": "CTO", "x": "value", "a": {"b": [1, "x"]}}
    c.scores = {"default": 12.0}
    c.counts = {"$page": 3, "Form Submitted": 1}
    c.segments, c.lists = {"hot_leads": START}, {"vip": START}
    c.stage, c.stage_since, c.grade, c.fit, c.visits = "interest", START, "B", 60.0, 2
    c.first_campaign, c.first_campaign_at = {"source": "google"}, START
    c.visit_start, c.windows, c.matching = "m-1", {"wabc": [START - 1000, START]}, {"automation_rules.x": None}
    c.events, c.first_seen, c.last_seen = 5, START - DAY, START
    return c


def make_event() -> Event:
    """An event with something in every field conditions read."""
    return Event(
        message_id="m-1", type="track", ts=START, anonymous_id="anon-1", user_id="user-1", group_id="g-1",
        name="Form Submitted", properties={"x": 3, "path": "/pricing", "a": {"b": "c"}},
        traits={"x": "pro"}, context={"campaign": {"source": "g"}, "page": {"path": "/x"}},
    )


def compile_leaf(field: str, op: str, value: Any, ignore_case: bool, omit_value: bool = False) -> Any:
    """Compile one leaf; return the compiled condition, or None when it has problems."""
    node: dict[str, Any] = {"field": field, "op": op}
    if not omit_value:
        node["value"] = value
    if ignore_case:
        node["ignore_case"] = True
    problems = Problems("contract.toml")
    ctx = CompileContext(problems=problems, profiles=frozenset({"default"}),
                         segments=(value,) if not isinstance(value, (list, dict)) else ())
    compiled = compile_condition(node, "rule.all[0]", ctx)
    return compiled if compiled is not None and not problems.items else None


def compile_ok(field: str, op: str, value: Any, ignore_case: bool, omit_value: bool = False) -> Any:
    """Compile a leaf that must be valid; ignore_case is dropped for operators it does not apply to.

    A value of another type than a field the engine types (a score against text) is refused by
    the config checks, so such a draw is no example.
    """
    compiled = compile_leaf(field, op, value, ignore_case, omit_value)
    if compiled is None and ignore_case:
        compiled = compile_leaf(field, op, value, False, omit_value)
    if compiled is None:
        problems = Problems("contract.toml")
        ctx = CompileContext(problems=problems, profiles=frozenset({"default"}), segments=())
        compile_condition({"field": field, "op": op, "value": value}, "rule.all[0]", ctx)
        assume(not any("never match" in text or "compare it with eq or ne" in text or "unknown event type" in text
                       for text in problems.items))
    assert compiled is not None, (field, op, value)
    return compiled


def test_every_op_has_a_value_strategy() -> None:
    """Every registered operator is covered by the contracts below (add a strategy for a new one)."""
    assert set(OP_VALUES) == set(OPS)


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_op_is_pure_and_total(op: str, data: st.DataObject) -> None:
    """On any field kind and any JSON value there, an operator returns a bool, the same one twice,
    never raises, and changes neither the contact nor the event."""
    field = data.draw(st.sampled_from(sorted(FIELD_SETTERS)), label="field")
    value = data.draw(OP_VALUES[op], label="value")
    compiled = compile_ok(field, op, value, data.draw(st.booleans(), label="ignore_case"))
    contact, event = make_contact(data.draw(st.booleans(), label="known")), make_event()
    FIELD_SETTERS[field](contact, event, data.draw(JSON_VALUES, label="field value"))
    use_event = data.draw(st.booleans(), label="with event")
    ev = event if use_event else None
    before = pickle.dumps((contact, event)), copy.deepcopy((contact, event))
    first = compiled.fn(contact, ev, START)
    second = compiled.fn(contact, ev, START)
    assert isinstance(first, bool)
    assert first == second
    assert pickle.dumps((contact, event)) == before[0]
    assert (contact, event) == before[1]


# Ways to make a field missing: (label, field, mutate(contact, event) -> event or None).
MISSING_CASES: list[tuple[str, str, Callable[[ContactState, Event], Event | None]]] = [
    ("trait-absent", "traits.nope", lambda c, e: e),
    ("trait-null", "traits.x", lambda c, e: c.traits.__setitem__("x", None) or e),
    ("nested-trait-under-scalar", "traits.title.deep", lambda c, e: e),
    ("nested-trait-null", "traits.a.b", lambda c, e: c.traits.__setitem__("a", {"b": None}) or e),
    ("email-absent", "email", lambda c, e: c.traits.pop("email") and e),
    ("email-empty", "email", lambda c, e: c.traits.__setitem__("email", "") or e),
    ("no-first-campaign", "first_campaign.source", lambda c, e: setattr(c, "first_campaign", None) or e),
    ("campaign-key-absent", "first_campaign.term", lambda c, e: e),
    ("no-stage", "stage", lambda c, e: setattr(c, "stage", None) or e),
    ("anonymous-user-id", "user_id", lambda c, e: setattr(c, "user_id", None) or e),
    ("property-absent", "event.properties.nope", lambda c, e: e),
    ("property-null", "event.properties.x", lambda c, e: e.properties.__setitem__("x", None) or e),
    ("context-key-absent", "event.context.campaign.term", lambda c, e: e),
    ("event-trait-absent", "event.traits.nope", lambda c, e: e),
    ("event-name-null", "event.name", lambda c, e: setattr(e, "name", None) or e),
    ("event-group-null", "event.group_id", lambda c, e: setattr(e, "group_id", None) or e),
    ("event-user-null", "event.user_id", lambda c, e: setattr(e, "user_id", None) or e),
    ("no-event-property", "event.properties.x", lambda c, e: None),
    ("no-event-type", "event.type", lambda c, e: None),
    ("no-event-starts-visit", "event.starts_visit", lambda c, e: None),
    ("no-event-message-id", "event.message_id", lambda c, e: None),
]


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_missing_fails_every_op_but_exists_false(op: str, data: st.DataObject) -> None:
    """SQL NULL semantics: a missing or null field fails every test (ne and not_in included),
    and only `exists = false` holds."""
    label, field, mutate = data.draw(st.sampled_from(MISSING_CASES), label="missing")
    value = data.draw(OP_VALUES[op], label="value")
    omit = op == "exists" and data.draw(st.booleans(), label="omit value")
    compiled = compile_ok(field, op, value, data.draw(st.booleans(), label="ignore_case"), omit)
    contact = make_contact(True)
    event = mutate(contact, make_event())
    expected = op == "exists" and not omit and value is False
    assert compiled.fn(contact, event, START) is expected, label


# ================================================================== actions: every action

SAMPLES = {"a string": "x-1", "a number": 2, "a string, number or boolean": "gold", "a table": {"k": 1}}


def minimal_params(action: str) -> dict[str, Any]:
    """The smallest valid params table of an action: its required keys with sample values."""
    required, _ = ACTIONS[action]
    params = {key: SAMPLES[kind] for key, kind in required.items()}
    if action == "webhook":
        params["url"] = "https://hooks.example.com/lead"
    return params


def compile_one(action: str, params: dict[str, Any]) -> tuple[Any, list[str]]:
    problems = Problems("contract.toml")
    out = compile_actions([{"action": action, "params": params}], "automation_rules.r.actions", problems,
                          frozenset({"default"}))
    return out, problems.items


@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_minimal_params_compile(action: str) -> None:
    """Every action compiles with just its required params, and keeps them unchanged."""
    out, problems = compile_one(action, minimal_params(action))
    assert problems == []
    assert out is not None and out[0].action == action and out[0].params == minimal_params(action)


@pytest.mark.parametrize(
    ("action", "key"),
    [(a, k) for a, (required, _) in ACTIONS.items() for k in required],
    ids=[f"{a}-{k}" for a, (required, _) in ACTIONS.items() for k in required],
)
def test_action_missing_required_param_is_named(action: str, key: str) -> None:
    """Leaving out a required param is an error that names params.<key>."""
    params = minimal_params(action)
    del params[key]
    out, problems = compile_one(action, params)
    assert out is None
    assert any(f"params.{key}" in p for p in problems), problems


@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_unknown_param_is_named(action: str) -> None:
    """A param the action does not know (a typo) is an error that names it."""
    out, problems = compile_one(action, {**minimal_params(action), "tempate": "typo"})
    assert out is None
    assert any("tempate" in p for p in problems), problems


# ================================================================== contact state: merge algebra

PATHS = ("/", "/pricing", "/pricing/enterprise", "/blog/ai", "/product/scoring")
TRACK_NAMES = ("Form Submitted", "Webinar Registered", "Webinar Attended", "Email Opened",
               "Email Link Clicked", "Product Added", "Order Completed", "Signed Up", "Other")
TRAITS = st.fixed_dictionaries({}, optional={
    "title": st.sampled_from(["CTO", "Student", "VP Sales", "Engineer"]),
    "city": st.sampled_from(["Munich", "Berlin"]),
    "company_size": st.integers(1, 500),
    "industry": st.sampled_from(["software", "retail"]),
    "country": st.sampled_from(["DE", "US"]),
    "email": st.sampled_from(["a@x.example", "b@y.example"]),
})
CAMPAIGNS = st.fixed_dictionaries({"source": st.sampled_from(["google", "newsletter"]),
                                   "medium": st.sampled_from(["cpc", "email"])})


@st.composite
def device_events(draw: st.DrawFn, device: str, user_id: str | None = None, max_size: int = 10) -> list[Event]:
    """Decoded events of one device (carrying user_id when given), in event-time order."""
    out = []
    for i in range(draw(st.integers(0, max_size))):
        ts = START + draw(st.integers(0, 10 * DAY))
        kind = draw(st.sampled_from(["page", "page", "track", "track", "identify", "screen"]))
        obj: dict[str, Any] = {"type": kind, "anonymousId": device, "messageId": f"{device}-{i}",
                               "timestamp": format_ms(ts)}
        if user_id is not None:
            obj["userId"] = user_id
        if kind == "page":
            obj["properties"] = {"path": draw(st.sampled_from(PATHS))}
        elif kind == "track":
            obj["event"] = draw(st.sampled_from(TRACK_NAMES))
            obj["properties"] = {"topic": draw(st.sampled_from(["security", "ai"]))}
        elif kind == "identify":
            obj["traits"] = draw(TRAITS)
        if draw(st.integers(0, 4)) == 0:
            obj["context"] = {"campaign": draw(CAMPAIGNS)}
        event = decode_line(orjson.dumps(obj))
        assert isinstance(event, Event), event
        out.append(event)
    return sorted(out, key=Event.sort_key)


@st.composite
def contact_states(draw: st.DrawFn, name: str) -> ContactState:
    """A contact built the real way: events applied by the engine (known or an anonymous profile)."""
    known = draw(st.integers(0, 3)) == 0
    device = f"anon-{name}"
    contact = ENGINE.new_contact(f"user-{name}" if known else device, f"user-{name}" if known else None)
    for event in draw(device_events(device, f"user-{name}" if known else None)):
        ENGINE.apply(contact, event)
    return contact


def same_state(a: ContactState, b: ContactState) -> bool:
    return a.to_row() == b.to_row() and a.__getstate__() == b.__getstate__()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contact_states("a"))
def test_contact_pickle_round_trip(contact: ContactState) -> None:
    """A contact survives pickling unchanged (snapshots and recovery depend on it)."""
    restored = pickle.loads(pickle.dumps(contact))
    assert restored == contact
    assert same_state(restored, contact)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contact_states("a"), contact_states("b"), contact_states("c"))
def test_merge_is_associative_and_pure(a: ContactState, b: ContactState, c: ContactState) -> None:
    """(a+b)+c == a+(b+c), so several devices of one person join in any grouping alike;
    merge leaves its inputs alone, and a += b is a.merge(b) in place."""
    snapshot = copy.deepcopy((a, b, c))
    left = a.merge(b).merge(c)
    right = a.merge(b.merge(c))
    assert same_state(left, right)
    assert (a, b, c) == snapshot, "merge mutated an input"
    assert all(same_state(x, y) for x, y in zip((a, b, c), snapshot))
    in_place = copy.deepcopy(a)
    result = in_place.__iadd__(b)
    assert result is in_place
    assert same_state(in_place, a.merge(b))
    assert same_state(b, snapshot[1])


# ================================================================== engine: purity and determinism


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(device_events("anon-d", max_size=15), st.booleans())
def test_engine_apply_is_pure_and_deterministic(events: list[Event], known: bool) -> None:
    """Engine.apply never changes the event, and the same events on two fresh contacts give
    identical triggers (ids included) and identical state."""
    def fresh() -> ContactState:
        return ENGINE.new_contact("user-d" if known else "anon-d", "user-d" if known else None)

    one, two = fresh(), fresh()
    out_one, out_two = [], []
    for event in events:
        before = copy.deepcopy(event.to_segment())
        out_one += [t.to_dict() for t in ENGINE.apply(one, event)]
        assert event.to_segment() == before
        out_two += [t.to_dict() for t in Engine(CONFIG).apply(two, event)]
    assert out_one == out_two
    assert same_state(one, two)


# ================================================================== journeys for the pipeline


def journey_stream(seed: int, people: int = 24, per_person: int = 25) -> list[Event]:
    """A mixed stream: several devices per person, shared devices, identifies, aliases, groups,
    server-side tracks, anonymous visitors, equal timestamps and verbatim duplicates; sorted by
    (time, messageId)."""
    rng = random.Random(seed)
    objs: list[dict[str, Any]] = []
    previous: list[str] = []
    for p in range(people):
        devices = [f"anon-{seed}-{p}-{d}" for d in range(rng.randint(1, 3))]
        if previous and rng.random() < 0.15:
            devices.append(previous[0])  # a shared computer: identifies re-link it to another person
        previous = devices
        user = f"user-{seed}-{p}" if rng.random() < 0.6 else None
        linked: set[str] = set()
        t = START + rng.randint(0, 2 * DAY)
        for i in range(per_person):
            r = rng.random()
            t += rng.randint(500, 120_000) if r < 0.75 else 0 if r < 0.8 else rng.randint(31 * MINUTE, DAY)
            if rng.random() < 0.2:
                t -= t % 1000  # whole seconds: ties between people
            dev = rng.choice(devices)
            kind = rng.choices(["page", "track", "identify", "alias", "screen", "group", "server"],
                               [45, 25, 10, 3, 7, 3, 7])[0]
            obj: dict[str, Any] = {"type": kind, "messageId": f"m-{seed}-{p}-{i}", "timestamp": format_ms(t),
                                   "anonymousId": dev}
            if dev in linked:
                obj["userId"] = user
            if kind == "page":
                obj["properties"] = {"path": rng.choice(PATHS)}
            elif kind in ("track", "server"):
                obj.update(type="track", event=rng.choice(TRACK_NAMES), properties={"topic": rng.choice(["security", "ai"])})
                if kind == "server":
                    if user is None:
                        continue
                    del obj["anonymousId"]
                    obj["userId"] = user
            elif kind == "identify":
                obj["traits"] = {"title": rng.choice(["CTO", "Student", "Engineer"]),
                                 "city": rng.choice(["Munich", "Berlin"]), "company_size": rng.randint(1, 400)}
                if user is not None and rng.random() < 0.8:
                    obj["userId"] = user
                    obj["traits"]["email"] = f"{user}@x.example"
                    linked.add(dev)
            elif kind == "alias":
                if user is None:
                    continue
                obj = {"type": "alias", "previousId": dev, "userId": user, "messageId": obj["messageId"],
                       "timestamp": obj["timestamp"]}
                linked.add(dev)
            elif kind == "group":
                obj["groupId"] = f"org-{p % 3}"
            if rng.random() < 0.2:
                obj.setdefault("context", {})["campaign"] = {"source": rng.choice(["google", "newsletter"])}
            objs.append(obj)
            if rng.random() < 0.03:
                objs.append(obj)  # a verbatim duplicate
    events = []
    for obj in objs:
        event = decode_line(orjson.dumps(obj))
        assert isinstance(event, Event), event
        events.append(event)
    return sorted(events, key=Event.sort_key)


STREAM = journey_stream(7, people=40, per_person=30)


def test_stream_exercises_the_engine() -> None:
    """The stream used below really merges profiles and fires rules (so the invariance tests bite)."""
    pipe = run_events(CONFIG, STREAM, shards=7)
    actions = {t.action for t in pipe.triggers}
    assert pipe.counts.get("merges", 0) >= 5 and pipe.counts.get("duplicates", 0) >= 1, pipe.counts
    assert pipe.counts.get("relinks", 0) >= 1, pipe.counts
    assert {"stage_changed", "segment_entered", "send_email"} <= actions, actions


# ================================================================== shards: snapshots


def _identity_state(s: IdentityShard) -> tuple[Any, ...]:
    return (s.shard, s.links, s.profiles, s.dedupe.__getstate__(), s.buffer.__getstate__(),
            s.changed_links, s.changed_profiles, s.removed_profiles)


def _contact_state(s: ContactShard) -> tuple[Any, ...]:
    return (s.shard, s.contacts, s.buffer.__getstate__(), s.changed)


@pytest.mark.parametrize("split", [0.3, 0.7])
def test_shard_snapshots_resume_identically(split: float) -> None:
    """Pickled IdentityShards and ContactShards restore equal, and a pipeline resumed from the
    snapshot emits exactly the triggers (ids, order) and results of the uninterrupted one."""
    cut = int(len(STREAM) * split)
    original = LocalPipeline(CONFIG, shards=5)
    original.feed(STREAM[:cut], batch=3)
    assert any(s.profiles or s.links for s in original.identity) and any(s.contacts for s in original.contact_shards)
    assert any(len(s.buffer) for s in original.identity), "the snapshot should hold buffered events"

    resumed = LocalPipeline(CONFIG, shards=5)
    resumed.identity = pickle.loads(pickle.dumps(original.identity))
    resumed.contact_shards = pickle.loads(pickle.dumps(original.contact_shards))
    resumed.max_ts = original.max_ts
    for a, b in zip(original.identity, resumed.identity):
        assert _identity_state(a) == _identity_state(b)
    for a, b in zip(original.contact_shards, resumed.contact_shards):
        assert _contact_state(a) == _contact_state(b)

    done = len(original.triggers)
    for pipe in (original, resumed):
        pipe.feed(STREAM[cut:], batch=3)
        pipe.finish()
    assert [t.to_dict() for t in original.triggers[done:]] == [t.to_dict() for t in resumed.triggers]
    assert original.contacts() == resumed.contacts()
    assert original.identities() == resumed.identities()


# ================================================================== pipeline: invariance

REFERENCE = run_events(CONFIG, STREAM, shards=1, batch=1).results()


@pytest.mark.parametrize("shards", [1, 7, 64])
@pytest.mark.parametrize("batch", [1, 50])
def test_results_independent_of_shards_and_batch(shards: int, batch: int) -> None:
    """Contacts and triggers do not depend on the shard count or on how input is batched."""
    assert run_events(CONFIG, STREAM, shards=shards, batch=batch).results() == REFERENCE


def shuffle_within_lateness(events: list[Event], rng: random.Random, lateness: int) -> list[Event]:
    """Reorder so that no event arrives after one more than `lateness` newer than itself:
    sort by event time plus a random delay of at most `lateness`."""
    keyed = sorted(events, key=lambda e: e.ts + rng.uniform(0, lateness))
    newest = -(2**62)
    for e in keyed:  # check the bound the test relies on
        assert e.ts >= newest - lateness
        newest = max(newest, e.ts)
    return keyed


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.sampled_from([1, 7, 64]), st.sampled_from([1, 50]))
def test_results_independent_of_arrival_order_within_lateness(seed: int, shards: int, batch: int) -> None:
    """Any arrival order within the allowed lateness gives the results of event-time order."""
    shuffled = shuffle_within_lateness(STREAM, random.Random(seed), LATENESS)
    assert shuffled != STREAM
    pipe = run_events(CONFIG, shuffled, shards=shards, batch=batch)
    assert pipe.counts.get("late", 0) == 0
    assert pipe.results() == REFERENCE
