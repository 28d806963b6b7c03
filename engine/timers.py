"""A shard's timer service (Flink's, in miniature): one heap of (due, contact, timer) per shard.

Contacts own their timers (``ContactState.timers``); the queue only remembers what to
wake up when. A timer that was moved or cancelled leaves a stale heap entry behind,
which is skipped when it surfaces.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any


class TimerQueue:
    """Due times of every timer of every contact in one shard, earliest first."""

    __slots__ = ("_heap", "_known")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str]] = []
        self._known: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._known)

    def sync(self, contact_id: str, timers: dict[str, int]) -> None:
        """Take note of a contact's timers after the engine touched it."""
        known, heap = self._known, self._heap
        for key, due in timers.items():
            if known.get((contact_id, key)) != due:
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
