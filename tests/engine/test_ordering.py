"""The reorder buffer: items leave in (time, messageId, rank, arrival) order, whatever the pushes' order."""

from __future__ import annotations

import pickle
import random
import weakref
from heapq import heappop, heappush
from typing import Any

import pytest

from engine.ordering import NEVER, ReorderBuffer


def _drain(buffer: ReorderBuffer, watermark: int) -> list[Any]:
    buffer.advance_to(watermark)
    out = []
    while (oldest := buffer.oldest()) is not None and oldest <= buffer.watermark:
        out.append(buffer.pop_ready())
    return out


@pytest.mark.parametrize("seed, spread, batch", [
    (1, 0, 50),  # in time order: every merge is an append
    (2, 5, 50),  # a little disorder within each batch
    (3, 500, 50),  # batches reaching far back into what is buffered
    (4, 50, 1),  # one item at a time
    (5, 3, 400),  # many equal times: the messageId and the rank decide
])
def test_items_leave_as_one_heap_would_release_them(seed: int, spread: int, batch: int) -> None:
    """Pushes, advances and snapshots interleaved give the order of a heap of the same keys."""
    rng = random.Random(seed)
    buffer, heap, seq = ReorderBuffer(), [], 0
    got: list[Any] = []
    expected: list[Any] = []
    now = 1_000
    for step in range(60):
        for _ in range(rng.randrange(batch + 1)):
            now += rng.randrange(3)
            ts = max(buffer.watermark + 1, now - rng.randrange(spread + 1))
            mid, rank = f"m{rng.randrange(40)}", rng.randrange(2)
            seq += 1
            buffer.push(ts, mid, rank, (ts, mid, rank, seq))
            heappush(heap, (ts, mid, rank, seq))
        if step % 7 == 3:
            buffer = pickle.loads(pickle.dumps(buffer))  # a recovery snapshot in the middle
        watermark = now - rng.randrange(spread + 2)
        got.extend(_drain(buffer, watermark))
        while heap and heap[0][0] <= buffer.watermark:  # the watermark never moves back
            expected.append(heappop(heap))
        assert len(buffer) == len(heap)
    got.extend(_drain(buffer, 2**62))
    while heap:
        expected.append(heappop(heap))
    assert got == expected
    assert len(got) == seq and len(buffer) == 0


def test_a_snapshot_of_the_heap_it_replaced_still_loads() -> None:
    """Recovery state written by the heap-based buffer (an unsorted heap list) resumes in order."""
    heap: list[tuple[int, str, int, int, Any]] = []
    for i, ts in enumerate([50, 10, 40, 10, 30, 20]):
        heappush(heap, (ts, f"m{i}", 1, i + 1, f"item{i}"))
    buffer = ReorderBuffer.__new__(ReorderBuffer)
    buffer.__setstate__((heap, 6, NEVER))
    buffer.push(25, "late-arrival", 1, "new")
    assert _drain(buffer, 100) == ["item1", "item3", "item5", "new", "item4", "item2", "item0"]


class _Item:
    """A stand-in for an event that a weak reference can watch."""


def test_a_handed_out_item_is_no_longer_held() -> None:
    """The buffer lets an item go when it hands it out: the caller's reference is the last one."""
    buf = ReorderBuffer()
    items = [_Item() for _ in range(3)]
    refs = [weakref.ref(item) for item in items]
    for ts, item in enumerate(items):
        buf.push(ts, f"m-{ts}", 0, item)
    del item, items
    buf.advance_to(1)
    assert buf.oldest() == 0
    got = buf.pop_ready()
    assert got is refs[0]()
    del got
    assert refs[0]() is None  # gone at once, not at the next merge
    assert refs[1]() is not None and refs[2]() is not None
    buf.push(5, "m-5", 0, _Item())  # the next merge drops what was handed out
    assert [e[0] for e in buf.entries()] == [1, 2, 5]
    assert len(buf) == 3


def test_take_ties_hands_out_the_items_that_share_the_popped_key() -> None:
    """After a pop, the items of the same (time, messageId, rank) come out together; the next key stays."""
    buffer = ReorderBuffer()
    for ts, mid, rank, item in [(5, "m", 1, "b"), (5, "m", 1, "a"), (5, "m", 2, "other rank"), (5, "n", 1, "next"),
                                (5, "m", 1, "c")]:
        buffer.push(ts, mid, rank, item)
    buffer.advance_to(10)
    assert buffer.oldest() == 5
    assert buffer.pop_ready() == "b"  # arrival order among ties
    assert buffer.take_ties(5, "m", 1) == ["a", "c"]
    assert buffer.take_ties(5, "m", 1) == []
    assert _drain(buffer, 10) == ["other rank", "next"]
    assert buffer.take_ties(5, "n", 1) == [] and len(buffer) == 0
