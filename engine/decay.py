"""Score decay: a continuous half-life, and/or a step after N days without activity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# How far past a threshold a decaying score is taken to have crossed it: the resolution
# that settled scores are rounded to (9 decimals).
PAST: Final = 1e-9


@dataclass(frozen=True)
class Decay:
    """How one scoring profile's points fade: ``score(t) = sum of points * 2^(-age/half_life)``,
    and/or times ``factor`` for every ``inactive_after`` without activity."""

    half_life_ms: int | None = None
    inactive_after_ms: int | None = None
    factor: float = 0.5

    def settle(self, value: float, at: int, now: int, last_activity: int | None, steps_done: int) -> tuple[float, int]:
        """Return (value at ``now``, inactivity steps applied so far) for a value last settled at ``at``."""
        moved = False
        if self.half_life_ms and now > at and value:
            value *= 2.0 ** (-(now - at) / self.half_life_ms)
            moved = True
        if self.inactive_after_ms and last_activity is not None:
            due = (now - last_activity) // self.inactive_after_ms
            if due > steps_done:  # steps_done is never negative, so a due below 0 never gets here
                value *= self.factor ** (due - steps_done)
                steps_done = due
                moved = True
        # Decay settles at every event and timer; rounding keeps the accumulated float
        # error of many small steps out of the points (45 halved is 22.5, not 22.4999...).
        # A whole number that did not move rounds to itself, and round() is a generic call
        # from compiled code (about 2,700 instructions): most events skip it.
        if not moved and -1e15 < value < 1e15 and value == int(value):
            return value, steps_done
        return round(value, 9), steps_done

    def next_step(self, last_activity: int | None, steps_done: int) -> int | None:
        """When the next inactivity step applies, if this profile has one."""
        if not self.inactive_after_ms or last_activity is None:
            return None
        return last_activity + (steps_done + 1) * self.inactive_after_ms

    def crossing(self, value: float, now: int, thresholds: tuple[float, ...]) -> int | None:
        """The first instant after ``now`` at which the half-life carries ``value`` past a threshold.

        Decay moves a score towards zero, so only thresholds between zero and the value
        can be crossed, the value's own included: a score of exactly 40 (whole points that
        sum to a band's minimum) leaves the band at the next instant. The instant aims
        ``PAST`` beyond the threshold and is rounded up, so that the value settled and
        rounded there (see ``settle``) is past the threshold: aimed at the threshold
        itself, a long half-life rounded back onto it and the crossing never came.
        """
        if not self.half_life_ms or not value:
            return None
        best = None
        for m in thresholds:
            if 0 < m <= value:
                target = m - PAST
            elif value <= m < 0:
                target = m + PAST
            else:
                continue
            if target == 0 or (target > 0) != (m > 0):
                continue  # a threshold within PAST of zero: decay never gets past it
            t = now + self.half_life_ms * math.log2(value / target)
            due = max(now + 1, math.floor(t) + 1)
            best = due if best is None else min(best, due)
        return best
