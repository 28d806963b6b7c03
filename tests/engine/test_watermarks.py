"""Source watermarks: the minimum over partitions, and idle partitions that follow the wall clock."""

from __future__ import annotations

import pytest

from engine.ordering import NEVER, ReorderBuffer
from engine.watermarks import SourceClock

LATENESS = 5_000


@pytest.mark.parametrize("idle_ms, expected", [
    (0, 100_000 - LATENESS - 1),
    (200, 100_200 - LATENESS - 1),
    (3_000, 103_000 - LATENESS - 1),
    (60_000, 160_000 - LATENESS - 1),
])
def test_an_idle_partition_extrapolates_its_event_time_and_keeps_the_lateness(idle_ms: int, expected: int) -> None:
    """Idle for N ms, a partition's watermark is where N ms more of events would have put it."""
    clock = SourceClock(("a",), LATENESS)
    clock.observe("a", 100_000, idle_ms=idle_ms)
    assert clock.watermark() == expected


def test_an_event_after_a_pause_but_within_the_lateness_is_on_time() -> None:
    """A short pause does not make an event late that arrives within the allowed lateness (P1)."""
    clock, buffer = SourceClock(("a",), LATENESS), ReorderBuffer()
    clock.observe("a", 100_000)
    clock.observe("a", 100_000, idle_ms=1_000)  # a second without data
    buffer.advance_to(clock.watermark())
    assert not buffer.is_late(97_000)  # 3 s older than the newest event: still on time
    assert buffer.is_late(95_000)


def test_new_data_never_moves_an_idle_watermark_back() -> None:
    """Data after a long pause may be older than the extrapolated time; the watermark holds."""
    clock = SourceClock(("a", "b"), LATENESS)
    clock.observe("a", 100_000, idle_ms=20_000)
    clock.observe("b", 200_000)
    held = clock.watermark()
    assert held == 120_000 - LATENESS - 1
    clock.observe("a", 101_000)  # data again: idle 0, but the floor keeps the watermark
    assert clock.watermark() == held
    assert SourceClock(("a",), LATENESS).watermark() == NEVER


@pytest.mark.parametrize(("title", "first_complete", "new_max", "expected"), [
    ("resumed after the end, only older data: just past the old end", True, 50_000, 100_001),
    ("resumed after the end, newer data: the newest event time", True, 150_000, 150_000),
    ("resumed mid-run: the end as without the resume", False, 50_000, 100_000),
])
def test_the_end_of_a_resumed_run(title: str, first_complete: bool, new_max: int, expected: int) -> None:
    """A run resumed from a state that had ended ends past that end, so late lines it read are applied."""
    clock = SourceClock(("a",), LATENESS)
    clock.observe("a", 100_000, eof=first_complete)
    clock.restart(("a", "b"))
    clock.observe("a", 100_000, eof=True)
    clock.observe("b", new_max, eof=True)
    assert clock.watermark() == expected, title


def test_the_end_of_a_followed_input_is_not_behind_where_idle_partitions_took_it() -> None:
    """Stopped after a quiet spell, a followed input ends where its idle watermark had got to, not at its newest
    event: the shards had already passed that, and a final cut behind them never completed the last snapshot."""
    clock = SourceClock(("a", "b"), LATENESS)
    clock.observe("a", 100_000)
    clock.observe("b", 90_000)
    clock.observe("a", 100_000, idle_ms=30_000)
    clock.observe("b", 90_000, idle_ms=30_000)
    reached = clock.watermark()
    assert reached == 120_000 - LATENESS - 1
    clock.observe("a", 100_000, eof=True)
    clock.observe("b", 90_000, eof=True)
    assert clock.complete and clock.watermark() == 130_000 - LATENESS - 1  # the farthest partition's
    # Without idle ticks (a replay) the end is the newest event, as before.
    replay = SourceClock(("a",), LATENESS)
    replay.observe("a", 100_000, eof=True)
    assert replay.watermark() == 100_000
