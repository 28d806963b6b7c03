"""The collector policy of a run: off between checkpoints, which reclaim cycles and freeze survivors."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from flows import runtime

from .conftest import CONFIG


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_checkpoints_collect_cycles_and_freeze_survivors() -> None:
    """Inside a run nothing collects by itself; a due checkpoint frees young cycles and freezes the rest."""
    was_enabled = gc.isenabled()
    with runtime.tuned_gc(0.0):
        assert not gc.isenabled()
        frozen_before = gc.get_freeze_count()
        garbage = weakref.ref(_Node())
        kept = _Node()
        assert garbage() is not None  # no automatic pass reclaimed it
        runtime.checkpoint()
        assert garbage() is None and kept.me is kept
        assert gc.get_freeze_count() > frozen_before and gc.get_count()[0] < 100
    assert gc.isenabled() == was_enabled and gc.get_freeze_count() == 0


def test_checkpoint_outside_a_run_and_before_it_is_due_does_nothing() -> None:
    """Library use and tests keep the normal collector; within a run checkpoints are rate-limited."""
    runtime.checkpoint()
    assert gc.get_freeze_count() == 0
    with runtime.tuned_gc(3600.0):
        garbage = weakref.ref(_Node())
        runtime.checkpoint()  # the last one was at the start of the run
        assert garbage() is not None


def test_the_decode_step_collects_between_batches_and_shards_only_as_a_fallback() -> None:
    """A checkpoint runs before an input batch is decoded; a shard's call waits FALLBACK_FACTOR intervals."""
    from flows.router import Router
    from flows.sources import SourceBatch

    with runtime.tuned_gc(0.5):
        garbage = weakref.ref(_Node())
        time.sleep(0.6)
        runtime.checkpoint(fallback=True)  # what shards call: due after 2 s, not yet
        assert garbage() is not None
        line = b'{"type":"track","event":"x","messageId":"m1","anonymousId":"a1","timestamp":"2026-01-05T08:00:00Z"}'
        packets = Router(4, 5000, 5.0).route(SourceBatch("f:0", 1, "f", [line], False, 0))
        assert garbage() is None
        assert sum(len(p.events) for _, p in packets) == 1


@pytest.mark.parametrize(("follow", "every"), [(False, runtime.REPLAY_CHECKPOINT_S), (True, runtime.CHECKPOINT_S)],
                         ids=["replay", "follow"])
def test_a_replay_collects_rarely_and_a_followed_stream_often(tmp_path, monkeypatch, follow: bool,
                                                               every: float) -> None:
    """A replay pauses for long passes rarely; following a stream keeps passes short for latency."""
    from flows.sources import STOP
    from leadstream.cli import main

    seen: list[float | None] = []
    real = runtime.tuned_gc
    monkeypatch.setattr(runtime, "tuned_gc", lambda every_s=None: seen.append(every_s) or real(every_s))
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"type":"page","anonymousId":"a1","messageId":"m1","timestamp":"2026-01-05T08:00:00Z"}\n')
    args = ["run", "--config", str(CONFIG), "--input", str(source), "--warehouse", str(tmp_path / "w.duckdb"),
            "--triggers", str(tmp_path / "t.jsonl"), "--dead-letter", str(tmp_path / "d.jsonl"), "--quiet"]
    stopper = threading.Timer(2.0, STOP.set) if follow else None
    if stopper is not None:
        stopper.start()
    try:
        assert main(args + (["--follow"] if follow else [])) in (0, None)
    finally:
        if stopper is not None:
            stopper.cancel()
        STOP.clear()  # a process-wide flag: later tests read sources directly
    assert seen == [every]
    assert (tmp_path / "w.duckdb").exists()
