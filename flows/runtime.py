"""Interpreter settings for flow runs: the cyclic garbage collector, run at checkpoints.

A run keeps hundreds of thousands of small containers alive (contact states, reorder
buffers, dedupe windows, timer heaps) and allocates a few more per event. CPython's
collector scans its young generations every few hundred allocations and, as survivors
pile up, re-scans them in the older ones: with the defaults that was about a third of
the engine's time. With raised thresholds it was still 9% of a 300k-event replay, and
its middle-generation passes stopped the worker for up to 0.4 s at a time, which was
the largest share of the p99 latency in follow mode. Those passes found about 700
cyclic objects in 300k events: the state is trees of dicts and lists, freed by
reference counting.

So during a run the automatic collector is off, and the shards call ``checkpoint``
after every batch: at most every CHECKPOINT_S seconds it collects what was allocated
since the previous checkpoint and then moves the survivors into the permanent
generation (``gc.freeze``), so no pass ever re-scans the long-lived state.
A cycle that survives a checkpoint and only later becomes garbage is not reclaimed;
at the rate measured that is a few kilobytes per million events.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Iterator

CHECKPOINT_S = 2.0  # seconds between collections: each one scans what survived since the last

_state = {"active": False, "last": 0.0}


@contextmanager
def tuned_gc() -> Iterator[None]:
    """Run the body with automatic collection off and checkpoints on; restore everything after."""
    was_enabled = gc.isenabled()
    # Start-up objects (modules, the compiled config) live as long as the process.
    gc.collect()
    gc.freeze()
    gc.disable()
    _state.update(active=True, last=time.monotonic())
    try:
        yield
    finally:
        _state["active"] = False
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def checkpoint() -> None:
    """Collect the young objects and freeze the survivors, if the last checkpoint is old enough.

    A no-op outside ``tuned_gc`` (tests, library use), where the collector runs as usual.
    """
    if not _state["active"]:
        return
    now = time.monotonic()
    if now - _state["last"] < CHECKPOINT_S:
        return
    _state["last"] = now
    gc.collect(1)
    gc.freeze()
