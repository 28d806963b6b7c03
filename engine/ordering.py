"""Event-time ordering: a buffer that releases items in (time, messageId) order once the watermark passes.

This is what makes results independent of arrival order within the allowed lateness (P1).
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any

NEVER = -(2**62)  # the watermark before anything was seen


def watermark_for(max_event_ms: int, allowed_lateness_ms: int) -> int:
    """Return the watermark for a partition that has seen events up to ``max_event_ms``.

    An event exactly ``allowed_lateness_ms`` behind the newest one is still on time.
    """
    return max_event_ms - allowed_lateness_ms - 1


class ReorderBuffer:
    """Holds items until the watermark passes their time, then hands them out sorted.

    Items carry a key ``(ts, message_id, rank)``; rank orders records that share one
    event (a merge before the event that caused it).
    """

    __slots__ = ("_heap", "_seq", "watermark")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, int, int, Any]] = []
        self._seq = 0
        self.watermark = NEVER

    def __len__(self) -> int:
        return len(self._heap)

    def is_late(self, ts: int) -> bool:
        """True when an item of time ``ts`` arrives after the watermark passed it."""
        return ts <= self.watermark

    def push(self, ts: int, message_id: str, rank: int, item: Any) -> None:
        """Buffer an on-time item."""
        self._seq += 1
        heappush(self._heap, (ts, message_id, rank, self._seq, item))

    def advance_to(self, watermark: int) -> None:
        """Move the watermark (never backwards); items up to it may then be popped one by one."""
        if watermark > self.watermark:
            self.watermark = watermark

    def pop_ready(self) -> Any:
        """Remove and return the oldest item the watermark has passed (check ``oldest`` first)."""
        return heappop(self._heap)[4]

    def oldest(self) -> int | None:
        """The event time of the oldest buffered item, if any."""
        return self._heap[0][0] if self._heap else None

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._heap, self._seq, self.watermark)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._heap, self._seq, self.watermark = state
