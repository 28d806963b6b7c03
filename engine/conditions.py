"""Conditions are data: validation and compilation of ``{all|any|not|count|field}`` trees.

A condition node is one of
- ``{field, op, value, ignore_case?}``: a leaf test on an event or contact field;
- ``{all = [...]}`` / ``{any = [...]}``: every / at least one child holds;
- ``{not = {...}}``: the child does not hold;
- ``{count = {...}, within = "7d", op, value}``: how many events matching the inner
  (event-only) condition the contact had in the trailing window.

Every node goes through one dispatcher, ``_compile``, which returns a plain closure
``fn(contact, event, now) -> bool``. The SQL compiler (warehouse) walks the same
data with its own dispatcher, so the two backends can be checked against each other.

Missing values follow SQL's NULL: a missing or null field fails every test, ``ne``
included, except ``exists = false``. Types never coerce: ``"3"`` is not ``3``, and
``true`` is not ``1``.
"""

from __future__ import annotations

import operator
import re
from bisect import bisect_right
from operator import attrgetter
from dataclasses import dataclass, field, replace
from hashlib import blake2b
from typing import Any, Callable, Final

import orjson

from .contact import ContactState
from .errors import Problems, did_you_mean
from .events import EVENT_TYPES, Event


OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "starts_with", "ends_with", "exists", "matches")
COUNT_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
_CASE_OPS = frozenset({"eq", "ne", "in", "not_in", "contains", "starts_with", "ends_with", "matches"})

# Contact-state fields: root -> (needs a sub-path, description for error messages).
STATE_FIELDS = {
    "traits": (True, "traits.<name>[.<nested>]"),
    "score": (True, "score.<profile>"),
    "counts": (True, "counts.<event name or $type>"),
    "first_campaign": (True, "first_campaign.<source|medium|name|term|content>"),
    "email": (False, "email"),
    "user_id": (False, "user_id"),
    "contact_id": (False, "contact_id"),
    "known": (False, "known"),
    "grade": (False, "grade"),
    "fit": (False, "fit"),
    "stage": (False, "stage"),
    "segments": (False, "segments"),
    "lists": (False, "lists"),
    "visits": (False, "visits"),
}
EVENT_FIELDS = {
    "type": "event.type",
    "name": "event.name",
    "message_id": "event.message_id",
    "user_id": "event.user_id",
    "anonymous_id": "event.anonymous_id",
    "group_id": "event.group_id",
    "starts_visit": "event.starts_visit",
    "properties": "event.properties.<path>",
    "context": "event.context.<path>",
    "traits": "event.traits.<path>",
}
CAMPAIGN_KEYS = ("source", "medium", "name", "term", "content")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# Typed, not Any: compiled, a leaf then reads the contact's and the event's fields
# directly instead of through getattr (a few per condition, several conditions per event).
Fn = Callable[[ContactState, "Event | None", int], bool]
Getter = Callable[[ContactState, "Event | None", int], Any]


@dataclass(frozen=True)
class WindowSpec:
    """A trailing-window event counter that contacts keep timestamps for."""

    id: str
    within_ms: int
    matches: Fn  # an event-only condition: fn(None, event, now)
    node: Any = field(compare=False, repr=False)
    # The counts n at which some condition on this window reads differently at n and at
    # n - 1. As events leave the window the count falls one expiry at a time, and only an
    # expiry that falls past an edge can change a segment, rule or workflow: the engine
    # wakes the contact for those alone (see Engine._schedule_windows).
    edges: frozenset[int] = frozenset()


@dataclass
class Compiled:
    """A compiled condition: the closure plus what it reads, for dirty tracking."""

    fn: Fn
    node: Any
    deps: frozenset[str]
    uses_event: bool
    leaves: tuple[str, ...]  # field names, in order, for the trigger's `reason`
    parts: tuple[Compiled, ...] = ()  # the children of an all/any group


@dataclass
class CompileContext:
    """What a condition may refer to, and where mistakes are recorded."""

    problems: Problems
    profiles: frozenset[str] = frozenset()
    stages: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()  # segments a condition here may reference
    allow_event: bool = True
    allow_state: bool = True
    windows: dict[str, WindowSpec] = field(default_factory=dict)


def is_number(x: Any) -> bool:
    """True for ints and floats, never for bools (JSON keeps them apart, so do we)."""
    return (type(x) is int or type(x) is float) or (isinstance(x, (int, float)) and not isinstance(x, bool))


def dig(value: Any, keys: tuple[str, ...]) -> Any:
    """Follow nested object keys; MISSING when any step is absent, null or not an object."""
    for key in keys:
        if type(value) is not dict:
            return MISSING
        value = value.get(key, MISSING)
        if value is MISSING:
            return MISSING
    return MISSING if value is None else value


# ---------------------------------------------------------------- field getters


def _loose(values: dict[str, Any]) -> dict[str, Any]:
    # The engine only stores numbers in scores and counts, but a condition must stay total
    # on whatever a state holds: read as Any, a compiled lookup does not insist on a float.
    return values


def _state_getter(root: str, rest: str) -> tuple[Getter, str]:
    """Return (getter, dependency key) for a contact-state field."""
    if root == "traits":
        keys = tuple(rest.split("."))
        return (lambda c, e, now: dig(c.traits, keys)), "traits"
    if root == "score":
        return (lambda c, e, now: _loose(c.scores).get(rest, 0.0)), f"score.{rest}"
    if root == "counts":
        return (lambda c, e, now: _loose(c.counts).get(rest, 0)), f"counts.{rest}"
    if root == "first_campaign":
        return (lambda c, e, now: dig(c.first_campaign, (rest,))), "first_campaign"
    simple: dict[str, Getter] = {
        "email": lambda c, e, now: c.email if c.email is not None else MISSING,
        "user_id": lambda c, e, now: c.user_id if c.user_id is not None else MISSING,
        "contact_id": lambda c, e, now: c.contact_id,
        "known": lambda c, e, now: c.user_id is not None,
        "grade": lambda c, e, now: c.grade if c.grade is not None else MISSING,
        "fit": lambda c, e, now: c.fit,
        "stage": lambda c, e, now: c.stage if c.stage is not None else MISSING,
        "segments": lambda c, e, now: c.segments,
        "lists": lambda c, e, now: c.lists,
        "visits": lambda c, e, now: c.visits,
    }
    dep = {"email": "traits", "user_id": "identity", "contact_id": "identity", "known": "identity", "fit": "grade"}
    return simple[root], dep.get(root, root)


def _event_getter(name: str, rest: str) -> Getter:
    """Return a getter for an event field; every getter yields MISSING without an event."""
    if name in ("properties", "context", "traits"):
        keys = tuple(rest.split("."))
        return lambda c, e, now: MISSING if e is None else dig(getattr(e, name), keys)
    if name == "starts_visit":
        # The engine records which event opened the contact's current visit.
        return lambda c, e, now: MISSING if e is None else c.visit_start == e.message_id
    return lambda c, e, now: MISSING if e is None else _none_missing(getattr(e, name))


def _none_missing(value: Any) -> Any:
    return MISSING if value is None else value


def _resolve_field(text: Any, path: str, ctx: CompileContext) -> tuple[Callable | None, str | None, bool]:
    """Validate a field name; return (getter, dep key, reads_event) or Nones after recording why."""
    p = ctx.problems
    if not isinstance(text, str) or not text:
        p.add(path, f"expected a field name string such as 'event.name' or 'traits.city', got {text!r}")
        return None, None, False
    root, _, rest = text.partition(".")
    if root == "event":
        if not ctx.allow_event:
            p.add(path, f"field {text!r} reads the event, but this condition is evaluated on contact state "
                        "(event fields belong in scoring rules, completion actions and count windows)")
            return None, None, False
        name, _, sub = rest.partition(".")
        if name not in EVENT_FIELDS:
            p.add(path, f"unknown event field {text!r} (expected one of {', '.join(EVENT_FIELDS.values())})")
            return None, None, False
        needs_sub = name in ("properties", "context", "traits")
        if needs_sub != bool(sub) or (sub and "" in sub.split(".")):
            p.add(path, f"field {text!r}: expected {EVENT_FIELDS[name]}")
            return None, None, False
        return _event_getter(name, sub), "event", True
    if root not in STATE_FIELDS:
        known = ", ".join(["event.*"] + [d for _, d in STATE_FIELDS.values()])
        p.add(path, f"unknown field {text!r} (expected one of {known})")
        return None, None, False
    if not ctx.allow_state:
        p.add(path, f"field {text!r} reads contact state, but only event.* fields are allowed here")
        return None, None, False
    needs_sub, desc = STATE_FIELDS[root]
    if needs_sub != bool(rest) or (rest and root == "traits" and "" in rest.split(".")):
        p.add(path, f"field {text!r}: expected {desc}")
        return None, None, False
    if root == "score" and rest not in ctx.profiles:
        p.add(path, f"unknown scoring profile {rest!r} (expected one of {', '.join(sorted(ctx.profiles)) or 'none defined'})")
        return None, None, False
    if root == "first_campaign" and rest not in CAMPAIGN_KEYS:
        p.add(path, f"field {text!r}: expected first_campaign.<{'|'.join(CAMPAIGN_KEYS)}>")
        return None, None, False
    getter, dep = _state_getter(root, rest)
    return getter, dep, False


# ---------------------------------------------------------------- leaf tests


def _eq_test(expected: Any, ignore_case: bool) -> Callable[[Any], bool]:
    if isinstance(expected, bool):
        return lambda a: a is expected
    if is_number(expected):
        return lambda a: is_number(a) and a == expected
    if ignore_case:
        folded = expected.lower()
        return lambda a: isinstance(a, str) and a.lower() == folded
    return lambda a: isinstance(a, str) and a == expected


def _order_test(op: str, expected: Any) -> Callable[[Any], bool]:
    kind = is_number if is_number(expected) else (lambda a: isinstance(a, str))
    if op == "lt":
        return lambda a: kind(a) and a < expected
    if op == "le":
        return lambda a: kind(a) and a <= expected
    if op == "gt":
        return lambda a: kind(a) and a > expected
    return lambda a: kind(a) and a >= expected


def _contains_test(expected: Any, ignore_case: bool) -> Callable[[Any], bool]:
    element = _eq_test(expected, ignore_case)
    if isinstance(expected, str):
        needle = expected.lower() if ignore_case else expected

        def test(a: Any) -> bool:
            if isinstance(a, str):
                return needle in (a.lower() if ignore_case else a)
            if isinstance(a, (dict, set, frozenset)) and not ignore_case:
                return expected in a
            if isinstance(a, (list, tuple, dict, set, frozenset)):
                return any(element(x) for x in a)
            return False

        return test
    return lambda a: isinstance(a, (list, tuple, set, frozenset)) and any(element(x) for x in a)


def _string_test(op: str, expected: str, ignore_case: bool) -> Callable[[Any], bool]:
    if ignore_case:
        folded = expected.lower()
        if op == "starts_with":
            return lambda a: isinstance(a, str) and a.lower().startswith(folded)
        return lambda a: isinstance(a, str) and a.lower().endswith(folded)
    if op == "starts_with":
        return lambda a: isinstance(a, str) and a.startswith(expected)
    return lambda a: isinstance(a, str) and a.endswith(expected)


def _scalar_ok(value: Any) -> bool:
    return isinstance(value, (str, bool)) or is_number(value)


def _leaf_test(op: str, value: Any, ignore_case: bool, path: str, p: Problems) -> Callable[[Any], bool] | None:
    """Validate op/value and build the test on the field's value (never MISSING here)."""
    if op in ("eq", "ne"):
        if not _scalar_ok(value):
            p.add(f"{path}.value", f"{op} expects a string, number or boolean, got {_show(value)}")
            return None
        eq = _eq_test(value, ignore_case)
        return eq if op == "eq" else (lambda a: not eq(a))
    if op in ("lt", "le", "gt", "ge"):
        if not (is_number(value) or isinstance(value, str)):
            p.add(f"{path}.value", f"{op} expects a number or string, got {_show(value)}")
            return None
        return _order_test(op, value)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or not all(_scalar_ok(v) for v in value):
            p.add(f"{path}.value", f"{op} expects a non-empty list of strings, numbers or booleans, got {_show(value)}")
            return None
        tests = [_eq_test(v, ignore_case) for v in value]
        if all(isinstance(v, str) for v in value) and not ignore_case:
            options = frozenset(value)
            hit: Callable[[Any], bool] = lambda a: isinstance(a, str) and a in options
        else:
            hit = lambda a: any(t(a) for t in tests)
        return hit if op == "in" else (lambda a: not hit(a))
    if op == "contains":
        if not _scalar_ok(value):
            p.add(f"{path}.value", f"contains expects a string, number or boolean, got {_show(value)}")
            return None
        return _contains_test(value, ignore_case)
    if op in ("starts_with", "ends_with"):
        if not isinstance(value, str):
            p.add(f"{path}.value", f"{op} expects a string, got {_show(value)}")
            return None
        return _string_test(op, value, ignore_case)
    if op == "matches":
        if not isinstance(value, str):
            p.add(f"{path}.value", f"matches expects a regular expression string, got {_show(value)}")
            return None
        try:
            rx = re.compile(value, re.IGNORECASE if ignore_case else 0)
        except re.error as ex:
            p.add(f"{path}.value", f"invalid regular expression {value!r}: {ex}")
            return None
        return lambda a: isinstance(a, str) and rx.search(a) is not None
    raise AssertionError(op)


def _show(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


# ---------------------------------------------------------------- the dispatcher

_NODE_KEYS = {
    "field": {"field", "op", "value", "ignore_case"},
    "all": {"all"},
    "any": {"any"},
    "not": {"not"},
    "count": {"count", "within", "op", "value"},
}


def node_kind(node: dict[str, Any]) -> str | None:
    """Return which kind of condition node this is, or None when it is none of them."""
    for kind in ("all", "any", "not", "count", "field"):
        if kind in node:
            return kind
    return None


def _compile(node: Any, path: str, ctx: CompileContext) -> Compiled | None:
    """Compile one condition node; record problems and return None when it is invalid."""
    p = ctx.problems
    if not isinstance(node, dict):
        p.add(path, f"expected a condition table ({{field, op, value}}, {{all = [...]}}, {{any = [...]}}, "
                    f"{{not = ...}} or {{count = ..., within, op, value}}), got {_show(node)}")
        return None
    kind = node_kind(node)
    if kind is None:
        p.add(path, f"expected one of the keys field, all, any, not, count; got {', '.join(sorted(node)) or 'an empty table'}")
        return None
    extra = sorted(set(node) - _NODE_KEYS[kind])
    for key in extra:
        p.add(f"{path}.{key}", f"unknown key {key!r}{did_you_mean(key, _NODE_KEYS[kind])} in a {kind!r} condition "
                  f"(expected {', '.join(sorted(_NODE_KEYS[kind]))})")
    if kind in ("all", "any"):
        return _compile_group(kind, node[kind], f"{path}.{kind}", node, ctx)
    if kind == "not":
        inner = _compile(node["not"], f"{path}.not", ctx)
        if inner is None:
            return None
        f = inner.fn
        return Compiled(lambda c, e, now: not f(c, e, now), node, inner.deps, inner.uses_event, inner.leaves)
    if kind == "count":
        return _compile_count(node, path, ctx)
    return _compile_leaf(node, path, ctx)


def _compile_group(kind: str, items: Any, path: str, node: Any, ctx: CompileContext) -> Compiled | None:
    if not isinstance(items, list) or not items:
        ctx.problems.add(path, f"expected a non-empty list of conditions, got {_show(items)}")
        return None
    parts = [_compile(item, f"{path}[{i}]", ctx) for i, item in enumerate(items)]
    if any(part is None for part in parts):
        return None
    fns = tuple(part.fn for part in parts)  # type: ignore[union-attr]
    deps = frozenset().union(*(part.deps for part in parts))  # type: ignore[union-attr]
    uses_event = any(part.uses_event for part in parts)  # type: ignore[union-attr]
    leaves = tuple(leaf for part in parts for leaf in part.leaves)  # type: ignore[union-attr]
    return Compiled(combine(kind, fns), node, deps, uses_event, leaves, tuple(parts))  # type: ignore[arg-type]


def combine(kind: str, fns: tuple[Fn, ...]) -> Fn:
    """Join compiled children with and/or; small arities get flat closures (the hot path)."""
    if not fns:
        return lambda c, e, now: kind == "all"
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        f1, f2 = fns
        if kind == "all":
            return lambda c, e, now: f1(c, e, now) and f2(c, e, now)
        return lambda c, e, now: f1(c, e, now) or f2(c, e, now)
    if len(fns) == 3:
        f1, f2, f3 = fns
        if kind == "all":
            return lambda c, e, now: f1(c, e, now) and f2(c, e, now) and f3(c, e, now)
        return lambda c, e, now: f1(c, e, now) or f2(c, e, now) or f3(c, e, now)
    if kind == "all":
        def all_of(c: Any, e: Any, now: int) -> bool:
            for f in fns:
                if not f(c, e, now):
                    return False
            return True
        return all_of

    def any_of(c: Any, e: Any, now: int) -> bool:
        for f in fns:
            if f(c, e, now):
                return True
        return False
    return any_of


def _compile_leaf(node: dict[str, Any], path: str, ctx: CompileContext) -> Compiled | None:
    p = ctx.problems
    getter, dep, uses_event = _resolve_field(node.get("field"), f"{path}.field", ctx)
    op = node.get("op")
    if op not in OPS:
        p.add(f"{path}.op", f"unknown operator {op!r} (expected one of {', '.join(OPS)})")
        return None
    ignore_case = node.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        p.add(f"{path}.ignore_case", f"expected true or false, got {_show(ignore_case)}")
        return None
    if ignore_case and op not in _CASE_OPS:
        p.add(f"{path}.ignore_case", f"ignore_case does not apply to {op!r}")
    if op == "exists":
        want = node.get("value", True)
        if not isinstance(want, bool):
            p.add(f"{path}.value", f"exists expects true or false, got {_show(want)}")
            return None
        if getter is None or dep is None:
            return None
        g = getter
        fn: Fn = (lambda c, e, now: g(c, e, now) is not MISSING) if want else (lambda c, e, now: g(c, e, now) is MISSING)
        return Compiled(fn, node, frozenset({dep}), uses_event, (node["field"],))
    if "value" not in node:
        p.add(path, f"missing key 'value' (operator {op!r} compares against a value)")
        return None
    test = _leaf_test(op, node["value"], ignore_case, path, p)
    _check_reference(node, path, ctx)
    if getter is None or dep is None or test is None:
        return None
    fn = _fast_leaf(node) or _flat_leaf(node, test) or _generic_leaf(getter, test)
    return Compiled(fn, node, frozenset({dep}), uses_event, (node["field"],))


_EVENT_ATTRS = ("type", "name", "message_id", "user_id", "anonymous_id", "group_id")


def _fast_leaf(node: dict[str, Any]) -> Fn | None:
    """Flat closures for the tests that run on every event: string equality on an event field.

    A string only ever equals a string, so no MISSING or type check is needed.
    """
    value = node.get("value")
    field_name = node["field"]
    if node.get("op") == "eq" and isinstance(value, bool):
        if field_name == "known":
            return lambda c, e, now: (c.user_id is not None) is value
        if field_name == "event.starts_visit":
            return lambda c, e, now: e is not None and (c.visit_start == e.message_id) is value
        return None
    if node.get("op") != "eq" or not isinstance(value, str) or node.get("ignore_case"):
        return None
    if field_name == "event.type":  # the most common two, read directly
        return lambda c, e, now: e is not None and e.type == value
    if field_name == "event.name":
        return lambda c, e, now: e is not None and e.name == value
    if field_name.startswith("event.") and field_name[6:] in _EVENT_ATTRS:
        get = attrgetter(field_name[6:])
        return lambda c, e, now: e is not None and get(e) == value
    return None


_ORDER = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq}


def _flat_leaf(node: dict[str, Any], test: Callable[[Any], bool]) -> Fn | None:
    """One closure instead of getter, MISSING check and test for the leaves conditions use most.

    - scores and counts against a number (never missing: an absent one is zero);
    - stage against a string;
    - a single-key ``traits.<name>`` or ``event.properties|context|traits.<name>``:
      the lookup is inlined (a null or absent value is MISSING, as in ``dig``) and
      only the test stays a call.
    Everything else goes through ``_generic_leaf``, with the same results.
    """
    field_name: str = node["field"]
    op: Any = node.get("op")
    value: Any = node.get("value")
    root, _, rest = field_name.partition(".")
    if op in _ORDER and is_number(value):
        cmp = _ORDER[op]
        # The engine only ever stores numbers here; the type check keeps the test total
        # on any value (ints and floats, never bools, as in is_number).
        if root == "score":
            def score(c: ContactState, e: Event | None, now: int) -> bool:
                v = _loose(c.scores).get(rest, 0.0)
                return (type(v) is float or type(v) is int) and cmp(v, value)

            return score
        if root == "counts":
            def count(c: ContactState, e: Event | None, now: int) -> bool:
                v = _loose(c.counts).get(rest, 0)
                return (type(v) is int or type(v) is float) and cmp(v, value)

            return count
    if field_name == "stage" and op in ("eq", "ne") and isinstance(value, str) and not node.get("ignore_case"):
        if op == "eq":
            return lambda c, e, now: c.stage == value
        return lambda c, e, now: c.stage is not None and c.stage != value
    if root == "traits" and rest and "." not in rest:
        def trait(c: ContactState, e: Event | None, now: int) -> bool:
            v = c.traits.get(rest)
            return v is not None and test(v)

        return trait
    if root == "event":
        sub, _, key = rest.partition(".")
        if sub in ("properties", "context", "traits") and key and "." not in key:
            which = ("properties", "context", "traits").index(sub)

            def event_field(c: ContactState, e: Event | None, now: int) -> bool:
                if e is None:
                    return False
                # Read directly rather than by attrgetter: a slot read, compiled.
                obj: Any = e.properties if which == 0 else (e.context if which == 1 else e.traits)
                v = obj.get(key) if type(obj) is dict else None
                return v is not None and test(v)

            return event_field
        if sub == "type" and op == "in" and isinstance(value, list) and all(isinstance(v, str) for v in value) \
                and not node.get("ignore_case"):
            options = frozenset(value)
            return lambda c, e, now: e is not None and e.type in options
    return None


def _generic_leaf(g: Getter, t: Callable[[Any], bool]) -> Fn:
    def fn(c: ContactState, e: Event | None, now: int) -> bool:
        actual = g(c, e, now)
        return actual is not MISSING and t(actual)

    return fn


# Fields whose values the engine sets, so their type is known: a test against a value of
# another type never matches (types never coerce), which is a typo, not a rule.
_NUMBER_FIELDS: Final = ("fit", "visits")
_NUMBER_PREFIXES: Final = ("score.", "counts.")
_BOOL_FIELDS: Final = ("known", "event.starts_visit")
# Text the engine makes sure of (ids, names, stages); traits and the e-mail address are
# whatever the tracker sent.
_TEXT_FIELDS: Final = ("user_id", "contact_id", "stage", "grade", "event.type", "event.name",
                       "event.message_id", "event.user_id", "event.anonymous_id", "event.group_id")
_KIND_TYPES: Final = {"a number": (int, float), "true or false": (bool,), "text": (str,)}
_VALUE_OPS: Final = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "in", "not_in"})
_TEXT_OPS: Final = frozenset({"contains", "starts_with", "ends_with", "matches"})


def _field_kind(field_name: Any) -> str | None:
    if not isinstance(field_name, str):
        return None
    if field_name in _NUMBER_FIELDS or field_name.startswith(_NUMBER_PREFIXES):
        return "a number"
    if field_name in _BOOL_FIELDS:
        return "true or false"
    if field_name in _TEXT_FIELDS:
        return "text"
    return None


def _check_types(node: dict[str, Any], path: str, ctx: CompileContext) -> None:
    """Refuse a test that can never match a field whose type the engine fixes (`score.default gt "150"`)."""
    field_name, value, op = node.get("field"), node.get("value"), node.get("op")
    kind = _field_kind(field_name)
    if kind is None:
        return
    if op in _TEXT_OPS and kind != "text":
        ctx.problems.add(f"{path}.op", f"{field_name} is {kind}, and {op!r} tests text: it would never match")
        return
    if op not in _VALUE_OPS:
        return
    if kind == "true or false" and op not in ("eq", "ne", "in", "not_in"):
        ctx.problems.add(f"{path}.op", f"{field_name} is true or false: compare it with eq or ne")
        return
    types = _KIND_TYPES[kind]
    for v in value if isinstance(value, list) else [value]:
        if not isinstance(v, types) or (kind == "a number" and isinstance(v, bool)):
            hint = f" (write {v})" if kind == "a number" and isinstance(v, str) and _is_number(v) else (
                f" (write {v.lower()})" if kind == "true or false" and isinstance(v, str) and v.lower() in ("true", "false")
                else "")
            ctx.problems.add(f"{path}.value", f"{field_name} is {kind}, and {_show(v)} is not: the test would never "
                                              f"match, as types never coerce{hint}")
        elif field_name == "event.type" and _folded(v, node) not in EVENT_TYPES:
            ctx.problems.add(f"{path}.value", f"unknown event type {v!r} (expected one of {', '.join(EVENT_TYPES)})")


def _folded(value: Any, node: dict[str, Any]) -> Any:
    """A test's value as it compares: lower case under ignore_case (the names it is checked against are)."""
    return value.lower() if node.get("ignore_case") is True and isinstance(value, str) else value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_reference(node: dict[str, Any], path: str, ctx: CompileContext) -> None:
    """Catch typos in stage and segment names, which would otherwise silently never match."""
    field_name, value, op = node.get("field"), node.get("value"), node.get("op")
    _check_types(node, path, ctx)
    values = value if isinstance(value, list) else [value]
    if field_name == "stage" and ctx.stages and op in ("eq", "ne", "in", "not_in"):
        stages = [_folded(n, node) for n in ctx.stages]
        for v in values:
            if _folded(v, node) not in stages:
                ctx.problems.add(f"{path}.value", f"unknown stage {v!r} (expected one of {', '.join(ctx.stages)})")
    if field_name == "segments" and op == "contains" and value not in ctx.segments:
        ctx.problems.add(
            f"{path}.value",
            f"unknown segment {value!r} (a condition may refer to segments defined before it: "
            f"{', '.join(ctx.segments) or 'none'})",
        )
    if field_name == "grade" and op in ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge"):
        grades = [_folded(g, node) for g in ("A", "B", "C", "D", "E", "F")]
        for v in values:
            if _folded(v, node) not in grades:
                ctx.problems.add(f"{path}.value", f"unknown grade {v!r} (expected one of A, B, C, D, E, F)")


def window_id(inner: Any, within_ms: int) -> str:
    """Return the stable id of a trailing window: identical windows share one counter."""
    canonical = orjson.dumps([inner, within_ms], option=orjson.OPT_SORT_KEYS)
    return "w" + blake2b(canonical, digest_size=6).hexdigest()


def _compile_count(node: dict[str, Any], path: str, ctx: CompileContext) -> Compiled | None:
    p = ctx.problems
    if not ctx.allow_state:
        p.add(path, "a count window reads contact state; it cannot be nested in another count")
        return None
    within = p.duration(node.get("within"), f"{path}.within", positive=True,
                        example="'7d' (a window of no time counts nothing)")
    op, value = node.get("op"), node.get("value")
    if op not in COUNT_OPS:
        p.add(f"{path}.op", f"unknown count operator {op!r} (expected one of {', '.join(COUNT_OPS)})")
    if not (type(value) is int and value >= 0):
        p.add(f"{path}.value", f"expected a whole number of events >= 0, got {_show(value)}")
    inner_ctx = CompileContext(problems=p, allow_event=True, allow_state=False)
    inner = _compile(node.get("count"), f"{path}.count", inner_ctx)
    if inner is None or within is None or op not in COUNT_OPS or not (type(value) is int and value >= 0):
        return None
    wid = window_id(node["count"], within)
    test = _order_test(op, value) if op in ("lt", "le", "gt", "ge") else _eq_test(value, False)
    if op == "ne":
        eq = test
        test = lambda a: not eq(a)
    edges = frozenset(n for n in (value, value + 1) if n >= 1 and test(n) != test(n - 1))
    have = ctx.windows.get(wid)
    # Identical windows share one counter; each condition on it adds its own edges.
    ctx.windows[wid] = (WindowSpec(wid, within, inner.fn, node["count"], edges) if have is None
                        else replace(have, edges=have.edges | edges))

    def fn(c: Any, e: Any, now: int) -> bool:
        return test(window_count(c, wid, within, now))

    return Compiled(fn, node, frozenset({f"window:{wid}"}), False, (f"count:{wid}:{within}",))


def window_count(contact: Any, wid: str, within_ms: int, now: int) -> int:
    """Count a contact's events of one window in the trailing interval (now - within, now]."""
    stamps = contact.windows.get(wid)
    if not stamps:
        return 0
    return bisect_right(stamps, now) - bisect_right(stamps, now - within_ms)


def compile_condition(node: Any, path: str, ctx: CompileContext) -> Compiled | None:
    """Validate and compile a condition node; problems land in ``ctx.problems``."""
    return _compile(node, path, ctx)


def compile_inline(table: dict[str, Any], path: str, ctx: CompileContext) -> Compiled | None:
    """Compile the ``all`` or ``any`` list that a rule or segment table holds inline.

    Segments, rules and scoring rules carry their condition as an ``all = [...]`` or
    ``any = [...]`` key next to their other settings; exactly one must be present.
    """
    present = [k for k in ("all", "any") if k in table]
    if len(present) != 1:
        what = "both" if present else "neither"
        ctx.problems.add(path, f"expected exactly one of 'all' or 'any' (a list of conditions), found {what}")
        return None
    key = present[0]
    return _compile_group(key, table[key], f"{path}.{key}", {key: table[key]}, ctx)


def explain(compiled: Compiled, contact: Any, event: Any, now: int) -> dict[str, Any]:
    """Return the current value of every field a condition reads, for a trigger's ``reason``."""
    out: dict[str, Any] = {}
    for name in compiled.leaves:
        if name in out:
            continue
        if name.startswith("count:"):
            _, wid, within = name.split(":")
            out[f"count:{wid}"] = window_count(contact, wid, int(within), now)
            continue
        root, _, rest = name.partition(".")
        if root == "event":
            sub, _, deeper = rest.partition(".")
            value = _event_getter(sub, deeper)(contact, event, now)
        else:
            value = _state_getter(root, rest)[0](contact, event, now)
        if value is MISSING:
            value = None
        elif isinstance(value, (dict, set, frozenset)):
            value = sorted(value)
        out[name] = value
    return out
