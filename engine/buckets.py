"""Items grouped by coarse event time, handed back a whole bucket at a time, earliest first.

The timer queue and the dedupe window both keep one entry per contact or id for as
long as a shard runs. A list slot per item in a bucket costs 8 bytes, where a heap or
queue of (time, item) tuples costs about 90 more; their users only ever need the
earliest bucket.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any


class TimeBuckets:
    """Items in buckets of ``width`` ms of event time; the earliest bucket comes off first."""

    __slots__ = ("width", "lists", "_keys")

    def __init__(self, width: int, lists: dict[int, list[Any]] | None = None) -> None:
        self.width = width
        self.lists: dict[int, list[Any]] = {} if lists is None else lists  # bucket number -> items
        self._keys = sorted(self.lists)  # heap of the bucket numbers; a sorted list is one

    def add(self, t: int, item: Any) -> None:
        """File ``item`` under the bucket of time ``t``."""
        bucket = t // self.width
        listed = self.lists.get(bucket)
        if listed is None:
            listed = self.lists[bucket] = []
            heappush(self._keys, bucket)
        listed.append(item)

    def first(self) -> int | None:
        """The earliest bucket's number, if any."""
        return self._keys[0] if self._keys else None

    def pop_first(self) -> tuple[int, list[Any]]:
        """Remove and return the earliest bucket: (its number, its items in filing order)."""
        bucket = heappop(self._keys)
        return bucket, self.lists.pop(bucket)
