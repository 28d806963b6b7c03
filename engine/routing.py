"""Records that travel from the identity stage to the contact stage, and shard outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from .contact import ContactState
from .events import Event
from .ids import shard_of
from .pickling import ByFields
from .triggers import Trigger

# A merge travels with the event that caused it (see Engine.merge_into). Records of one
# time and messageId sort merges first, so a profile joins before the contact's other records.
MERGE: Final = 0
EVENT: Final = 1


@dataclass(slots=True, init=False)
class Routed(ByFields):
    """An event for a known contact; a MERGE also carries the anonymous profile it merges into it."""

    kind: int  # MERGE or EVENT
    contact_id: str
    ts: int
    message_id: str
    event: Event | None = None
    profile: ContactState | None = None
    late: bool = False

    def __init__(self, kind: int, contact_id: str, ts: int, message_id: str, event: Event | None = None,
                 profile: ContactState | None = None, late: bool = False) -> None:
        # Compiled with the class, unlike the __init__ dataclasses writes (see Event.__init__).
        self.kind = kind
        self.contact_id = contact_id
        self.ts = ts
        self.message_id = message_id
        self.event = event
        self.profile = profile
        self.late = late


@dataclass
class ShardOutput:
    """What one shard produced while advancing: downstream records, triggers, applied events, counts."""

    routed: list[Routed] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    applied: list[tuple[str, Event]] = field(default_factory=list)  # (contact_id, event) in apply order
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter (accepted, duplicates, late, merges, relinks)."""
        self.counts[name] = self.counts.get(name, 0) + n


def by_contact_shard(records: list[Routed], shards: int) -> dict[int, list[Routed]]:
    """Records grouped by the contact shard that owns their contact, each group in record order.

    Here rather than in the flow's step so that the loop, once per routed record, is compiled.
    """
    groups: dict[int, list[Routed]] = {}
    for r in records:
        shard = shard_of(r.contact_id, shards)
        group = groups.get(shard)
        if group is None:
            groups[shard] = [r]
        else:
            group.append(r)
    return groups
