"""Duplicate detection: repeats within the window are recognized, ids beyond it forgotten a bucket at a time."""

from __future__ import annotations

import pickle
from collections import deque

import pytest

from engine.dedupe import BUCKET_MS, Deduper

HOUR = 3_600_000
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
