"""The JSON Schemas in schemas/ agree with the code that reads and writes those records."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from engine.actions import ACTIONS, SYSTEM_ACTIONS
from engine.config import build_config, load_config
from engine.decode import JUNK_IDS, decode_line
from engine.events import EVENT_TYPES, REASONS, Event, Rejection
from engine.pipeline import run_events
from engine.timeutil import format_ms
from leadstream.generate import GenerateOptions, generate_lines
from schemas import load_schema, schema_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "marketing.toml"
NAMES = ("event", "trigger", "dead_letter")
VALIDATORS = {name: Draft202012Validator(load_schema(name), format_checker=FormatChecker()) for name in NAMES}

# Reasons whose causes the event schema expresses fully: the decoder rejecting a line
# for one of these means the schema must reject the object too.
STRUCTURAL = frozenset({"not_an_object", "unknown_type", "missing_identity", "wrong_type"})


def errors(name: str, instance: Any) -> list[str]:
    """The schema's complaints about an instance, as readable lines."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATORS[name].iter_errors(instance)]


# ------------------------------------------------------------------ the schema files themselves


def test_schema_path_and_load_schema() -> None:
    """schemas.schema_path maps a bare name to <name>.schema.json and keeps full file names."""
    assert schema_path("event") == schema_path("event.schema.json")
    assert schema_path("event").name == "event.schema.json"
    assert schema_path("warehouse.sql").name == "warehouse.sql"
    assert schema_path("event").parent == schema_path("warehouse.sql").parent
    assert load_schema("trigger")["title"] == "leadstream trigger"
    with pytest.raises(ValueError):
        schema_path("../engine/events.py")


@pytest.mark.parametrize("name", NAMES)
def test_is_a_valid_draft_2020_12_schema(name: str) -> None:
    """Each schema is itself valid under the Draft 2020-12 meta-schema."""
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def _properties(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every property a schema declares, following nested properties, $defs and per-type branches."""
    if isinstance(node, dict):
        for key, sub in node.get("properties", {}).items():
            yield f"{path}/{key}", sub
        for key, sub in node.items():
            if key != "properties" and isinstance(sub, (dict, list)):
                yield from _properties(sub, f"{path}/{key}")
        for key, sub in node.get("properties", {}).items():
            yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{path}[{i}]")


@pytest.mark.parametrize("name", NAMES)
def test_every_property_is_described(name: str) -> None:
    """The schemas document every field they declare at top level and in nested objects."""
    schema = load_schema(name)
    assert schema.get("description")
    for key, sub in schema["properties"].items():
        assert sub.get("description"), key
    # Nested objects (context.*, reason.*, $defs, per-action params) are described too;
    # the other sub-schemas of allOf branches only narrow fields described above.
    for path, sub in _properties(schema):
        if "/allOf" in path and "/params/" not in path:
            continue
        assert sub.get("description"), path


def test_dead_letter_reasons_match_the_code() -> None:
    """The dead-letter reason enum is exactly engine.events.REASONS: a new code cannot be forgotten."""
    assert load_schema("dead_letter")["properties"]["reason"]["enum"] == list(REASONS)


def test_event_schema_lists_every_rejection() -> None:
    """x-leadstream-rejections explains every reason code a line can be rejected with."""
    rejections = load_schema("event")["x-leadstream-rejections"]
    assert list(rejections) == list(REASONS)
    assert all(isinstance(text, str) and text for text in rejections.values())


def test_event_schema_types_and_placeholders_match_the_code() -> None:
    """The type enum is EVENT_TYPES and the placeholder list is the decoder's JUNK_IDS."""
    schema = load_schema("event")
    assert schema["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert set(schema["$defs"]["placeholder"]["enum"]) | {""} == set(JUNK_IDS)


def test_trigger_actions_match_the_code() -> None:
    """The trigger action enum is exactly ACTIONS plus SYSTEM_ACTIONS, and each action's params follow ACTIONS."""
    schema = load_schema("trigger")
    assert schema["properties"]["action"]["enum"] == [*ACTIONS, *SYSTEM_ACTIONS]
    per_action: dict[str, dict[str, Any]] = {}
    for branch in schema["allOf"]:
        cond = branch["if"]["properties"]["action"]
        for action in cond.get("enum", [cond.get("const")]):
            per_action[action] = branch["then"]["properties"]["params"]
    assert set(per_action) == set(ACTIONS) | set(SYSTEM_ACTIONS)
    for action, (required, optional) in ACTIONS.items():
        params = per_action[action]
        assert params["required"] == list(required), action
        assert set(params["properties"]) == set(required) | set(optional), action
        assert params["additionalProperties"] is False


# ------------------------------------------------------------------ event schema vs decode_line

T0 = "2026-01-05T08:00:00.000Z"
IDS = st.sampled_from(["anon-1", "anon-2", "user-1", "u_42", "3f2c9a1e-77aa-4d1b-9f0e-2a9c4c1d5e60", "é-ü"])
TIMESTAMPS = st.one_of(
    st.datetimes(
        min_value=datetime(2000, 1, 2),
        max_value=datetime(2099, 12, 30),
    ).map(lambda d: d.isoformat(timespec="milliseconds") + "Z"),
    st.sampled_from([T0, "2026-01-05T09:00:00+01:00", "2026-01-05T08:00:00", "2026-01-05", "2026-01-05 08:00:00.5"]),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
# Values that sit right at the decoder's edges: placeholders, blanks, padding, lengths,
# numbers where strings belong, timestamps at and beyond the range limits.
TRICKY_VALUES = [
    None, True, False, 0, -1, 0.0, 1.5, 12, [], {}, [T0], {"a": 1}, "", " ", "   ", "\t", "\u3000", "\ufeff",
    "anonymous", "Anonymous", "null", " null", "undefined", "0", "-1", "none", "[object Object]", "id",
    " anon-1", "anon-1 ", "anon\x00", "anon\n1", "x" * 256, "x" * 257, " " * 300, "track", "Track",
    "yesterday", "1970-01-01T00:00:00Z", "2999-12-31T23:59:59Z", "2100-01-01T00:00:00Z",
    "2100-01-01T00:30:00+01:00", "1999-12-31T23:59:59.999Z", "1999-12-31T23:00:00-02:00",
    "2000-01-01T00:00:00Z", " " + T0, T0 + " ", "2026-W02-1", "20260105T080000Z", T0[:-1] + "0" * 60 + "Z",
    1_767_600_000, "2026-13-01T00:00:00Z",
]
TRICKY = st.sampled_from(TRICKY_VALUES)
KEYS = ("type", "anonymousId", "userId", "previousId", "groupId", "event", "name", "properties", "traits",
        "context", "messageId", "timestamp", "originalTimestamp", "sentAt", "receivedAt")
CONTEXT_KEYS = ("campaign", "consent", "page", "traits")


@st.composite
def segment_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Segment call of a random type, then zero to three small mutations that may break it."""
    etype = draw(st.sampled_from(EVENT_TYPES))
    out: dict[str, Any] = {"type": etype, "timestamp": draw(TIMESTAMPS)}
    if draw(st.booleans()):
        out["messageId"] = draw(st.text(min_size=1, max_size=12))
    if etype == "alias":
        out["previousId"], out["userId"] = draw(IDS), draw(IDS)
    else:
        who = draw(st.sampled_from(["anonymousId", "userId", "both"]))
        if who in ("anonymousId", "both"):
            out["anonymousId"] = draw(IDS)
        if who in ("userId", "both"):
            out["userId"] = draw(IDS)
    if etype == "track":
        out["event"] = draw(st.sampled_from(["Form Submitted", "Order Completed", "x"]))
    if etype in ("page", "screen") and draw(st.booleans()):
        out["name"] = draw(st.sampled_from(["Pricing", "Home"]))
    if etype == "group":
        out["groupId"] = draw(st.one_of(IDS, st.integers(1, 10**6)))
    for key in ("properties", "traits"):
        if draw(st.booleans()):
            out[key] = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3))
    if draw(st.booleans()):
        out["context"] = draw(st.dictionaries(st.sampled_from(CONTEXT_KEYS), JSON_VALUES, max_size=4))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "set", "set", "context"]))
        key = draw(st.sampled_from(KEYS))
        if action == "drop":
            out.pop(key, None)
        elif action == "set":
            out[key] = draw(st.one_of(TRICKY, JSON_VALUES, st.sampled_from(EVENT_TYPES), IDS))
        else:
            ctx = out.get("context")
            if isinstance(ctx, dict):
                ctx[draw(st.sampled_from(CONTEXT_KEYS))] = draw(st.one_of(TRICKY, JSON_VALUES))
    return out


def _agree(obj: Any) -> None:
    """decode_line accepts => the schema accepts; the schema rejects => decode_line rejects.

    And in the other direction, for the reasons the schema fully expresses: a rejection
    for a structural reason means the schema rejects too (the schema is not vacuous).
    """
    out = decode_line(orjson.dumps(obj))
    problems = errors("event", obj)
    if isinstance(out, Event):
        assert not problems, (obj, problems)
    elif out.reason in STRUCTURAL or (out.reason == "bad_timestamp" and "ISO-8601 string" in out.detail) or (
        out.reason == "bad_timestamp" and "missing" in out.detail
    ):
        assert problems, (obj, out)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segment_objects())
def test_event_schema_agrees_with_decode_on_segment_calls(obj: dict[str, Any]) -> None:
    """Differential: valid and subtly broken Segment calls are judged alike by the schema and the decoder."""
    _agree(obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    JSON_VALUES,
    st.dictionaries(st.sampled_from(KEYS), st.one_of(TRICKY, JSON_VALUES, st.sampled_from(EVENT_TYPES), IDS)),
))
def test_event_schema_agrees_with_decode_on_arbitrary_json(obj: Any) -> None:
    """Differential on arbitrary JSON values and objects with Segment keys holding anything."""
    _agree(obj)


def test_event_schema_agrees_on_edge_values() -> None:
    """Every tricky value in every key of every type, exhaustively (the edges hypothesis may miss)."""
    base = {
        "identify": {"type": "identify", "userId": "user-1", "timestamp": T0},
        "track": {"type": "track", "anonymousId": "anon-1", "event": "x", "timestamp": T0},
        "page": {"type": "page", "anonymousId": "anon-1", "timestamp": T0},
        "screen": {"type": "screen", "userId": "user-1", "timestamp": T0},
        "alias": {"type": "alias", "previousId": "anon-1", "userId": "user-1", "timestamp": T0},
        "group": {"type": "group", "userId": "user-1", "groupId": "g", "timestamp": T0},
    }
    for etype, good in base.items():
        _agree(good)
        assert isinstance(decode_line(orjson.dumps(good)), Event)
        for key in KEYS:
            for value in TRICKY_VALUES:
                _agree({**good, key: value})
                if key == "timestamp":
                    _agree({**good, "timestamp": None, "originalTimestamp": value})
                    _agree({**good, "timestamp": None, "receivedAt": value})
                    _agree({**good, "timestamp": None, "originalTimestamp": value, "sentAt": T0, "receivedAt": T0})
                    _agree({**good, "timestamp": None, "originalTimestamp": T0, "sentAt": value, "receivedAt": T0})


def test_event_schema_agrees_on_generated_stream() -> None:
    """The synthetic clickstream (with its malformed lines) gets the same verdicts from both."""
    opts = GenerateOptions(events=1500, contacts=60, seed=3, malformed_share=0.05, duplicate_share=0.01)
    accepted = 0
    for raw in generate_lines(opts):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            assert isinstance(decode_line(raw), Rejection)
            continue
        out = decode_line(raw)
        if isinstance(out, Event):
            accepted += 1
            assert not errors("event", obj), obj
        _agree(obj)
    assert accepted > 1000


# ------------------------------------------------------------------ trigger schema vs the engine

START_MS = 1_767_600_000_000  # 2026-01-05T08:00:00Z


def _event(minutes: float, **fields: Any) -> Event:
    obj = {"messageId": f"j-{minutes}-{fields.get('type')}-{fields.get('event', '')}",
           "timestamp": format_ms(START_MS + int(minutes * 60_000)), **fields}
    out = decode_line(orjson.dumps(obj))
    assert isinstance(out, Event), out
    return out


def journey() -> list[Event]:
    """One lead's path through the example rules: anonymous visits, a form, identify, a second device, orders."""
    day = 24 * 60
    evs = [
        _event(0, type="page", anonymousId="anon-j1", properties={"path": "/pricing"},
               context={"campaign": {"source": "newsletter", "medium": "email", "name": "jan"}}),
        _event(1, type="page", anonymousId="anon-j1", properties={"path": "/pricing/enterprise"}),
        _event(2, type="page", anonymousId="anon-j1", properties={"path": "/pricing"}),
        _event(3, type="page", anonymousId="anon-j1", properties={"path": "/blog/ai-lead-scoring"}),
        _event(5, type="track", anonymousId="anon-j1", event="Form Submitted", properties={"topic": "security"}),
        _event(6, type="identify", anonymousId="anon-j1", userId="user-j1",
               traits={"email": "jo@acme.example", "title": "VP Marketing", "city": "Munich",
                       "company_size": 200, "industry": "software", "country": "DE"}),
        _event(7, type="group", userId="user-j1", groupId="acme", traits={"name": "Acme"}),
        _event(60, type="page", anonymousId="anon-j2", properties={"path": "/product/scoring"}),
        _event(61, type="alias", previousId="anon-j2", userId="user-j1"),
        _event(62, type="screen", anonymousId="anon-j2", name="Dashboard"),
        _event(2 * day, type="track", userId="user-j1", event="Webinar Registered"),
        _event(3 * day, type="track", userId="user-j1", event="Webinar Attended"),
        _event(3 * day + 5, type="track", userId="user-j1", event="Email Link Clicked"),
    ]
    evs += [_event(4 * day + i, type="track", userId="user-j1", event="Order Completed") for i in range(6)]
    # A week later the pricing window has emptied: one more view leaves pricing_interest.
    evs.append(_event(12 * day, type="page", userId="user-j1", properties={"path": "/pricing"}))
    # A student who never identifies.
    evs.append(_event(30, type="identify", anonymousId="anon-s", traits={"title": "Student"}))
    return evs


def _check_triggers(triggers: list[dict[str, Any]]) -> set[str]:
    for record in triggers:
        assert not errors("trigger", record), (record, errors("trigger", record))
    return {t["action"] for t in triggers}


def test_example_journey_triggers_match_the_schema() -> None:
    """Every trigger the example rules produce on a realistic journey is a valid trigger record."""
    cfg = load_config(EXAMPLE)
    triggers = run_events(cfg, journey(), shards=4).results()["triggers"]
    seen = _check_triggers(triggers)
    # The journey is meant to exercise every kind of trigger the example config can emit.
    assert {"stage_changed", "segment_entered", "segment_exited", "send_email", "notify_sales",
            "assign_owner"} <= seen, seen


def _minimal_params(action: str) -> dict[str, Any]:
    required, _ = ACTIONS[action]
    sample = {"a string": "x-1", "a number": 2, "a string, number or boolean": "gold", "a table": {"k": 1}}
    params = {key: sample[kind] for key, kind in required.items()}
    if action == "webhook":
        params["url"] = "https://hooks.example.com/lead"
    return params


def test_every_action_trigger_matches_the_schema() -> None:
    """A rule using every configured action (with and without optional params) yields valid triggers."""
    actions = [{"action": a, "params": _minimal_params(a)} for a in ACTIONS]
    full = []
    for a, (required, optional) in ACTIONS.items():
        params = _minimal_params(a)
        for key, kind in optional.items():
            params[key] = {"a string": "opt", "a number": 1.5, "a table": {"x": [1, 2]}}.get(kind, True)
            if a == "adjust_score" and key == "profile":
                params[key] = "default"
        full.append({"action": a, "params": params})
    doc = {
        "completion_actions": {
            "everything": {"all": [{"field": "event.name", "op": "eq", "value": "Everything"}], "actions": actions},
            "everything_full": {"all": [{"field": "event.name", "op": "eq", "value": "Everything"}], "actions": full},
        }
    }
    cfg = build_config(doc, "all-actions.toml")
    events = [_event(0, type="identify", userId="user-a", traits={"email": "a@x.example"}),
              _event(1, type="track", userId="user-a", event="Everything")]
    triggers = run_events(cfg, events, shards=1).results()["triggers"]
    seen = _check_triggers(triggers)
    assert set(ACTIONS) <= seen


def test_trigger_schema_rejects_broken_records() -> None:
    """The trigger schema is not vacuous: bad ids, unknown actions, extra keys and bad params fail."""
    cfg = load_config(EXAMPLE)
    good = run_events(cfg, journey()[:6], shards=1).results()["triggers"][0]
    assert not errors("trigger", good)
    broken = [
        {**good, "trigger_id": "XYZ"},
        {**good, "action": "send_fax"},
        {**good, "extra": 1},
        {**good, "event_time": 1767600000000},
        {**good, "user_id": 5},
        {k: v for k, v in good.items() if k != "reason"},
        {**good, "action": "send_email", "params": {}},
        {**good, "action": "send_email", "params": {"template": "t", "tempate": "typo"}},
        {**good, "action": "webhook", "params": {"url": "ftp://x"}},
    ]
    for record in broken:
        assert errors("trigger", record), record


# ------------------------------------------------------------------ dead-letter schema vs Rejection


def test_every_reason_makes_a_valid_dead_letter() -> None:
    """A Rejection of every reason code is a valid dead-letter record; an unknown code is not."""
    for reason in REASONS:
        assert not errors("dead_letter", Rejection(reason, "detail", "raw", "f:1").to_dict())
    assert errors("dead_letter", Rejection("made_up", "d", "r").to_dict())
    assert errors("dead_letter", {**Rejection("too_large", "d", "r").to_dict(), "extra": 1})


def test_generated_rejections_match_the_dead_letter_schema() -> None:
    """The rejections of the synthetic stream's malformed lines are valid dead letters."""
    opts = GenerateOptions(events=600, contacts=20, seed=5, malformed_share=0.2)
    reasons = set()
    for n, raw in enumerate(generate_lines(opts)):
        out = decode_line(raw, source=f"gen.jsonl:{n + 1}")
        if isinstance(out, Rejection):
            reasons.add(out.reason)
            assert not errors("dead_letter", out.to_dict()), out
    assert len(reasons) >= 6


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=100), st.one_of(JSON_VALUES, segment_objects()).map(orjson.dumps)))
def test_any_rejection_matches_the_dead_letter_schema(raw: bytes) -> None:
    """Whatever the line, a Rejection decode_line returns is a valid dead-letter record."""
    out = decode_line(raw, source="x")
    if isinstance(out, Rejection):
        assert not errors("dead_letter", out.to_dict()), out
