"""Duplicate detection: repeats within the window are recognized, ids beyond it forgotten a bucket at a time."""

from __future__ import annotations

import pickle
from collections import deque

import pytest

from engine.dedupe import BUCKET_MS, Deduper, _mark

HOUR = 3_600_000
MARKS = [76, 218, 78]  # of anon-0, anon-1 and user-123: crc32's low byte
COLLIDING = "anon-65"  # a device whose mark is anon-0's
T0 = 1_700_000_000_000 // BUCKET_MS * BUCKET_MS  # a bucket boundary


@pytest.mark.parametrize(
    ("title", "first_ts", "watermark", "repeat"),
    [
        ("within the window", T0, T0 + HOUR, True),
        ("exactly a window behind: the bucket is not wholly beyond yet", T0, T0 + HOUR + BUCKET_MS - 1, True),
        ("its bucket wholly beyond the window: forgotten", T0, T0 + HOUR + BUCKET_MS, False),
        ("late in its bucket: kept until the bucket's end passes", T0 + BUCKET_MS - 1, T0 + HOUR + BUCKET_MS - 1, True),
    ],
)
def test_repeats_and_expiry(title: str, first_ts: int, watermark: int, repeat: bool) -> None:
    """A repeat is recognized until the whole bucket of its first event time lies beyond the window."""
    d = Deduper(HOUR)
    assert d.seen("m1", first_ts) is False
    d.expire(watermark)
    assert d.seen("m1", watermark) is repeat, title


def test_expiry_forgets_old_ids_whatever_their_arrival_order() -> None:
    """An old id that arrives after newer ones is still forgotten on time; newer ids stay."""
    d = Deduper(HOUR)
    for i in range(100):
        assert not d.seen(f"new-{i}", T0 + 2 * HOUR + i)
    assert not d.seen("old", T0)
    d.expire(T0 + HOUR + BUCKET_MS)
    assert len(d) == 100 and not d.seen("old", T0 + 3 * HOUR) and d.seen("new-5", T0)


def test_state_round_trips_and_old_state_restores() -> None:
    """Pickled state restores equal; state from before buckets (dict + queue) restores the same ids."""
    d = Deduper(HOUR)
    for i in range(50):
        d.seen(f"m{i}", T0 + i * BUCKET_MS // 3)
    back = pickle.loads(pickle.dumps(d))
    assert back.__getstate__() == d.__getstate__() and len(back) == 50 and back.seen("m7", T0)
    old = Deduper(HOUR)  # how pickle rebuilds it (__reduce__), then the old state
    old.__setstate__((HOUR, {"a": T0, "b": T0 + 2 * HOUR}, deque([(T0, "a"), (T0 + 2 * HOUR, "b")])))
    assert len(old) == 2 and old.seen("a", T0)
    old.expire(T0 + HOUR + BUCKET_MS)
    assert len(old) == 1 and not old.seen("a", T0) and old.seen("b", T0)


def test_marks_are_stable_and_spread() -> None:
    """A device's mark is fixed (it is in recovery state) and sequential ids do not share a few marks."""
    assert [_mark(d) for d in ("", "anon-0", "anon-1", "user-123")] == [0, *MARKS]
    assert len({_mark(f"user-{n}") for n in range(1000)}) == 256


@pytest.mark.parametrize(("title", "first", "again", "repeat"), [
    ("same device", "anon-1", "anon-1", True),
    ("another device", "anon-1", "anon-2", False),
    ("devices of one mark (a collision): counted as a repeat", "anon-0", COLLIDING, True),
    ("no device given either time", "", "", True),
])
def test_a_repeat_is_the_same_id_from_the_same_device(title: str, first: str, again: str, repeat: bool) -> None:
    """An id from a device of another mark is a different event, remembered under (id, mark)."""
    d = Deduper(HOUR)
    assert d.seen("m1", T0, first) is False
    assert d.known("m1", again) is repeat, title
    assert d.seen("m1", T0, again) is repeat, title
    assert d.known("m1", again) and d.seen("m1", T0, again), title
    assert len(d) == (1 if repeat else 2)
    d.expire(T0 + HOUR + BUCKET_MS)
    assert len(d) == 0 and not d.known("m1", first)


def test_state_without_device_marks_counts_repeats_from_any_device() -> None:
    """Recovery state written before marks restores its ids as repeats on every device, as they were."""
    d = Deduper(HOUR)
    d.__setstate__((HOUR, {T0 // BUCKET_MS: ["m1"]}))
    assert d.known("m1", "anon-9") and d.seen("m1", T0, "anon-7")
    assert not d.seen("m2", T0, "anon-7") and d.known("m2", "anon-7") and not d.known("m2", "anon-8")
    back = pickle.loads(pickle.dumps(d))
    assert back.__getstate__() == d.__getstate__() and back.known("m1", "x") and not back.known("m2", "anon-8")
