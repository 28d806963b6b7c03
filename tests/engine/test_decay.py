"""Score decay: settling gives what rounding every settled value would, with or without a step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.decay import PAST, Decay

DAY = 86_400_000


def _reference(decay: Decay, value: float, at: int, now: int, last_activity: int | None,
               steps_done: int) -> tuple[float, int]:
    """The rule as written before settle skipped rounding whole numbers: always round."""
    if decay.half_life_ms and now > at and value:
        value *= 2.0 ** (-(now - at) / decay.half_life_ms)
    if decay.inactive_after_ms and last_activity is not None:
        due = max(0, (now - last_activity) // decay.inactive_after_ms)
        if due > steps_done:
            value *= decay.factor ** (due - steps_done)
            steps_done = due
    return round(value, 9), steps_done


DECAYS = [Decay(inactive_after_ms=30 * DAY, factor=0.5), Decay(half_life_ms=7 * DAY),
          Decay(half_life_ms=3 * DAY, inactive_after_ms=10 * DAY, factor=0.8)]


@pytest.mark.parametrize("decay", DECAYS, ids=["inactivity", "half_life", "both"])
@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.integers(-10**6, 10**6).map(float), st.floats(-1e6, 1e6, allow_nan=False),
                       st.sampled_from([0.0, -0.0, 0.1 + 0.2, 22.5, 1e15, -1e15, 2.0**53])),
       gap=st.integers(-5 * DAY, 200 * DAY), idle=st.one_of(st.none(), st.integers(-DAY, 400 * DAY)),
       steps=st.integers(0, 12))
def test_settle_equals_rounding_every_value(decay: Decay, value: float, gap: int, idle: int | None,
                                            steps: int) -> None:
    """Skipping the rounding of an unmoved whole number changes no value, sign of zero included."""
    at, now = 1_700_000_000_000, 1_700_000_000_000 + gap
    last = None if idle is None else now - idle
    got = decay.settle(value, at, now, last, steps)
    want = _reference(decay, value, at, now, last, steps)
    assert got == want
    assert str(got[0]) == str(want[0])  # -0.0 stays -0.0, 0.30000000000000004 becomes 0.3


YEAR = 365 * DAY


@pytest.mark.parametrize("half_life", [DAY, 30 * DAY, 10 * YEAR, 100 * YEAR], ids=["1d", "30d", "10y", "100y"])
@pytest.mark.parametrize(("value", "threshold"), [(20.0, 20.0), (40.0, 40.0), (20.5, 20.0), (45.0, 30.0),
                                                  (-20.0, -20.0), (-25.0, -10.0), (0.3, 0.1)])
def test_settled_value_is_past_the_threshold_at_the_crossing(half_life: int, value: float,
                                                              threshold: float) -> None:
    """At the crossing the settled score is past the threshold, and one ms before it barely is.

    A score sitting exactly on a band's minimum leaves it at the next instant; aimed at
    the threshold itself, a long half-life rounded back onto it and no crossing came.
    """
    decay = Decay(half_life_ms=half_life)
    now = 1_700_000_000_000
    due = decay.crossing(value, now, (threshold,))
    assert due is not None and due > now
    after, _ = decay.settle(value, now, due, None, 0)
    assert abs(after) < abs(threshold)
    if due > now + 1:
        before, _ = decay.settle(value, now, due - 1, None, 0)
        assert abs(before) >= abs(threshold) - PAST  # at most a rounding step early
    # Settled there, the score is past the threshold: no crossing of it is scheduled again.
    assert decay.crossing(after, due, (threshold,)) is None


@pytest.mark.parametrize(("value", "thresholds"), [(10.0, (20.0,)), (10.0, (-5.0,)), (-10.0, (5.0,)),
                                                   (10.0, (0.0,)), (0.0, (1.0,))])
def test_no_crossing_for_thresholds_decay_cannot_reach(value: float, thresholds: tuple[float, ...]) -> None:
    """A threshold beyond the value, on the other side of zero, or zero itself is never crossed."""
    assert Decay(half_life_ms=DAY).crossing(value, 0, thresholds) is None
