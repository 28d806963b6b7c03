"""The second backend for conditions: compile a condition to a DuckDB SQL boolean over the warehouse.

It walks the same condition data as ``conditions._compile`` with its own dispatcher
and keeps the same semantics, which the parity tests check on generated data:
- a missing or null field fails every test (``ne`` included) except ``exists = false``;
- types never coerce: a JSON string "3" is not the number 3, and true is not 1;
- every leaf is wrapped in COALESCE(..., FALSE), so ``not`` flips exactly like Python.

Contact fields are read from the ``contacts`` row aliased ``c``; scores from
``contact_scores``; trailing-window counts from ``events`` (aliased ``e``), whose
contact_id already follows merges. ``now_ms`` fixes the end of every window.
"""

from __future__ import annotations

from typing import Any

from .conditions import is_number, node_kind
from .timeutil import format_ms, parse_duration_ms


class SqlUnsupported(ValueError):
    """A condition reads something the warehouse does not store."""


_NUMERIC_JSON = "('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT', 'INTEGER')"


def lit(value: Any) -> str:
    """A SQL literal for a string, number or boolean."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if is_number(value):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _json_path(keys: list[str]) -> str:
    return lit("$" + "".join('."' + k.replace('"', '\\"') + '"' for k in keys))


class _Value:
    """How to read one field in SQL: an expression and its static kind.

    Kinds: "json" (a JSON value, typed at run time), "str", "num", "bool", "list" (VARCHAR[]).
    """

    def __init__(self, expr: str, kind: str) -> None:
        self.expr = expr
        self.kind = kind


def _state_value(field: str, now_ms: int) -> _Value:
    root, _, rest = field.partition(".")
    if root == "traits":
        return _Value(f"json_extract(c.traits, {_json_path(rest.split('.'))})", "json")
    if root == "first_campaign":
        return _Value(f"json_extract(c.first_campaign, {_json_path([rest])})", "json")
    if root == "score":
        return _Value(
            f"COALESCE((SELECT s.score FROM contact_scores s WHERE s.contact_id = c.contact_id AND s.profile = {lit(rest)}), 0.0)",
            "num",
        )
    if root == "counts":
        return _Value(f"COALESCE(CAST(json_extract(c.counts, {_json_path([rest])}) AS BIGINT), 0)", "num")
    simple = {
        "email": ("c.email", "str"),
        "user_id": ("c.user_id", "str"),
        "contact_id": ("c.contact_id", "str"),
        "known": ("(c.user_id IS NOT NULL)", "bool"),
        "grade": ("c.grade", "str"),
        "fit": ("c.fit", "num"),
        "stage": ("c.stage", "str"),
        "segments": ("c.segments", "list"),
        "lists": ("c.lists", "list"),
        "visits": ("c.visits", "num"),
    }
    if root in simple:
        return _Value(*simple[root])
    raise SqlUnsupported(f"field {field!r} has no warehouse column")


def _event_value(field: str) -> _Value:
    _, _, rest = field.partition(".")
    name, _, sub = rest.partition(".")
    columns = {"type": "e.type", "name": "e.name", "message_id": "e.message_id", "user_id": "e.user_id",
               "anonymous_id": "e.anonymous_id"}
    if name in columns:
        return _Value(columns[name], "str")
    if name in ("properties", "context"):
        return _Value(f"json_extract(e.{name}, {_json_path(sub.split('.'))})", "json")
    raise SqlUnsupported(f"field {field!r} is not stored in the events table")


# ---------------------------------------------------------------- typed tests


def _is(kind: str, value: _Value) -> str:
    """SQL that holds when the field's value has the JSON kind of a literal (str/num/bool)."""
    if value.kind == "json":
        return {
            "str": f"json_type({value.expr}) = 'VARCHAR'",
            "num": f"json_type({value.expr}) IN {_NUMERIC_JSON}",
            "bool": f"json_type({value.expr}) = 'BOOLEAN'",
        }[kind]
    return "TRUE" if value.kind == kind else "FALSE"


def _as(kind: str, value: _Value, ignore_case: bool = False) -> str:
    """The field's value as a SQL scalar of ``kind`` (assumes _is(kind) holds)."""
    if value.kind == "json":
        expr = {"str": f"({value.expr} ->> '$')", "num": f"CAST({value.expr} AS DOUBLE)",
                "bool": f"CAST({value.expr} AS BOOLEAN)"}[kind]
    else:
        expr = value.expr
    return f"lower({expr})" if ignore_case and kind == "str" else expr


def _kind_of(literal: Any) -> str:
    if isinstance(literal, bool):
        return "bool"
    return "num" if is_number(literal) else "str"


def _lit(literal: Any, ignore_case: bool) -> str:
    if ignore_case and isinstance(literal, str):
        return lit(literal.lower())
    return lit(literal)


def _eq(value: _Value, literal: Any, ignore_case: bool) -> str:
    kind = _kind_of(literal)
    if value.kind == "list":
        return "FALSE"
    check = _is(kind, value)
    if check == "FALSE":
        return "FALSE"
    return f"({check} AND {_as(kind, value, ignore_case)} = {_lit(literal, ignore_case)})"


def _present(value: _Value) -> str:
    if value.kind == "json":
        return f"({value.expr} IS NOT NULL AND json_type({value.expr}) <> 'NULL')"
    return f"({value.expr} IS NOT NULL)"


def _contains(value: _Value, literal: Any, ignore_case: bool) -> str:
    kind = _kind_of(literal)
    parts = []
    if kind == "str":
        if value.kind in ("json", "str"):
            parts.append(f"({_is('str', value)} AND contains({_as('str', value, ignore_case)}, {_lit(literal, ignore_case)}))")
    if value.kind == "list":
        if kind != "str":
            return "FALSE"
        hay = f"[lower(x) FOR x IN {value.expr}]" if ignore_case else value.expr
        parts.append(f"list_contains({hay}, {_lit(literal, ignore_case)})")
    if value.kind == "json":
        element = _Value("x", "json")
        parts.append(
            f"(json_type({value.expr}) = 'ARRAY' AND len(list_filter(CAST(json_extract({value.expr}, '$[*]') AS JSON[]), "
            f"lambda x: {_eq(element, literal, ignore_case)})) > 0)"
        )
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _leaf(node: dict[str, Any], value: _Value) -> str:
    op = node["op"]
    literal: Any = node.get("value")
    ic = bool(node.get("ignore_case", False))
    if op == "exists":
        want = node.get("value", True)
        return _present(value) if want else f"NOT {_present(value)}"
    if op == "eq":
        return _eq(value, literal, ic)
    if op == "ne":
        return f"({_present(value)} AND NOT COALESCE({_eq(value, literal, ic)}, FALSE))"
    if op in ("lt", "le", "gt", "ge"):
        kind = _kind_of(literal)
        check = _is(kind, value) if value.kind != "list" else "FALSE"
        if check == "FALSE":
            return "FALSE"
        sym = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
        return f"({check} AND {_as(kind, value)} {sym} {lit(literal)})"
    if op in ("in", "not_in"):
        hit = "(" + " OR ".join(f"COALESCE({_eq(value, v, ic)}, FALSE)" for v in literal) + ")"
        return hit if op == "in" else f"({_present(value)} AND NOT {hit})"
    if op == "contains":
        return _contains(value, literal, ic)
    if op in ("starts_with", "ends_with", "matches"):
        check = _is("str", value) if value.kind != "list" else "FALSE"
        if check == "FALSE":
            return "FALSE"
        if op == "matches":
            return f"({check} AND regexp_matches({_as('str', value)}, {lit(literal)}{', ' + lit('i') if ic else ''}))"
        fn = "starts_with" if op == "starts_with" else "suffix"
        return f"({check} AND {fn}({_as('str', value, ic)}, {_lit(literal, ic)}))"
    raise SqlUnsupported(f"operator {op!r}")


# ---------------------------------------------------------------- the dispatcher


def _compile(node: Any, now_ms: int, in_event: bool) -> str:
    kind = node_kind(node)
    if kind in ("all", "any"):
        joiner = " AND " if kind == "all" else " OR "
        return "(" + joiner.join(_compile(child, now_ms, in_event) for child in node[kind]) + ")"
    if kind == "not":
        return f"(NOT {_compile(node['not'], now_ms, in_event)})"
    if kind == "count":
        within = parse_duration_ms(node["within"])
        inner = _compile(node["count"], now_ms, True)
        start, end = format_ms(now_ms - within), format_ms(now_ms)
        count = (
            "(SELECT count(*) FROM events e WHERE e.contact_id = c.contact_id "
            f"AND e.timestamp > TIMESTAMP '{start[:-1]}' AND e.timestamp <= TIMESTAMP '{end[:-1]}' AND {inner})"
        )
        sym = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[node["op"]]
        return f"({count} {sym} {int(node['value'])})"
    field = node["field"]
    value = _event_value(field) if field.startswith("event.") else _state_value(field, now_ms)
    if field.startswith("event.") and not in_event:
        raise SqlUnsupported(f"field {field!r} reads an event; only contact state can be queried")
    return f"COALESCE({_leaf(node, value)}, FALSE)"


def condition_sql(node: Any, now_ms: int) -> str:
    """Compile a validated contact-state condition (a segment's or rule's) to a SQL boolean over ``c``."""
    return _compile(node, now_ms, False)


def segment_query(node: Any, now_ms: int, columns: str = "c.contact_id, c.user_id, c.email, c.stage, c.grade") -> str:
    """A query for the contacts that match a condition at ``now_ms``, ordered by contact_id.

    Erased contacts are never members, as in the stream (a condition such as "no title"
    or "score below 5" would otherwise match what erasure left of them).
    """
    return (f"SELECT {columns} FROM contacts c WHERE c.deleted IS NOT TRUE AND ({condition_sql(node, now_ms)}) "
            "ORDER BY c.contact_id")
