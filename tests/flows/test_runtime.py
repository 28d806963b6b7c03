"""The collector policy of a run: off between checkpoints, which reclaim cycles and freeze survivors."""

from __future__ import annotations

import gc
import weakref

from flows import runtime


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_checkpoints_collect_cycles_and_freeze_survivors(monkeypatch) -> None:
    """Inside a run nothing collects by itself; a due checkpoint frees young cycles and freezes the rest."""
    monkeypatch.setattr(runtime, "CHECKPOINT_S", 0.0)
    was_enabled = gc.isenabled()
    with runtime.tuned_gc():
        assert not gc.isenabled()
        frozen_before = gc.get_freeze_count()
        garbage = weakref.ref(_Node())
        kept = _Node()
        assert garbage() is not None  # no automatic pass reclaimed it
        runtime.checkpoint()
        assert garbage() is None and kept.me is kept
        assert gc.get_freeze_count() > frozen_before and gc.get_count()[0] < 100
    assert gc.isenabled() == was_enabled and gc.get_freeze_count() == 0


def test_checkpoint_outside_a_run_and_before_it_is_due_does_nothing(monkeypatch) -> None:
    """Library use and tests keep the normal collector; within a run checkpoints are rate-limited."""
    runtime.checkpoint()
    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(runtime, "CHECKPOINT_S", 3600.0)
    with runtime.tuned_gc():
        garbage = weakref.ref(_Node())
        runtime.checkpoint()  # the last one was at the start of the run
        assert garbage() is not None


def test_the_decode_step_collects_between_batches_and_shards_only_as_a_fallback(monkeypatch) -> None:
    """A checkpoint runs before an input batch is decoded; a shard's call waits for FALLBACK_S."""
    from flows.router import Router
    from flows.sources import SourceBatch

    monkeypatch.setattr(runtime, "CHECKPOINT_S", 0.0)
    monkeypatch.setattr(runtime, "FALLBACK_S", 3600.0)
    with runtime.tuned_gc():
        garbage = weakref.ref(_Node())
        runtime.checkpoint(runtime.FALLBACK_S)  # what shards call: not due yet
        assert garbage() is not None
        line = b'{"type":"track","event":"x","messageId":"m1","anonymousId":"a1","timestamp":"2026-01-05T08:00:00Z"}'
        packets = Router(4, 5000, 5.0).route(SourceBatch("f:0", 1, "f", [line], False, 0))
        assert garbage() is None
        assert sum(len(p.events) for _, p in packets) == 1
