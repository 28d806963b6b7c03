"""A shard's timer service (Flink's, in miniature): one heap of (due, contact) per shard.

Contacts own their timers (``ContactState.timers``); the queue only remembers when to
wake a contact up, one entry per contact for its earliest timer. Most timers move
*later* with every event (a quiet-period wait, an inactivity decay step), so the queue
keeps its earlier entry and, when that surfaces, the shard looks at the contact's real
timers and re-queues it: one heap push per wake-up instead of one per event. An entry
per contact, not per timer, keeps the queue at about 150 bytes per contact.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any, Callable


class TimerQueue:
    """When each contact of one shard next needs waking up, earliest first."""

    __slots__ = ("_heap", "_known")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._known: dict[str, int] = {}  # contact -> the earliest due queued for it

    def __len__(self) -> int:
        return len(self._known)

    def sync(self, contact_id: str, timers: dict[str, int]) -> None:
        """Take note of a contact's timers after the engine touched it.

        A timer that moved later keeps its earlier heap entry (see the module doc).
        """
        if not timers:
            return
        due = min(timers.values())
        have = self._known.get(contact_id)
        if have is None or due < have:
            self._known[contact_id] = due
            heappush(self._heap, (due, contact_id))
            if len(self._heap) > len(self._known) + (len(self._known) >> 2) + 1024:
                # Many timers moved earlier since they were queued: drop the stale entries
                # (a quarter of slack keeps this linear rebuild rare).
                self._heap = [(d, cid) for cid, d in self._known.items()]
                heapify(self._heap)

    def next_due(self) -> int | None:
        """The earliest due time queued, if any."""
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[int, str]:
        """Remove and return the earliest (due, contact_id)."""
        due, cid = heappop(self._heap)
        if self._known.get(cid) == due:
            del self._known[cid]
        return due, cid

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._heap, self._known)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        heap, known = state
        if known and isinstance(next(iter(known)), tuple):
            # A recovery snapshot from before one entry per contact: (contact, timer) -> due.
            per_contact: dict[str, int] = {}
            for (cid, _), due in known.items():
                if due < per_contact.get(cid, due + 1):
                    per_contact[cid] = due
            known, heap = per_contact, [(d, cid) for cid, d in per_contact.items()]
            heapify(heap)
        self._heap, self._known = heap, known


def advance_in_time(
    buffer: Any,
    timers: TimerQueue,
    watermark: int,
    contacts: Any,
    apply_item: Callable[[Any], None],
    fire: Callable[[Any, str, int], None],
) -> None:
    """Apply buffered items and fire timers up to the watermark, in event-time order.

    Both stages advance this way. At equal times items go first: a deadline has not
    passed while events of its very instant are still arriving. Timers fire in
    (due, contact, timer name) order, one per wake-up: ``fire(contact, key, due)``,
    after which the contact is queued again for its next timer.
    """
    buffer.advance_to(watermark)
    limit = buffer.watermark
    while True:
        ev, due = buffer.oldest(), timers.next_due()
        if ev is not None and ev <= limit and (due is None or ev <= due):
            apply_item(buffer.pop_ready())
        elif due is not None and due <= limit:
            due, cid = timers.pop()
            contact = contacts.get(cid)
            if contact is None or not contact.timers:
                continue  # merged away, erased or never kept: its timers went with it
            pending = contact.timers
            actual, key = min((d, k) for k, d in pending.items())
            if actual <= due:
                fire(contact, key, actual)
            timers.sync(cid, pending)  # the next timer, or the one that moved later
        else:
            break
