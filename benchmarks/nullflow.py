"""Bytewax framework limits on the same file, with the flow's own line source and batch sizes.

    python -m benchmarks.nullflow FILE STATS.json [--keyed SHARDS]

null:  read -> parse every line (orjson) -> discard.
keyed: read -> parse -> group each batch by stable_hash(device id) % SHARDS ->
       stateful_batch per shard (counts only) -> discard: the exchange and per-key
       cost that leadstream's two shard stages pay, without any of their logic.
"""

from __future__ import annotations

import json
import sys
import time

import orjson
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

try:  # the very source leadstream reads with (same batch sizes)
    from flows.sources import LineSource

    HAVE_LINE_SOURCE = True
except Exception:  # pragma: no cover - fallback if the module moved
    HAVE_LINE_SOURCE = False


def _source(path: str):
    if HAVE_LINE_SOURCE:
        return LineSource([path], False)
    from bytewax.connectors.files import FileSource

    return FileSource(path, batch_size=2000)


def _lines(item) -> list[bytes]:
    return item.lines if hasattr(item, "lines") else [item.encode() if isinstance(item, str) else item]


def build(path: str, keyed: int, counter: list[int]) -> Dataflow:
    flow = Dataflow("bench_null")
    batches = op.input("read", flow, _source(path))

    if not keyed:
        def parse(item) -> int:
            n = 0
            for line in _lines(item):
                try:
                    orjson.loads(line)
                    n += 1
                except orjson.JSONDecodeError:
                    pass
            return n

        counts = op.map("parse", batches, parse)
        op.inspect("discard", counts, lambda _s, n: counter.__setitem__(0, counter[0] + n))
        return flow

    from engine.ids import shard_of

    def parse_route(item) -> list[tuple[str, list]]:
        groups: dict[int, list] = {}
        for line in _lines(item):
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(e, dict):
                continue
            device = e.get("anonymousId") or e.get("userId") or ""
            groups.setdefault(shard_of(str(device), keyed), []).append(e)
        return [(str(k), v) for k, v in groups.items()]

    from bytewax.operators import StatefulBatchLogic

    class CountLogic(StatefulBatchLogic):
        def __init__(self, resume) -> None:
            self.n = resume or 0

        def on_batch(self, values):
            k = 0
            for v in values:
                k += len(v)
            self.n += k
            counter[0] += k
            return [], StatefulBatchLogic.RETAIN

        def snapshot(self):
            return self.n

    routed = op.flat_map("parse_route", batches, parse_route)
    out = op.stateful_batch("shards", routed, lambda resume: CountLogic(resume))
    op.inspect("discard", out, lambda _s, _x: None)
    return flow


def peak_rss_kb() -> int:
    from benchmarks.runner import peak_rss_kb as hwm

    return hwm()


def main(argv: list[str]) -> int:
    path, stats = argv[0], argv[1]
    keyed = int(argv[argv.index("--keyed") + 1]) if "--keyed" in argv else 0
    counter = [0]
    flow = build(path, keyed, counter)
    started = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - started
    with open(stats, "w") as fh:
        json.dump({"elapsed_s": elapsed, "parsed": counter[0],
                   "ru_maxrss_kb": peak_rss_kb()}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
