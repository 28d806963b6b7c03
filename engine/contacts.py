"""Stage two: known contacts for one shard, fed by the identity stage in event-time order."""

from __future__ import annotations

from typing import Any

from .contact import ContactState
from .engine import Engine
from .ordering import ReorderBuffer
from .routing import MERGE, Routed, ShardOutput


class ContactShard:
    """Keyed state of stage two: known contacts and the reorder buffer."""

    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.contacts: dict[str, ContactState] = {}
        self.buffer = ReorderBuffer()
        self.changed: set[str] = set()

    @property
    def watermark(self) -> int:
        """The event time up to which this shard has applied everything."""
        return self.buffer.watermark

    def receive(self, engine: Engine, records: list[Routed], out: ShardOutput) -> None:
        """Buffer records; one the watermark already passed was late upstream and applies at once."""
        for r in records:
            if self.buffer.is_late(r.ts):
                self._apply(engine, r, out)
            else:
                self.buffer.push(r.ts, r.message_id, r.kind, r)

    def advance(self, engine: Engine, watermark: int, out: ShardOutput) -> None:
        """Apply every buffered record the watermark passed, in (time, messageId, merge-first) order."""
        for r in self.buffer.release(watermark):
            self._apply(engine, r, out)

    def _apply(self, engine: Engine, r: Routed, out: ShardOutput) -> None:
        contact = self.contacts.get(r.contact_id)
        if contact is None:
            contact = self.contacts[r.contact_id] = engine.new_contact(r.contact_id, r.contact_id)
        if r.kind == MERGE:
            out.triggers.extend(engine.merge_into(contact, r.profile, r.ts, r.message_id))  # type: ignore[arg-type]
        else:
            out.triggers.extend(engine.apply(contact, r.event))  # type: ignore[arg-type]
            out.applied.append((r.contact_id, r.event))  # type: ignore[arg-type]
        self.changed.add(r.contact_id)

    def take_changes(self) -> dict[str, ContactState]:
        """Return and forget the contacts that changed since the last call."""
        changed = {cid: self.contacts[cid] for cid in self.changed}
        self.changed = set()
        return changed

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
