"""Helpers of the `leadstream run` command that turn flags into flow options."""

from __future__ import annotations

import argparse

import pytest

from leadstream.commands import cut_lines


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"cut_every": 25_000}, 25_000),  # one process
        ({"cut_every": 25_000, "addresses": "127.0.0.1:1;127.0.0.1:2"}, 50_000),  # two processes share the shards
        ({"cut_every": 10_000, "addresses": "a:1;b:1;c:1"}, 30_000),
        ({"cut_every": 0, "addresses": "a:1;b:1"}, 0),  # by time only, whatever the cluster
        ({}, 7),  # a Namespace built without the flag (the demo) gets the default
    ],
    ids=["single", "two-processes", "three-processes", "time-only", "default"],
)
def test_cut_lines_are_per_process(flags: dict, expected: int) -> None:
    """--cut-every counts lines per process: a cluster of N processes cuts every N times as many lines."""
    assert cut_lines(argparse.Namespace(**flags), 7) == expected
