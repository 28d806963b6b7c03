"""The benchmark report says what each run measured, and nothing it did not measure."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.report import markdown, targets


def _results(two: dict[str, Any]) -> dict[str, Any]:
    machine = {"date_utc": "2026-12-07 14:43", "cpu": "test cpu", "cores": 2, "ram_gib": 1, "os": "Linux",
               "python": "3.11", "packages": {}}
    one = {"events_per_s": 16_500.0, "lines_read": 1_000_000, "elapsed_s": 60.6, "triggers": 10,
           "cpu_user_s": 66.5, "cpu_sys_s": 4.7, "cpu_with_children": True}
    return {"runs": {"standard": one, "standard_2p": two}, "machine": machine, "mode": "full", "total_s": 1.0,
            "budget_s": 2.0, "targets": [], "skipped": {}, "workloads": {}}


def _two_process_row(two: dict[str, Any]) -> str:
    text = markdown(_results(two))
    rows = [line for line in text.splitlines() if line.startswith("| **`leadstream run --processes 2`**")]
    assert len(rows) == 1
    return rows[0]


def test_two_process_row_sets_the_cluster_cpu_beside_one_process() -> None:
    """A cluster's CPU (its processes are the runner's children) is compared with one process's."""
    row = _two_process_row({"events_per_s": 22_600.0, "cpu_user_s": 80.0, "cpu_sys_s": 5.5, "cpu_with_children": True})
    assert "1.37x 1 process" in row
    assert "CPU 86 s against 71 s for 1 process (+20%)" in row


@pytest.mark.parametrize(
    ("two", "why"),
    [
        ({"events_per_s": 22_600.0, "cpu_user_s": 0.6, "cpu_sys_s": 0.1}, "results from before children were counted"),
        ({"events_per_s": 22_600.0, "cpu_with_children": True}, "no CPU recorded"),
        ({"events_per_s": 0.0, "cpu_user_s": 80.0, "cpu_sys_s": 5.5, "cpu_with_children": True,
          "error": "exit 1"}, "a failed run"),
    ],
)
def test_two_process_row_leaves_out_cpu_it_cannot_compare(two: dict[str, Any], why: str) -> None:
    """Only CPU that covers the whole cluster is printed."""
    assert "CPU" not in _two_process_row(two), why


def _targets_of(runs: dict[str, Any], skipped: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    R = _results(runs.pop("standard_2p"))
    R["runs"].update(runs)
    R["skipped"].update(skipped or {})
    return {t["target"]: t for t in targets(R)}


_FULL = {"lines_read": 1_000_000}


def test_two_pairs_judge_the_ratio_of_their_mean_rates() -> None:
    """With a second pair at the end, the 2-process target is judged on both pairs together."""
    T = _targets_of({"standard_2p": {"events_per_s": 22_600.0, **_FULL},
                     "standard_again": {"events_per_s": 17_500.0, **_FULL},
                     "standard_2p_again": {"events_per_s": 26_000.0, **_FULL}})
    t = T["2 processes: >= 1.4x 1 process"]
    # (22.6k + 26.0k) / (16.5k + 17.5k) = 1.43x, though the first pair alone is 1.37x.
    assert t["measured"].startswith("1.43x over two pairs of runs (1.37x after the 1-process run, 1.49x at the end)")
    assert t["status"] == "pass"


@pytest.mark.parametrize(
    ("again", "skipped", "note"),
    [
        ({}, {"standard_pair_2": "budget: 80 s left, a second pair needs about 130 s"}, "budget: 80 s left"),
        ({"standard_again": {"events_per_s": 17_500.0, **_FULL},
          "standard_2p_again": {"events_per_s": 30_000.0, "lines_read": 400_000, "truncated_by_budget": True}},
         {}, "the second did not complete"),
        ({"standard_again": {"events_per_s": 0.0, "error": "exit 1"},
          "standard_2p_again": {"events_per_s": 30_000.0, **_FULL}}, {}, "the second did not complete"),
    ],
)
def test_one_pair_is_judged_alone_and_says_why(again: dict[str, Any], skipped: dict[str, str], note: str) -> None:
    """Without a complete second pair the first pair decides, and the note says what became of the second."""
    T = _targets_of({"standard_2p": {"events_per_s": 22_600.0, **_FULL}, **again}, skipped)
    t = T["2 processes: >= 1.4x 1 process"]
    assert t["measured"].startswith("1.37x (22.6k vs 16.5k events/s)")
    assert t["status"] == "MISS"
    assert note in t["note"]


def _scale(again: dict[str, Any] | None) -> dict[str, Any]:
    runs: dict[str, Any] = {"standard_2p": {"events_per_s": 22_600.0, **_FULL},
                            "scale": {"events_per_s": 13_000.0, "lines_read": 5_000_000}}
    if again is not None:
        runs["standard_again"] = again
    return _targets_of(runs)["scale: throughput within 20% of standard"]


def test_scale_is_judged_against_the_runs_of_standard_around_it() -> None:
    """`scale` runs between the two 1-process runs: their mean is its reference, the first is shown beside."""
    t = _scale({"events_per_s": 15_500.0, **_FULL})
    # 13.0k against (16.5k + 15.5k) / 2 = 16.0k is 81%; against the first run alone, 79%.
    assert t["measured"] == ("81% of standard (13.0k events/s against 16.0k, the mean of the 1-process runs before "
                             "and after it: 16.5k and 15.5k; 79% of the first alone)")
    assert t["status"] == "pass"


@pytest.mark.parametrize(
    "again",
    [None, {"events_per_s": 0.0, "error": "exit 1"},
     {"events_per_s": 15_500.0, "lines_read": 300_000, "truncated_by_budget": True}],
)
def test_scale_without_a_complete_second_run_is_judged_against_the_first(again: dict[str, Any] | None) -> None:
    """No second run, a failed one or one cut short by the budget: the first run is the reference."""
    t = _scale(again)
    assert t["measured"] == "79% of standard (13.0k events/s)"
    assert t["status"] == "MISS"
