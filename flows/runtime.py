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

So during a run the automatic collector is off, and the decode step calls
``checkpoint`` before each input batch: at most every CHECKPOINT_S seconds it collects
what was allocated since the previous checkpoint and then moves the survivors into the
permanent generation (``gc.freeze``), so no pass ever re-scans the long-lived state.
Before an input batch the previous one has gone through every step, so the young
objects are only what the state kept; from inside a shard's batch, the 10,000 events
in flight were about half of what each pass scanned. Shards call it too, less often,
for workers that read no input.
A cycle that survives a checkpoint and only later becomes garbage is not reclaimed;
at the rate measured that is a few kilobytes per million events.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Iterator

CHECKPOINT_S = 2.0  # seconds between collections: each one scans what survived since the last
FALLBACK_S = 4 * CHECKPOINT_S  # shards collect only when the decode step has not for this long

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


def checkpoint(every_s: float | None = None) -> None:
    """Collect the young objects and freeze the survivors, if the last checkpoint is ``every_s`` old.

    ``every_s`` defaults to CHECKPOINT_S.

    A no-op outside ``tuned_gc`` (tests, library use), where the collector runs as usual.
    """
    if not _state["active"]:
        return
    now = time.monotonic()
    if now - _state["last"] < (CHECKPOINT_S if every_s is None else every_s):
        return
    _state["last"] = now
    gc.collect(1)
    gc.freeze()
