"""The timer queue: one entry per contact, timers fire in (due, contact, name) order between events."""

from __future__ import annotations

import heapq
import pickle
import random
from typing import Any

import pytest

from engine.ordering import ReorderBuffer
from engine.timers import BUCKET_MS, TimerQueue, advance_in_time


class _Contact:
    def __init__(self, cid: str, timers: dict[str, int]) -> None:
        self.contact_id, self.timers = cid, dict(timers)


def _run(contacts: dict[str, _Contact], events: list[tuple[int, str]], watermark: int,
         on_fire: Any = None) -> list[tuple[str, ...]]:
    """Advance to ``watermark``; return what happened, in order: ("event", id) and ("fire", cid, key, due)."""
    queue, buffer, log = TimerQueue(), ReorderBuffer(), []
    for cid, c in contacts.items():
        queue.sync(cid, c.timers)
    for ts, mid in events:
        buffer.push(ts, mid, 0, mid)

    def fire(c: _Contact, key: str, due: int) -> None:
        assert c.timers.pop(key) == due
        log.append(("fire", c.contact_id, key, due))
        if on_fire is not None:
            on_fire(c, key, due)

    advance_in_time(buffer, queue, watermark, contacts, lambda mid: log.append(("event", mid)), fire)
    return log


def test_timers_fire_in_due_contact_name_order_after_events_of_the_same_instant() -> None:
    """Equal dues fire by contact id, then timer name; an event at a timer's instant goes first."""
    contacts = {"b": _Contact("b", {"decay": 20, "window": 10}), "a": _Contact("a", {"wf:x": 20, "decay": 20})}
    log = _run(contacts, [(20, "e1"), (5, "e0")], watermark=25)
    assert log == [("event", "e0"), ("fire", "b", "window", 10), ("event", "e1"), ("fire", "a", "decay", 20),
                   ("fire", "a", "wf:x", 20), ("fire", "b", "decay", 20)]


def test_moved_and_cancelled_timers() -> None:
    """A timer moved later fires at its new time, a cancelled one never, nothing fires past the watermark."""
    contacts = {"a": _Contact("a", {"decay": 10}), "b": _Contact("b", {"decay": 12})}
    queue, buffer, fired = TimerQueue(), ReorderBuffer(), []
    for cid, c in contacts.items():
        queue.sync(cid, c.timers)
    contacts["a"].timers["decay"] = 30  # moved later: the queue keeps its entry at 10
    queue.sync("a", contacts["a"].timers)
    del contacts["b"].timers["decay"]  # cancelled

    def fire(c: _Contact, key: str, due: int) -> None:
        fired.append((c.contact_id, key, due))
        del c.timers[key]

    advance_in_time(buffer, queue, 29, contacts, lambda _: None, fire)
    assert fired == [] and len(queue) == 1  # a is queued again for 30
    advance_in_time(buffer, queue, 30, contacts, lambda _: None, fire)
    assert fired == [("a", "decay", 30)] and len(queue) == 0


def test_a_fired_timer_can_set_the_next_one() -> None:
    """What a timer schedules (the next workflow wait) fires in the same advance when it is due."""
    contacts = {"a": _Contact("a", {"wf:w": 5})}

    def chain(c: _Contact, key: str, due: int) -> None:
        if due < 15:
            c.timers[key] = due + 5

    log = _run(contacts, [], watermark=16, on_fire=chain)
    assert log == [("fire", "a", "wf:w", 5), ("fire", "a", "wf:w", 10), ("fire", "a", "wf:w", 15)]


def _entries(queue: TimerQueue) -> int:
    return sum(map(len, queue._buckets.lists.values())) + len(queue._open)


def test_one_entry_per_contact() -> None:
    """Three timers of one contact take one queue entry; moving them later adds none."""
    queue = TimerQueue()
    queue.sync("a", {"decay": 50, "window": 40, "wf:x": 60})
    queue.sync("a", {"decay": 70, "window": 80, "wf:x": 90})
    assert len(queue) == 1 and _entries(queue) == 1 and queue.next_due() == 40
    queue.sync("a", {"decay": 30})
    assert queue.next_due() == 30 and len(queue) == 1


@pytest.mark.parametrize("state", [
    ([(40, "a", "window"), (50, "a", "decay"), (45, "b", "decay")], {("a", "window"): 40, ("a", "decay"): 50,
                                                                     ("b", "decay"): 45}),
])
def test_state_of_the_per_timer_format_still_restores(state: tuple[Any, ...]) -> None:
    """A recovery snapshot written with one entry per timer restores as one entry per contact."""
    queue = TimerQueue.__new__(TimerQueue)
    queue.__setstate__(state)
    assert queue._known == {"a": 40, "b": 45} and queue.pop() == (40, "a") and queue.pop() == (45, "b")
    back = pickle.loads(pickle.dumps(queue))
    assert len(back) == 0 and back.next_due() is None and _entries(back) == 0


class _HeapQueue:
    """The reference: one heap of (due, contact) with stale entries, as the queue was first written."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, str]] = []
        self.known: dict[str, int] = {}

    def sync(self, cid: str, timers: dict[str, int]) -> None:
        due = min(timers.values())
        if cid not in self.known or due < self.known[cid]:
            self.known[cid] = due
            heapq.heappush(self.heap, (due, cid))

    def pop_live(self) -> tuple[int, str] | None:
        while self.heap:
            due, cid = heapq.heappop(self.heap)
            if self.known.get(cid) == due:
                del self.known[cid]
                return due, cid
        return None


@pytest.mark.parametrize("seed", range(6))
def test_buckets_pop_in_the_order_of_one_heap(seed: int) -> None:
    """Random syncs (earlier, later, across buckets) and pops, with pickling between: same order as a heap."""
    rng = random.Random(seed)
    queue, ref = TimerQueue(), _HeapQueue()
    span = 6 * BUCKET_MS
    for step in range(3000):
        if rng.random() < 0.6:
            cid, due = f"c{rng.randrange(300)}", rng.randrange(span) + step * 50
            timers = {"t": due}
            queue.sync(cid, timers)
            ref.sync(cid, timers)
        else:
            want = ref.pop_live()
            assert (queue.pop() if len(queue) else None) == want
        if step % 700 == 0:
            queue = pickle.loads(pickle.dumps(queue))
        assert len(queue) == len(ref.known)
    while (want := ref.pop_live()) is not None:
        assert queue.pop() == want
    assert len(queue) == 0 and queue.next_due() is None
