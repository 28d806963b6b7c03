"""A shard's timer service (Flink's, in miniature): when each contact next needs waking up.

Contacts own their timers (``ContactState.timers``); the queue only remembers when to
wake a contact up, one entry per contact for its earliest timer. Most timers move
*later* with every event (a quiet-period wait, an inactivity decay step), so the queue
keeps its earlier entry and, when that surfaces, the shard looks at the contact's real
timers and re-queues it: one entry per wake-up instead of one per event.

Nearly every contact has a timer (the inactivity decay), so the queue is memory that
grows with contacts. A heap of (due, contact) tuples took about 180 bytes per contact.
Instead, contacts wait in coarse time buckets (a list slot each) beside the map of
their due times; only the earliest bucket is sorted, into a small heap, when the
watermark gets to it. About 130 bytes per contact, and the same firing order.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any, Callable, Final

from .buckets import TimeBuckets
from .ordering import ReorderBuffer

BUCKET_MS: Final = 1 << 20  # about 17 minutes of event time per bucket


class TimerQueue:
    """When each contact of one shard next needs waking up, earliest first."""

    __slots__ = ("_known", "_buckets", "_open", "_open_key")

    def __init__(self) -> None:
        self._known: dict[str, int] = {}  # contact -> the earliest due queued for it
        self._buckets = TimeBuckets(BUCKET_MS)  # contacts by due
        self._open: list[tuple[int, str]] = []  # heap of (due, contact) up to bucket _open_key
        self._open_key: int | None = None

    def __len__(self) -> int:
        return len(self._known)

    def sync(self, contact_id: str, timers: dict[str, int]) -> None:
        """Take note of a contact's timers after the engine touched it.

        A timer that moved later keeps its earlier entry (see the module doc).
        """
        if not timers:
            return
        # A loop over the few timers, not min(): the builtin is a generic call from
        # compiled code, about 1,400 instructions a time, and this runs at every event.
        due, first = 0, True
        for at in timers.values():
            if first or at < due:
                due, first = at, False
        have = self._known.get(contact_id)
        if have is None or due < have:
            self._known[contact_id] = due
            self._queue(due, contact_id)

    def _queue(self, due: int, contact_id: str) -> None:
        if self._open_key is not None and due // BUCKET_MS <= self._open_key:
            heappush(self._open, (due, contact_id))
        else:
            self._buckets.add(due, contact_id)

    def _head(self) -> tuple[int, str] | None:
        """The earliest live (due, contact), opening buckets as needed; stale entries go."""
        known, opened = self._known, self._open
        while True:
            while opened:
                due, cid = opened[0]
                if known.get(cid) == due:
                    return due, cid
                heappop(opened)  # moved earlier since, or already popped
            if self._buckets.first() is None:
                return None
            bucket, listed = self._buckets.pop_first()
            # Contacts listed twice or since moved to an earlier bucket are dropped here.
            live = {(d, c) for c in listed if (d := known.get(c)) is not None and d // BUCKET_MS == bucket}
            opened[:] = sorted(live)  # a sorted list is a heap
            self._open_key = bucket

    def next_due(self) -> int | None:
        """The earliest due time queued, if any."""
        head = self._head()
        return None if head is None else head[0]

    def pop(self) -> tuple[int, str]:
        """Remove and return the earliest (due, contact_id)."""
        head = self._head()
        if head is None:
            raise IndexError("pop from an empty timer queue")
        heappop(self._open)
        del self._known[head[1]]
        return head

    def __getstate__(self) -> list[dict[str, int]]:
        # The due map is the whole state: buckets are rebuilt from it. (In a list: pickle
        # skips __setstate__ for a false state, such as an empty dict.)
        return [self._known]

    def __setstate__(self, state: Any) -> None:
        # [known] now; (heap, known) before buckets.
        known = state[0] if isinstance(state, list) else state[1]
        if known and isinstance(next(iter(known)), tuple):
            # A recovery snapshot from before one entry per contact: (contact, timer) -> due.
            per_contact: dict[str, int] = {}
            for (cid, _), due in known.items():
                if due < per_contact.get(cid, due + 1):
                    per_contact[cid] = due
            known = per_contact
        self.__init__()  # type: ignore[misc]
        self._known = dict(known)
        for cid, due in self._known.items():
            self._queue(due, cid)


def advance_in_time(
    buffer: ReorderBuffer,
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
            pending: dict[str, int] = contact.timers
            # The earliest (due, name), in a loop: min() over a generator is a generic call.
            actual, key, first = 0, "", True
            for name, at in pending.items():
                if first or at < actual or (at == actual and name < key):
                    actual, key, first = at, name, False
            if actual <= due:
                fire(contact, key, actual)
            timers.sync(cid, pending)  # the next timer, or the one that moved later
        else:
            break
