"""The harness runs a second pair of `standard` runs only when it can finish them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from benchmarks.run import Clock, second_pair


def _call(first_pair: dict[str, Any], budget_s: float) -> tuple[list[str], dict[str, str]]:
    ran: list[str] = []
    skipped: dict[str, str] = {}

    def timed(step: str, fn: Callable[[], Any]) -> None:
        ran.append(step)  # the runs themselves are not started here

    R = {"runs": first_pair, "skipped": skipped}
    second_pair(R, Path("standard.jsonl"), Path("config.toml"), Clock(budget_s), timed,
                lambda step, why: skipped.__setitem__(step, why))
    return ran, skipped


_ONE = {"events_per_s": 20_000.0, "lines_read": 1_000_000}  # 50 s
_TWO = {"events_per_s": 40_000.0, "lines_read": 1_000_000}  # 25 s


def test_second_pair_runs_when_the_budget_allows() -> None:
    """1.25 x (50 + 25) s + 30 s = 124 s: with 200 s left both runs start, 1 process first."""
    ran, skipped = _call({"standard": _ONE, "standard_2p": _TWO}, budget_s=200)
    assert ran == ["standard_again", "standard_2p_again"]
    assert skipped == {}


@pytest.mark.parametrize(
    ("first_pair", "budget_s", "why"),
    [
        ({"standard": _ONE, "standard_2p": _TWO}, 100, "budget: 100 s left, a second pair needs about 124 s"),
        ({"standard": _ONE, "standard_2p": {**_TWO, "truncated_by_budget": True}}, 1000,
         "the first pair did not complete"),
        ({"standard": _ONE}, 1000, "the first pair did not complete"),
    ],
)
def test_second_pair_is_skipped_with_a_reason(first_pair: dict[str, Any], budget_s: float, why: str) -> None:
    """No time, or no complete first pair to repeat: nothing runs and the report learns why."""
    ran, skipped = _call(first_pair, budget_s)
    assert ran == []
    assert skipped == {"standard_pair_2": why}
