"""Time buckets: items filed by coarse time come back a whole bucket at a time, earliest first."""

from __future__ import annotations

from engine.buckets import TimeBuckets


def test_buckets_come_off_earliest_first_and_restore_from_their_lists() -> None:
    """Out-of-order filing still pops buckets in time order; a copy built from the lists pops the same."""
    b = TimeBuckets(10)
    for t, item in [(35, "d"), (3, "a"), (31, "c"), (9, "b"), (-4, "z")]:
        b.add(t, item)
    restored = TimeBuckets(10, {k: list(v) for k, v in b.lists.items()})
    for buckets in (b, restored):
        popped = []
        while buckets.first() is not None:
            popped.append(buckets.pop_first())
        assert popped == [(-1, ["z"]), (0, ["a", "b"]), (3, ["d", "c"])]
        assert buckets.lists == {}
