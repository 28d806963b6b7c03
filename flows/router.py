"""The decode step: raw line batches become per-shard packets of events, rejections and ticks."""

from __future__ import annotations

import time

from engine.decode import decode_line
from engine.events import Event, Rejection
from engine.ids import shard_of
from engine.ordering import NEVER, watermark_for

from . import runtime
from .packets import Tick, ToIdentity
from .progress import PROGRESS
from .sources import SourceBatch

# How often a partition's progress reaches shards that had no events from it. In a
# replay, with every batch: shards judge lateness by the ticks they have seen, so seeing
# all of them makes the judgement independent of timing (and a batch of a replay reaches
# nearly every shard anyway).
BROADCAST_FOLLOW_S = 0.05
BROADCAST_REPLAY_S = 0.0
# A partition also proposes a cut after this many lines, besides every cut interval.
# Shards keep the contacts they touched since the last cut live (4-5 KB each, against
# about 0.2 KB frozen) and the rows they applied as columns until the next cut, so with
# cuts by wall time alone memory grew with speed: the compiled modules took the first
# 1.5M lines of `scale` from 795 to 930-940 MiB at the peak. Cuts every 25k lines (2 s
# at 12k lines/s) held it at 695-700 MiB (40k lines: 761 MiB), for three times as many
# Parquet parts and more freezing and thawing: 0-14 % more time in interleaved runs.
CUT_EVERY_LINES = 25_000


class Router:
    """Decodes lines and routes events to identity shards by their device id.

    It also stamps each packet with its partition's progress, and now and then
    proposes a snapshot cut. Its memory of partition maxima only paces those ticks:
    after a restart it rebuilds from new data, and shards keep the larger value.
    """

    def __init__(self, shards: int, lateness_ms: int, cut_interval_s: float, follow: bool = False,
                 consent_category: str | None = None, cut_lines: int | None = CUT_EVERY_LINES,
                 context_keys: frozenset[str] | None = None) -> None:
        self.shards = shards
        self.consent_category = consent_category
        self.context_keys = context_keys  # Config.context_keys: what events keep of their context as a dict
        self.broadcast_s = BROADCAST_FOLLOW_S if follow else BROADCAST_REPLAY_S
        self.lateness_ms = lateness_ms
        self.cut_interval_s = cut_interval_s
        self.cut_lines = cut_lines  # None: cuts by wall time only
        self._lines: dict[str, int] = {}  # lines each partition read since its last cut
        self._max: dict[str, int] = {}
        self._last_broadcast: dict[str, float] = {}
        self._last_cut: dict[str, float] = {}
        self._announced: dict[str, int] = {}  # the highest own-watermark each partition has ticked

    def route(self, batch: SourceBatch) -> list[tuple[str, ToIdentity]]:
        """Decode one batch of lines into (shard key, packet) pairs."""
        runtime.checkpoint()  # the previous batch is through every step: little is young now
        started = time.perf_counter()
        shards = self.shards
        packets: dict[int, ToIdentity] = {}
        newest = self._max.get(batch.part, NEVER)
        prefix = f"{batch.file}:"
        first = batch.first_line
        reject_shard = shard_of(batch.part, shards)
        judged = batch.judged
        for i, raw in enumerate(batch.lines):
            if judged is None or i not in judged:
                item = decode_line(raw, "", self.consent_category, self.context_keys)
            else:
                # Rejected by the source (a line cut to its limit, an unreadable file's rest),
                # whatever decoding the bytes it has would say.
                reason, detail = judged[i]
                item = Rejection(reason, detail, raw.decode("utf-8", "backslashreplace"))
            if type(item) is Event:
                shard = shard_of(item.device_id, shards)
                packet = packets.get(shard)
                if packet is None:
                    packet = packets[shard] = ToIdentity(shard)
                packet.events.append(item)
                if item.ts > newest:
                    newest = item.ts
            else:
                # The line's position is written only for a rejection (formatting it for
                # every line cost about 550 instructions).
                rej: Rejection = item  # type: ignore[assignment]
                item = Rejection(rej.reason, rej.detail, rej.raw, prefix + str(first + i))
                packet = packets.get(reject_shard)
                if packet is None:
                    packet = packets[reject_shard] = ToIdentity(reject_shard)
                packet.rejections.append(item)
        self._max[batch.part] = newest
        tick = Tick(batch.part, newest, batch.idle_ms, batch.eof)
        if newest > NEVER:
            # An idle partition extrapolates its event time (see engine.watermarks.SourceClock).
            own = watermark_for(newest + batch.idle_ms, self.lateness_ms)
            self._announced[batch.part] = max(own, self._announced.get(batch.part, NEVER))
        now = time.monotonic()
        cut = None
        lines = self._lines[batch.part] = self._lines.get(batch.part, 0) + len(batch.lines)
        if not batch.eof and newest > NEVER and (
                now - self._last_cut.get(batch.part, now) >= self.cut_interval_s
                or (self.cut_lines is not None and lines >= self.cut_lines)):
            # At or above everything this partition ever ticked, so no shard has passed it:
            # a shard's watermark is a minimum that includes this partition's.
            cut = self._announced[batch.part]
            self._last_cut[batch.part] = now
            self._lines[batch.part] = 0
        self._last_cut.setdefault(batch.part, now)
        everyone = batch.eof or batch.idle_ms > 0 or cut is not None
        if everyone or now - self._last_broadcast.get(batch.part, 0.0) >= self.broadcast_s:
            self._last_broadcast[batch.part] = now
            for shard in range(shards):
                if shard not in packets:
                    packets[shard] = ToIdentity(shard)
        for packet in packets.values():
            packet.ticks.append(tick)
            packet.cut = cut
        PROGRESS.add_time("decode", time.perf_counter() - started)
        return [(str(shard), packet) for shard, packet in packets.items()]
