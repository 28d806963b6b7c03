"""Interpreter settings for flow runs: the cyclic garbage collector, run at checkpoints.

A run keeps hundreds of thousands of small containers alive (contact states, reorder
buffers, dedupe windows, timer heaps) and allocates a few more per event. CPython's
collector scans its young generations every few hundred allocations and, as survivors
pile up, re-scans them in the older ones: with the defaults that was about a third of
the engine's time. With raised thresholds it was still 9% of a 300k-event replay, and
its middle-generation passes stopped the worker for up to 0.4 s at a time, which was
the largest share of the p99 latency in follow mode. Those passes found about 700
cyclic objects in 300k events (the checkpoints below find none in a 400k-line replay
now): the state is trees of dicts and lists, freed by reference counting.

So during a run the automatic collector is off, and the decode step calls
``checkpoint`` before each input batch: at most every interval it collects what was
allocated since the previous checkpoint and then moves the survivors into the
permanent generation (``gc.freeze``), so no pass ever re-scans the long-lived state.
Before an input batch the previous one has gone through every step, so the young
objects are only what the state kept; from inside a shard's batch, the 10,000 events
in flight were about half of what each pass scanned. Shards call it too, less often,
for workers that read no input.

The interval depends on the mode. Each pass scans the objects that survived since the
previous one, and most state churn (thawed contacts, timer and cap tuples, workflow
runs) dies within seconds to tens of seconds, so longer intervals scan less in total:
in a 400k-line replay, passes every 2 s took 1.6-1.9 s, every 30 s 0.36-0.42 s (two
passes of about 0.4 s each), and neither found a single cyclic object. A 0.4 s pause
costs nothing in a replay, but in follow mode it would be the p99 latency, so a
followed stream keeps 2 s passes of 30-90 ms.
A cycle that survives a checkpoint and only later becomes garbage is not reclaimed;
at the rate measured that is a few kilobytes per million events.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Iterator

from .progress import PROGRESS

CHECKPOINT_S = 2.0  # seconds between collections when following a stream (each pause adds to latency)
REPLAY_CHECKPOINT_S = 30.0  # seconds between collections in a replay (less to scan in total)
FALLBACK_FACTOR = 4  # shards collect only when the decode step has not for this many intervals

_state = {"active": False, "last": 0.0, "every": CHECKPOINT_S}


@contextmanager
def tuned_gc(every_s: float | None = None) -> Iterator[None]:
    """Run the body with automatic collection off and a checkpoint due every ``every_s`` seconds.

    ``every_s`` defaults to CHECKPOINT_S; a replay passes REPLAY_CHECKPOINT_S. Everything is
    restored after.
    """
    was_enabled = gc.isenabled()
    # Start-up objects (modules, the compiled config) live as long as the process.
    gc.collect()
    gc.freeze()
    gc.disable()
    _state.update(active=True, last=time.monotonic(), every=CHECKPOINT_S if every_s is None else every_s)
    try:
        yield
    finally:
        _state["active"] = False
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def checkpoint(fallback: bool = False) -> None:
    """Collect the young objects and freeze the survivors, if the last checkpoint is an interval old.

    With ``fallback`` (what shards call) the interval is FALLBACK_FACTOR times longer.
    A no-op outside ``tuned_gc`` (tests, library use), where the collector runs as usual.
    """
    if not _state["active"]:
        return
    now = time.monotonic()
    if now - _state["last"] < _state["every"] * (FALLBACK_FACTOR if fallback else 1):
        return
    _state["last"] = now
    gc.collect(1)
    gc.freeze()
    PROGRESS.add_time("gc", time.monotonic() - now)
