"""Actions: what a rule asks downstream actioners to do, validated per action type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import Problems, did_you_mean

_STR, _NUM, _ANY, _TABLE = "a string", "a number", "a string, number or boolean", "a table"

# action -> (required params, optional params); `data` is a free-form table passed through
# to the actioner, so every other key can be checked and a typo like `tempate` is caught.
ACTIONS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "send_email": ({"template": _STR}, {"sender": _STR, "subject": _STR, "data": _TABLE}),
    "send_sms": ({"template": _STR}, {"data": _TABLE}),
    "notify_sales": ({}, {"channel": _STR, "message": _STR, "data": _TABLE}),
    "assign_owner": ({"owner": _STR}, {"team": _STR, "data": _TABLE}),
    "add_to_list": ({"list": _STR}, {"data": _TABLE}),
    "remove_from_list": ({"list": _STR}, {"data": _TABLE}),
    "set_trait": ({"trait": _STR, "value": _ANY}, {}),
    "adjust_score": ({"points": _NUM}, {"profile": _STR}),
    "webhook": ({"url": _STR}, {"method": _STR, "data": _TABLE}),
    "show_overlay": ({"overlay": _STR}, {"data": _TABLE}),
}
# Triggers the engine emits on its own, not from a configured action.
SYSTEM_ACTIONS = ("stage_changed", "segment_entered", "segment_exited", "contact_deleted")


@dataclass(frozen=True)
class ActionSpec:
    """One configured action: its type and its parameters."""

    action: str
    params: dict[str, Any]


def _type_ok(kind: str, value: Any) -> bool:
    if kind == _STR:
        return isinstance(value, str) and value != ""
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _TABLE:
        return isinstance(value, dict)
    return isinstance(value, (str, int, float, bool))


def compile_actions(items: Any, path: str, p: Problems, profiles: frozenset[str]) -> list[ActionSpec] | None:
    """Validate an ``actions = [{ action, params }]`` list; None after recording problems."""
    if not isinstance(items, list) or not items:
        p.add(path, "expected a non-empty array of actions like [{ action = \"send_email\", params = { template = \"welcome\" } }]")
        return None
    out: list[ActionSpec] = []
    ok = True
    for i, item in enumerate(items):
        apath = f"{path}[{i}]"
        if not isinstance(item, dict):
            p.add(apath, f"expected an action table, got {item!r}")
            ok = False
            continue
        for key in item:
            if key not in ("action", "params"):
                p.add(f"{apath}.{key}", f"unknown key {key!r}{did_you_mean(key, ('action', 'params'))} (expected action, params)")
                ok = False
        name = item.get("action")
        if name not in ACTIONS:
            p.add(f"{apath}.action", f"unknown action {name!r} (expected one of {', '.join(ACTIONS)})")
            ok = False
            continue
        params = item.get("params", {})
        if not isinstance(params, dict):
            p.add(f"{apath}.params", f"expected a table, got {params!r}")
            ok = False
            continue
        required, optional = ACTIONS[name]
        for key, kind in required.items():
            if key not in params:
                p.add(f"{apath}.params", f"{name} needs params.{key} ({kind})")
                ok = False
        for key, value in params.items():
            expected = required.get(key) or optional.get(key)
            if expected is None:
                allowed = ", ".join([*required, *optional]) or "none"
                p.add(f"{apath}.params.{key}", f"unknown parameter {key!r} for {name} (expected {allowed})")
                ok = False
            elif not _type_ok(expected, value):
                p.add(f"{apath}.params.{key}", f"expected {expected}, got {value!r}")
                ok = False
        if name == "adjust_score" and params.get("profile", "default") not in profiles:
            p.add(f"{apath}.params.profile", f"unknown scoring profile {params.get('profile')!r}")
            ok = False
        if name == "webhook" and not str(params.get("url", "")).startswith(("http://", "https://")):
            p.add(f"{apath}.params.url", "expected an http:// or https:// URL")
            ok = False
        out.append(ActionSpec(name, dict(params)))
    return out if ok else None
