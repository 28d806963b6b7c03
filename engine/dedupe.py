"""Duplicate detection by messageId over a bounded event-time window."""

from __future__ import annotations

from collections import deque
from typing import Any


class Deduper:
    """Remembers messageIds for ``window_ms`` of event time and recognizes repeats.

    Memory stays bounded: ids older than the window behind the watermark are
    forgotten, so a duplicate that arrives more than a window late is applied again
    (Segment's own dedupe has the same horizon).
    """

    __slots__ = ("window_ms", "_seen", "_order")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, message_id: str, ts: int) -> bool:
        """Return True for a repeat; otherwise remember the id and return False."""
        if message_id in self._seen:
            return True
        self._seen[message_id] = ts
        self._order.append((ts, message_id))
        return False

    def expire(self, watermark: int) -> None:
        """Forget ids whose events lie more than the window behind the watermark."""
        horizon = watermark - self.window_ms
        order, seen = self._order, self._seen
        # Arrival order is nearly time order; stop at the first id still inside the window.
        while order and order[0][0] < horizon:
            _, mid = order.popleft()
            seen.pop(mid, None)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.window_ms, self._seen, self._order)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.window_ms, self._seen, self._order = state
