"""Watermarks and snapshot cuts, as plain logic over the ticks that travel with the data.

Every shard keeps its own copy of these trackers and feeds them the same ticks, so all
shards agree on the watermark's values without talking to each other. Time arrives
as data (event times, idle durations); nothing here reads a clock.
"""

from __future__ import annotations

from bisect import insort

from .ordering import NEVER, watermark_for


class SourceClock:
    """The watermark implied by every source partition: the minimum of their own.

    A partition's own watermark is its newest event time minus the allowed lateness.
    A followed partition that has gone idle extrapolates its event time by the idle
    wall time, as if it kept sending events stamped "now", so idle streams still fire
    timers. The lateness still applies: an event that arrives after a pause, but within
    the allowed lateness of the newest one, is on time, as it would be without the pause;
    and a pause does not release the last lateness' worth of events at once.
    A partition at end of input no longer holds anything back; once every partition
    has ended, the watermark is the newest event time of all: everything read is
    applied, and timers due later stay pending, as they would in a live run. A run resumed
    from a state that had reached its end ends at least a millisecond past that end: lines
    it reads behind it are late, placed just past it, and must be applied too.
    """

    __slots__ = ("parts", "lateness_ms", "maxima", "idle", "ended", "floors", "resumed_at")

    def __init__(self, parts: tuple[str, ...], lateness_ms: int) -> None:
        self.parts = parts
        self.lateness_ms = lateness_ms
        self.maxima: dict[str, int] = {}
        self.idle: dict[str, int] = {}
        self.ended: set[str] = set()
        # A partition's watermark never goes back, even when new data ends its idleness.
        self.floors: dict[str, int] = {}
        self.resumed_at = NEVER  # the end the restored state had reached, if it had

    def restart(self, parts: tuple[str, ...]) -> None:
        """Resume with this run's partitions; every partition must report its end again."""
        self.resumed_at = self.watermark() if self.complete else NEVER
        self.parts = parts
        self.ended = set()

    def observe(self, part: str, max_ts: int, idle_ms: int = 0, eof: bool = False) -> None:
        """Record a tick from a partition: its newest event time, idle time, end of input."""
        if max_ts > self.maxima.get(part, NEVER):
            self.maxima[part] = max_ts
        self.idle[part] = idle_ms
        if eof:
            self.ended.add(part)
        mark = self._computed(part)
        if mark is not None and mark > self.floors.get(part, NEVER):
            self.floors[part] = mark

    @property
    def complete(self) -> bool:
        """True once every partition has reached the end of its input."""
        return all(p in self.ended for p in self.parts)

    def own_watermark(self, part: str) -> int | None:
        """One partition's watermark, or None when it does not constrain (ended, or idle without data)."""
        if part in self.ended:
            return None
        mark = self._computed(part)
        floor = self.floors.get(part)
        if mark is None or floor is None:
            return mark
        return max(mark, floor)

    def _computed(self, part: str) -> int | None:
        newest = self.maxima.get(part)
        idle = self.idle.get(part, 0)
        if newest is None:
            return None if idle > 0 else NEVER
        wm = watermark_for(newest, self.lateness_ms)
        if idle > 0:
            wm = watermark_for(newest + idle, self.lateness_ms)
        return wm

    def watermark(self) -> int:
        """The minimum over all partitions of their own watermark (see the class doc for the end)."""
        if self.complete:
            end = max((self.maxima[p] for p in self.parts if p in self.maxima), default=NEVER)
            # Idle partitions of a followed input carry the watermark past their newest event,
            # and the shards with it: the end is never behind a watermark any partition reached.
            # (It was the newest event, and a stage past it gave its final cut another time
            # than its downstream stage gave, so the final snapshot never completed.) The
            # floors come from the ticks alone, so every shard ends at the same time.
            end = max(end, max(self.floors.values(), default=NEVER))
            resumed_at = self.resumed_at
            return resumed_at + 1 if resumed_at != NEVER and end <= resumed_at else end
        marks = [m for m in (self.own_watermark(p) for p in self.parts) if m is not None]
        return min(marks) if marks else NEVER


class UpstreamClock:
    """The watermark of a downstream stage: the minimum over every upstream shard's progress."""

    __slots__ = ("upstream", "marks", "finished")

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.marks: dict[int, int] = {}
        self.finished: set[int] = set()

    def observe(self, shard: int, watermark: int, final: bool = False) -> None:
        """Record how far one upstream shard has applied everything, and whether its input ended."""
        if watermark > self.marks.get(shard, NEVER):
            self.marks[shard] = watermark
        if final:
            self.finished.add(shard)

    @property
    def complete(self) -> bool:
        """True once every upstream shard has reported the end of its input."""
        return len(self.finished) >= self.upstream

    def restart(self) -> None:
        """Forget end-of-input reports: a resumed run reads (and ends) again."""
        self.finished = set()

    def watermark(self) -> int:
        """Everything at or before this time has arrived from every upstream shard."""
        if len(self.marks) < self.upstream:
            return NEVER
        return min(self.marks.values())


class CutQueue:
    """Snapshot cuts a shard has heard of and not yet passed, in time order.

    A cut is a watermark value at which every shard exports its state. Because a cut
    always travels ahead of any tick that could move a shard past it, every shard
    exports at exactly the same cut and the warehouse snapshot is consistent.
    """

    __slots__ = ("pending", "passed")

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.passed = NEVER

    def add(self, cut: int) -> None:
        """Register a cut; one at or before the last cut passed was exported already."""
        if cut > self.passed and cut not in self.pending:
            insort(self.pending, cut)

    def steps(self, watermark: int) -> list[tuple[int, bool]]:
        """Split an advance to ``watermark`` into steps: (target, is_cut), cuts first in order."""
        out: list[tuple[int, bool]] = []
        while self.pending and self.pending[0] <= watermark:
            cut = self.pending.pop(0)
            self.passed = cut
            out.append((cut, True))
        out.append((watermark, False))
        return out
