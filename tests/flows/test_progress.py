"""The run's progress counters and the worker's time by step."""

from __future__ import annotations

import time

import pytest

from flows.progress import PROGRESS, STEPS, Progress, step_shares, timed


@pytest.fixture(autouse=True)
def _fresh_progress():
    PROGRESS.reset()
    yield
    PROGRESS.reset()


def test_timed_counts_each_call_for_its_step_even_when_it_raises() -> None:
    """A decorated step adds its wall time per call; a call that fails still counts."""

    @timed("decode")
    def slow(x: int) -> int:
        time.sleep(0.02)
        if x < 0:
            raise ValueError("negative")
        return x * 2

    assert slow(3) == 6
    with pytest.raises(ValueError, match="negative"):
        slow(-1)
    spent = PROGRESS.steps()["decode"]
    assert 0.04 <= spent < 1.0


def test_steps_come_in_flow_order_and_unknown_steps_last() -> None:
    """The summary lists steps as the flow runs them; a step it does not know goes after, by name."""
    for step in ("gc", "warehouse", "zeta", "read", "alpha", "identity"):
        PROGRESS.add_time(step, 1.0)
    assert list(PROGRESS.steps()) == ["read", "identity", "warehouse", "gc", "alpha", "zeta"]
    assert set(STEPS) >= {"read", "decode", "identity", "contacts", "warehouse", "outputs", "gc"}


def test_reset_starts_a_new_run() -> None:
    """A second run in one process starts from zero: counters, step times and the rate's clock."""
    p = Progress()
    p.add_read("f", 100, 10)
    p.add_time("decode", 2.0)
    p.published("snapshot 1")
    before = p.started
    time.sleep(0.01)
    p.reset()
    assert (p.lines, p.snapshots, p.steps(), p.read_bytes) == (0, 0, {}, {})
    assert p.started > before


@pytest.mark.parametrize(
    ("steps", "elapsed", "expected"),
    [
        ({"decode": 1.0, "identity": 2.0}, 4.0, [("decode", 0.25), ("identity", 0.5), ("other", 0.25)]),
        ({"identity": 3.0}, 3.0, [("identity", 1.0), ("other", 0.0)]),
        # Clock granularity can make the steps add up to a hair more than the run: other stays at 0.
        ({"identity": 3.1}, 3.0, [("identity", 3.1 / 3.0), ("other", 0.0)]),
        ({}, 0.0, [("other", 0.0)]),
    ],
    ids=["rest-is-other", "all-claimed", "over-claimed", "empty-run"],
)
def test_step_shares(steps: dict[str, float], elapsed: float, expected: list[tuple[str, float]]) -> None:
    """Each step's share of the run, and "other" for what no step claims."""
    got = [(name, share) for name, _, share in step_shares(steps, elapsed)]
    assert [n for n, _ in got] == [n for n, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected])


def test_the_progress_line_shows_a_recent_rate_and_no_percent_past_the_files() -> None:
    """A followed input's rate is what it reads now, not the run's average falling while it is quiet; the percent
    of the files' sizes when opened is left out once a followed file grew past them (it showed 531 %)."""
    p = Progress()
    p.reset()
    start = p.started
    p.add_total("in.jsonl", 1000)
    p.add_read("in.jsonl", 500, 5_000)
    assert p.line(start + 1.0).startswith(" 50.0% 5,000 lines  5,000 lines/s")
    p.add_read("in.jsonl", 2_000, 5_000)  # the file grew past its size when opened
    line = p.line(start + 2.0)
    assert "%" not in line and "10,000 lines" in line
    for t in range(3, 40):  # quiet for half a minute: the rate falls to nothing
        line = p.line(start + t)
    assert "10,000 lines  0 lines/s" in line
    p.add_read("in.jsonl", 100, 2_000)  # then 2,000 lines
    assert p.line(start + 41).startswith("12,000 lines  200 lines/s")  # over the last 10 s, not the run's 293
