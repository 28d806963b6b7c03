"""Duplicate detection by messageId over a bounded event-time window."""

from __future__ import annotations

from typing import Any, Final
from zlib import crc32

from .buckets import TimeBuckets

# Ids are kept in ten-minute buckets of their event time and forgotten a bucket at a
# time: a dict entry (keys only: a set's table, kept at most 60% full, took more) and a
# list slot per id, besides the id itself. A dict of id -> time plus a queue of
# (time, id) tuples took about 90 bytes more per id.
BUCKET_MS: Final = 600_000


# Restored from state that kept no device marks: a repeat on any device, as before marks.
_ANY: Final = -1


def _mark(device: str) -> int:
    """A small fingerprint of a device id, the same in every process (0-255: small ints cost a dict slot nothing)."""
    return crc32(device.encode("utf-8", "surrogatepass")) & 0xFF if device else 0


class Deduper:
    """Remembers messageIds for ``window_ms`` of event time and recognizes repeats.

    A repeat is the same messageId from the same device: the device decides the shard, so
    what counts as a repeat does not depend on how many shards there are (an id shared by
    two devices, a tracker's bug, would otherwise be a repeat only where both landed in one
    shard). Each id keeps a one-byte mark of its device; an id seen again from a device of
    another mark is remembered as (id, mark). Marks of two devices can coincide, and then
    the later one's event counts as a repeat, as every one did before marks.

    Memory stays bounded: ids older than the window behind the watermark are
    forgotten, so a duplicate that arrives more than a window late is applied again
    (Segment's own dedupe has the same horizon). An id is forgotten with its bucket,
    once every event time the bucket covers is beyond the window: up to ten minutes later
    than its own time alone would allow.
    """

    __slots__ = ("window_ms", "_seen", "_buckets")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: dict[Any, int] = {}  # id (or (id, mark)) -> its device's mark
        self._buckets = TimeBuckets(BUCKET_MS)  # keys by the time they were first seen with

    def __len__(self) -> int:
        return len(self._seen)

    def known(self, message_id: str, device: str = "") -> bool:
        """True when ``message_id`` from ``device`` is remembered; remembers nothing."""
        mark = self._seen.get(message_id)
        if mark is None:
            return False
        ours = _mark(device)
        return mark == ours or mark == _ANY or (message_id, ours) in self._seen

    def seen(self, message_id: str, ts: int, device: str = "") -> bool:
        """Return True for a repeat; otherwise remember the id and return False."""
        seen = self._seen
        ours = _mark(device)
        mark = seen.get(message_id)
        if mark is None:
            seen[message_id] = ours
            self._buckets.add(ts, message_id)
            return False
        if mark == ours or mark == _ANY:
            return True
        key = (message_id, ours)
        if key in seen:
            return True
        seen[key] = ours
        self._buckets.add(ts, key)
        return False

    def expire(self, watermark: int) -> None:
        """Forget ids whose events lie more than the window behind the watermark."""
        horizon = watermark - self.window_ms
        buckets, seen = self._buckets, self._seen
        while (first := buckets.first()) is not None and (first + 1) * BUCKET_MS <= horizon:
            for key in buckets.pop_first()[1]:
                del seen[key]

    def __getstate__(self) -> tuple[Any, ...]:
        # The buckets hold the keys; the marks ride along (pickle writes each key once).
        return (self.window_ms, self._buckets.lists, self._seen, 2)

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the constructor: compiled classes cannot be made with __new__ alone.
        return (Deduper, (self.window_ms,), self.__getstate__())

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        marks: dict[Any, int] | None = None
        if len(state) == 4:
            window_ms, buckets, marks, _ = state
        elif len(state) == 3:  # before buckets: (window_ms, id -> ts, queue of (ts, id))
            window_ms, by_id, _ = state
            buckets = {}
            for mid, ts in by_id.items():
                buckets.setdefault(ts // BUCKET_MS, []).append(mid)
        else:  # buckets without device marks
            window_ms, buckets = state
        self.window_ms, self._buckets = window_ms, TimeBuckets(BUCKET_MS, buckets)
        self._seen = marks if marks is not None else {mid: _ANY for ids in buckets.values() for mid in ids}
