"""Duplicate detection by messageId over a bounded event-time window."""

from __future__ import annotations

from typing import Any, Final

from .buckets import TimeBuckets

# Ids are kept in ten-minute buckets of their event time and forgotten a bucket at a
# time: a dict entry (keys only: a set's table, kept at most 60% full, took more) and a
# list slot per id, besides the id itself. A dict of id -> time plus a queue of
# (time, id) tuples took about 90 bytes more per id.
BUCKET_MS: Final = 600_000


class Deduper:
    """Remembers messageIds for ``window_ms`` of event time and recognizes repeats.

    Memory stays bounded: ids older than the window behind the watermark are
    forgotten, so a duplicate that arrives more than a window late is applied again
    (Segment's own dedupe has the same horizon). An id is forgotten with its bucket,
    once every event time the bucket covers is beyond the window: up to ten minutes later
    than its own time alone would allow.
    """

    __slots__ = ("window_ms", "_seen", "_buckets")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: dict[str, None] = {}  # the ids remembered; values unused
        self._buckets = TimeBuckets(BUCKET_MS)  # ids by the time they were first seen with

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, message_id: str, ts: int) -> bool:
        """Return True for a repeat; otherwise remember the id and return False."""
        if message_id in self._seen:
            return True
        self._seen[message_id] = None
        self._buckets.add(ts, message_id)
        return False

    def expire(self, watermark: int) -> None:
        """Forget ids whose events lie more than the window behind the watermark."""
        horizon = watermark - self.window_ms
        buckets, seen = self._buckets, self._seen
        while (first := buckets.first()) is not None and (first + 1) * BUCKET_MS <= horizon:
            for mid in buckets.pop_first()[1]:
                del seen[mid]

    def __getstate__(self) -> tuple[Any, ...]:
        # The buckets are the whole state: the id dict is rebuilt from them.
        return (self.window_ms, self._buckets.lists)

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the constructor: compiled classes cannot be made with __new__ alone.
        return (Deduper, (self.window_ms,), self.__getstate__())

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if len(state) == 3:  # before buckets: (window_ms, id -> ts, queue of (ts, id))
            window_ms, by_id, _ = state
            buckets: dict[int, list[str]] = {}
            for mid, ts in by_id.items():
                buckets.setdefault(ts // BUCKET_MS, []).append(mid)
        else:
            window_ms, buckets = state
        self.window_ms, self._buckets = window_ms, TimeBuckets(BUCKET_MS, buckets)
        self._seen = {mid: None for ids in buckets.values() for mid in ids}
