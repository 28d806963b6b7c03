"""Stage two: known contacts for one shard, fed by the identity stage in event-time order."""

from __future__ import annotations

from typing import Any

from .contact import ContactState
from .engine import Engine
from .ordering import ReorderBuffer
from .routing import MERGE, Routed, ShardOutput
from .store import ContactStore
from .timers import TimerQueue, advance_in_time


# Named fields, not __dict__, which classes compiled by mypyc do not have.
_STATE = ("shard", "contacts", "buffer", "timers", "changed")


class ContactShard:
    """Keyed state of stage two: known contacts and the reorder buffer."""

    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.contacts = ContactStore()
        self.buffer = ReorderBuffer()
        self.timers = TimerQueue()
        self.changed: set[str] = set()

    @property
    def watermark(self) -> int:
        """The event time up to which this shard has applied everything."""
        return self.buffer.watermark

    def receive(self, engine: Engine, records: list[Routed], out: ShardOutput) -> None:
        """Buffer records; one the watermark already passed was late upstream and applies at once."""
        for r in records:
            if self.buffer.is_late(r.ts):
                self._apply(engine, r, out, True)
            else:
                self.buffer.push(r.ts, r.message_id, r.kind, r)

    def advance(self, engine: Engine, watermark: int, out: ShardOutput) -> None:
        """Apply buffered records and fire timers up to the watermark, in event-time order.

        Records go in (time, messageId, merge-first) order (a merge carries its event, so it
        is one record); at equal times records go before timers, as in the identity stage.
        """
        def fire(contact: ContactState, key: str, due: int) -> None:
            out.triggers.extend(engine.on_timer(contact, key, due))
            self.changed.add(contact.contact_id)

        advance_in_time(self.buffer, self.timers, watermark, self.contacts, lambda r: self._apply(engine, r, out), fire)

    def _apply(self, engine: Engine, r: Routed, out: ShardOutput, behind: bool = False) -> None:
        contact = self.contacts.get(r.contact_id)
        if contact is None:
            contact = self.contacts[r.contact_id] = engine.new_contact(r.contact_id, r.contact_id)
        event = r.event
        if contact.deleted:
            if event is not None:
                out.count("suppressed")  # erased on request: its events are neither applied nor stored
            return
        if r.kind == MERGE:
            # A merge carries the event that caused it, applied with it (see Engine.merge_into).
            out.triggers.extend(engine.merge_into(contact, r.profile, r.ts, r.message_id,  # type: ignore[arg-type]
                                                  r.late or behind, event))
        else:
            out.triggers.extend(engine.apply(contact, event, r.late or behind))  # type: ignore[arg-type]
        if event is not None:
            out.applied.append((r.contact_id, event))
        self.changed.add(r.contact_id)
        self.timers.sync(r.contact_id, contact.timers)

    def take_changes(self) -> dict[str, ContactState]:
        """Return and forget the contacts that changed since the last call."""
        changed = {cid: self.contacts[cid] for cid in self.changed}
        # A cut is where contacts idle for a few cuts are frozen (see engine/store.py).
        self.contacts.cut(self.changed)
        self.changed = set()
        return changed

    def __reduce__(self) -> tuple[Any, ...]:
        return (ContactShard, (self.shard,), {name: getattr(self, name) for name in _STATE})

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
