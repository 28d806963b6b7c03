"""The normalized event and the rejection record: the two outcomes of decoding one input line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

EVENT_TYPES = ("identify", "track", "page", "screen", "alias", "group")

# Reason codes are part of the dead-letter contract (schemas/dead_letter.schema.json):
# downstream tooling groups and alerts on them, so they never change meaning.
REASONS = {
    "empty_line": "the line is blank",
    "too_large": "the event is larger than 32 KB (Segment's limit) or nests more than 64 levels deep",
    "invalid_json": "the line is not valid JSON (or not UTF-8)",
    "not_an_object": "the JSON value is not an object",
    "unknown_type": "type is missing or not one of identify, track, page, screen, alias, group",
    "missing_identity": "neither anonymousId nor userId is present",
    "junk_identifier": "an identifier is a placeholder such as 'anonymous', 'null', 'undefined', '0' or blank",
    "bad_timestamp": "no event time (timestamp, originalTimestamp or receivedAt), or not ISO-8601, outside 2000-2100, or more than 5 minutes after receivedAt",
    "wrong_type": "a field has the wrong JSON type",
    "missing_field": "a field the event type requires is missing",
    "no_consent": "an anonymous event without the tracking consent the config requires",
    "webhook_failed": "a batch of triggers the webhook receiver did not accept after every retry",
    "unreadable_input": "the rest of an input file could not be read (a gzip stream cut short or corrupt)",
}


def event_from_json(blob: bytes) -> Event:
    """Rebuild an event that ``Event.__reduce__`` wrote as one JSON array of its fields."""
    return Event(*orjson.loads(blob))


@dataclass(slots=True, init=False)
class Event:
    """One accepted Segment-spec event, normalized; ``ts`` is event time in epoch ms."""

    message_id: str
    type: str
    ts: int
    anonymous_id: str | None = None
    user_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    # Track events carry their name in `event`, pages and screens in `name`;
    # conditions address both as `event.name`.
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    # The whole context as JSON text, when the decoder kept only the keys the rules read as
    # ``context`` (see Config.context_keys); None when ``context`` is the whole of it.
    context_json: str | None = None

    def __init__(self, message_id: str, type: str, ts: int, anonymous_id: str | None = None,
                 user_id: str | None = None, previous_id: str | None = None, group_id: str | None = None,
                 name: str | None = None, properties: dict[str, Any] | None = None,
                 traits: dict[str, Any] | None = None, context: dict[str, Any] | None = None,
                 context_json: str | None = None) -> None:
        # Spelt out, as in the other hot records: the __init__ that dataclasses writes is
        # interpreted bytecode even in the compiled module (about 4,600 instructions per
        # event under callgrind), while this one compiles with the class.
        self.message_id = message_id
        self.type = type
        self.ts = ts
        self.anonymous_id = anonymous_id
        self.user_id = user_id
        self.previous_id = previous_id
        self.group_id = group_id
        self.name = name
        self.properties = {} if properties is None else properties
        self.traits = {} if traits is None else traits
        self.context = {} if context is None else context
        self.context_json = context_json

    def __reduce__(self) -> tuple[Any, ...]:
        # Events cross processes (shard exchange, warehouse exports) and go into recovery
        # snapshots by the thousand. Constructor arguments pickle in about half the time
        # of the slots dataclass default (a state dict per object), and as one JSON array
        # in less than half again (2.5 against 5.5 us; loading 3.2 us either way). Decoded
        # events hold only what orjson decoded (no tuples, no infinities), so the array
        # gives back equal ones; what JSON cannot hold (an event built by hand) pickles
        # as the arguments themselves. (Pickling the raw line and decoding it again was
        # measured too: slower to load.)
        args = (self.message_id, self.type, self.ts, self.anonymous_id, self.user_id, self.previous_id,
                self.group_id, self.name, self.properties, self.traits, self.context, self.context_json)
        try:
            return (event_from_json, (orjson.dumps(args),))
        except orjson.JSONEncodeError:
            return (Event, args)

    @property
    def device_id(self) -> str:
        """The identifier that routes this event to its identity shard."""
        if self.type == "alias":
            return self.previous_id  # type: ignore[return-value]
        return self.anonymous_id or self.user_id  # type: ignore[return-value]

    def occurrence(self, contact_id: str, known: bool = True) -> str:
        """The occurrence key of this event at a contact: its messageId, with ``@device`` unless the
        device is the known contact's own id.

        Trigger ids and workflow runs are keyed by it. A messageId is unique per device, not
        per person (a tracker that counts messages from 1 on each device), and two devices of
        one contact sending the same one are two events: keyed by the messageId alone, their
        order e-mails shared a trigger id, which actioners drop as a repeat. An anonymous
        profile's events are keyed by device too, since its runs join a known contact's at a
        merge, beside those of the person's other devices.
        """
        device = self.device_id
        return self.message_id if known and device == contact_id else f"{self.message_id}@{device}"

    def sort_key(self) -> tuple[int, str]:
        """The total order every shard applies events in: (event time, messageId)."""
        return (self.ts, self.message_id)

    def to_segment(self) -> dict[str, Any]:
        """Return the event as a Segment-spec object (for logs and the events table)."""
        from .timeutil import format_ms

        out: dict[str, Any] = {"type": self.type, "messageId": self.message_id, "timestamp": format_ms(self.ts)}
        for key, value in (
            ("anonymousId", self.anonymous_id),
            ("userId", self.user_id),
            ("previousId", self.previous_id),
            ("groupId", self.group_id),
        ):
            if value is not None:
                out[key] = value
        if self.name is not None:
            out["event" if self.type == "track" else "name"] = self.name
        if self.properties:
            out["properties"] = self.properties
        if self.traits:
            out["traits"] = self.traits
        context = orjson.loads(self.context_json) if self.context_json is not None else self.context
        if context:
            out["context"] = context
        return out


@dataclass(slots=True, frozen=True)
class Rejection:
    """A line that was not accepted: a reason code from REASONS, a human detail and the raw line."""

    reason: str
    detail: str
    raw: str
    source: str = ""

    def to_dict(self) -> dict[str, str]:
        """Return the dead-letter record."""
        return {"reason": self.reason, "detail": self.detail, "raw": self.raw, "source": self.source}

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the constructor: a compiled frozen class refuses the default's setattr.
        return (Rejection, (self.reason, self.detail, self.raw, self.source))
