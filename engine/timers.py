"""A shard's timer service (Flink's, in miniature): one heap of (due, contact, timer) per shard.

Contacts own their timers (``ContactState.timers``); the queue only remembers when to
wake a contact up. Most timers move *later* with every event (a quiet-period wait, an
inactivity decay step), so the queue keeps its earlier entry and, when that surfaces,
the shard looks at the contact's real due time and re-queues it: one heap push per
wake-up instead of one per event. Cancelled timers are skipped when they surface.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any, Callable


class TimerQueue:
    """Due times of every timer of every contact in one shard, earliest first."""

    __slots__ = ("_heap", "_known")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str]] = []
        self._known: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._known)

    def sync(self, contact_id: str, timers: dict[str, int]) -> None:
        """Take note of a contact's timers after the engine touched it.

        A timer that moved later keeps its earlier heap entry (see the module doc).
        """
        known, heap = self._known, self._heap
        for key, due in timers.items():
            have = known.get((contact_id, key))
            if have is None or due < have:
                known[(contact_id, key)] = due
                heappush(heap, (due, contact_id, key))
        if len(heap) > 2 * len(known) + 1024:
            # Many moved timers (every activity restarts a re-engagement wait): compact.
            self._heap = [(due, cid, key) for (cid, key), due in known.items()]
            heapify(self._heap)

    def next_due(self) -> int | None:
        """The earliest due time, if any timer is pending."""
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[int, str, str]:
        """Remove and return the earliest (due, contact_id, timer name)."""
        due, cid, key = heappop(self._heap)
        if self._known.get((cid, key)) == due:
            del self._known[(cid, key)]
        return due, cid, key

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._heap, self._known)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._heap, self._known = state


def advance_in_time(
    buffer: Any,
    timers: TimerQueue,
    watermark: int,
    contacts: dict[str, Any],
    apply_item: Callable[[Any], None],
    fire: Callable[[Any, str, int], None],
) -> None:
    """Apply buffered items and fire timers up to the watermark, in event-time order.

    Both stages advance this way. At equal times items go first: a deadline has not
    passed while events of its very instant are still arriving. ``fire(contact, key,
    due)`` runs for timers still due as queued; one that moved later is queued again.
    """
    buffer.advance_to(watermark)
    limit = buffer.watermark
    while True:
        ev, due = buffer.oldest(), timers.next_due()
        if ev is not None and ev <= limit and (due is None or ev <= due):
            apply_item(buffer.pop_ready())
        elif due is not None and due <= limit:
            due, cid, key = timers.pop()
            contact = contacts.get(cid)
            if contact is None:
                continue  # merged away or never kept: its timers went with it
            actual = contact.timers.get(key)
            if actual is not None and actual > due:
                timers.sync(cid, {key: actual})  # it moved later since it was queued
            elif actual == due:
                fire(contact, key, due)
                timers.sync(cid, contact.timers)
        else:
            break
