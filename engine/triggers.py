"""Trigger records: what the engine tells downstream actioners to do, with deterministic ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .contact import ContactState
from .ids import trigger_id
from .pickling import ByFields
from .timeutil import format_ms


@dataclass(slots=True, init=False)
class Trigger(ByFields):
    """One action for one contact, caused by one occurrence (an event or a timer)."""

    trigger_id: str
    action: str
    rule: str
    contact_id: str
    user_id: str | None
    email: str | None
    event_time: int  # epoch ms of the causing event or the timer's due time
    params: dict[str, Any] = field(default_factory=dict)
    reason: dict[str, Any] = field(default_factory=dict)

    def __init__(self, trigger_id: str, action: str, rule: str, contact_id: str, user_id: str | None,
                 email: str | None, event_time: int, params: dict[str, Any] | None = None,
                 reason: dict[str, Any] | None = None) -> None:
        # Compiled with the class, unlike the __init__ dataclasses writes (see Event.__init__).
        self.trigger_id = trigger_id
        self.action = action
        self.rule = rule
        self.contact_id = contact_id
        self.user_id = user_id
        self.email = email
        self.event_time = event_time
        self.params = {} if params is None else params
        self.reason = {} if reason is None else reason

    def to_dict(self) -> dict[str, Any]:
        """Return the record in the trigger schema (schemas/trigger.schema.json)."""
        return {
            "trigger_id": self.trigger_id,
            "action": self.action,
            "rule": self.rule,
            "contact_id": self.contact_id,
            "user_id": self.user_id,
            "email": self.email,
            "event_time": format_ms(self.event_time),
            "params": self.params,
            "reason": self.reason,
        }


def make_trigger(
    action: str,
    rule: str,
    slot: str,
    contact: ContactState,
    event_time: int,
    occurrence: str,
    params: dict[str, Any] | None = None,
    reason: dict[str, Any] | None = None,
) -> Trigger:
    """Build a trigger; its id hashes (rule + slot, contact id, occurrence key).

    ``slot`` tells apart the actions of one rule that share an occurrence, e.g. the
    notify_sales and the send_email of one sales alert.
    """
    return Trigger(
        trigger_id=trigger_id(f"{rule}#{slot}", contact.contact_id, occurrence),
        action=action,
        rule=rule,
        contact_id=contact.contact_id,
        user_id=contact.user_id,
        email=contact.email,
        event_time=event_time,
        params=dict(params or {}),
        reason=dict(reason or {}),
    )
