"""The decode step's router: which shard gets each event, and when a partition proposes a snapshot cut."""

from __future__ import annotations

import orjson
import pytest

from engine.ordering import watermark_for
from engine.timeutil import format_ms
from flows.router import CUT_EVERY_LINES, Router
from flows.sources import SourceBatch

LATENESS_MS = 5_000
T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z


def _batch(part: str, first: int, n: int) -> SourceBatch:
    """``n`` page views of one partition, one second apart, numbered from ``first``."""
    lines = []
    for i in range(first, first + n):
        lines.append(orjson.dumps({"type": "page", "anonymousId": f"a{i % 7}", "messageId": f"{part}-{i}",
                                   "timestamp": format_ms(T0 + i * 1000)}))
    return SourceBatch(part, first + 1, part, lines)


@pytest.mark.parametrize(
    ("cut_lines", "batches", "cut_after"),
    [
        (5, [2, 2, 2, 2, 2, 2], [False, False, True, False, False, True]),  # 6 lines reach 5: cut, count anew
        (4, [4, 1, 3], [True, False, True]),
        (None, [2, 2, 2, 2, 2, 2], [False] * 6),  # by time only (the interval here is an hour)
    ],
    ids=["every-5-lines", "exactly-4", "time-only"],
)
def test_a_partition_proposes_a_cut_after_so_many_lines(cut_lines: int | None, batches: list[int],
                                                        cut_after: list[bool]) -> None:
    """Besides every cut interval, a partition proposes a cut once it read ``cut_lines`` lines since its last one."""
    router = Router(4, LATENESS_MS, 3600.0, cut_lines=cut_lines)
    first, got = 0, []
    for n in batches:
        packets = [p for _, p in router.route(_batch("f", first, n))]
        first += n
        cuts = {p.cut for p in packets}
        assert len(cuts) == 1  # every packet of a batch carries the same cut
        cut = cuts.pop()
        got.append(cut is not None)
        if cut is not None:
            # The partition's watermark so far: no shard can have passed it yet.
            assert cut == watermark_for(T0 + (first - 1) * 1000, LATENESS_MS)
            assert len(packets) == 4  # a cut reaches every shard
    assert got == cut_after


def test_partitions_count_their_own_lines() -> None:
    """Lines of one input do not bring another input's cut closer."""
    router = Router(2, LATENESS_MS, 3600.0, cut_lines=3)
    assert router.route(_batch("a", 0, 2))[0][1].cut is None
    assert router.route(_batch("b", 0, 2))[0][1].cut is None
    assert router.route(_batch("a", 2, 1))[0][1].cut is not None
    assert router.route(_batch("b", 2, 1))[0][1].cut is not None


def test_the_default_bounds_what_waits_for_a_cut() -> None:
    """Runs cut by line count unless told otherwise; the default is a few seconds of a fast replay."""
    assert 10_000 <= CUT_EVERY_LINES <= 100_000
    assert Router(4, LATENESS_MS, 5.0).cut_lines == CUT_EVERY_LINES


def test_lines_the_source_rejected_are_dead_lettered_as_it_said() -> None:
    """A judged line is not decoded, even when its bytes would decode: its reason and detail stand, at its position."""
    batch = _batch("f", 0, 3)
    batch.judged = {1: ("too_large", "2000000 bytes; the limit is 32768")}
    packets = [p for _, p in Router(1, LATENESS_MS, 3600.0).route(batch)]
    events = [e.message_id for p in packets for e in p.events]
    rejections = [(r.reason, r.detail, r.raw, r.source) for p in packets for r in p.rejections]
    assert events == ["f-0", "f-2"]
    assert rejections == [("too_large", "2000000 bytes; the limit is 32768", batch.lines[1].decode(), "f:2")]
