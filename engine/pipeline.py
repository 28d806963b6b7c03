"""An in-memory run of both stages: the reference the Bytewax flow must agree with.

Golden scenarios and property tests drive this directly; the flow wires the very
same shard classes into Bytewax steps.
"""

from __future__ import annotations

from typing import Any, Iterable

from .config import Config
from .contact import ContactState
from .contacts import ContactShard
from .engine import Engine
from .events import Event
from .identity import IdentityShard
from .ids import shard_of
from .ordering import NEVER, watermark_for
from .routing import ShardOutput, by_contact_shard
from .triggers import Trigger


class LocalPipeline:
    """Identity stage -> contact stage, sharded like the flow, in one process."""

    def __init__(self, config: Config, shards: int | None = None, allowed_lateness_ms: int | None = None) -> None:
        self.engine = Engine(config)
        settings = config.settings
        self.shards = shards or settings.shards
        self.lateness = settings.allowed_lateness_ms if allowed_lateness_ms is None else allowed_lateness_ms
        self.identity = [IdentityShard(i, settings.dedupe_window_ms) for i in range(self.shards)]
        self.contact_shards = [ContactShard(i) for i in range(self.shards)]
        self.max_ts = NEVER
        self.triggers: list[Trigger] = []
        self.applied: list[tuple[str, Event]] = []
        self.counts: dict[str, int] = {}

    def feed(self, events: Iterable[Event], batch: int = 1) -> None:
        """Feed events in arrival order; the watermark follows the newest event time seen."""
        pending: list[Event] = []
        for e in events:
            pending.append(e)
            if len(pending) >= batch:
                self._step(pending)
                pending = []
        if pending:
            self._step(pending)

    def finish(self) -> None:
        """End of input: the watermark moves to the newest event time and everything read is applied.

        Like the flow, it does not jump to the end of time: timers due after the last
        event stay pending, as they would in a live run at that moment.
        """
        self._advance(self.max_ts)

    def _step(self, events: list[Event]) -> None:
        out = ShardOutput()
        by_shard: dict[int, list[Event]] = {}
        for e in events:
            by_shard.setdefault(shard_of(e.device_id, self.shards), []).append(e)
            if e.ts > self.max_ts:
                self.max_ts = e.ts
        for shard, items in sorted(by_shard.items()):
            self.identity[shard].receive(self.engine, items, out)
        self._route(out)
        self._advance(watermark_for(self.max_ts, self.lateness))

    def _advance(self, watermark: int) -> None:
        out = ShardOutput()
        for shard in self.identity:
            shard.advance(self.engine, watermark, out)
        self._route(out)
        out2 = ShardOutput()
        for contact_shard in self.contact_shards:
            contact_shard.advance(self.engine, watermark, out2)
        self._collect(out2)

    def _route(self, out: ShardOutput) -> None:
        self._collect(out)
        by_shard = by_contact_shard(out.routed, self.shards)
        late_out = ShardOutput()
        for shard, records in sorted(by_shard.items()):
            self.contact_shards[shard].receive(self.engine, records, late_out)
        self._collect(late_out)

    def _collect(self, out: ShardOutput) -> None:
        self.triggers.extend(out.triggers)
        self.applied.extend(out.applied)
        for k, v in out.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    # ------------------------------------------------------------ results

    def contacts(self) -> dict[str, ContactState]:
        """Every contact: known ones and still-anonymous profiles, by contact_id."""
        out: dict[str, ContactState] = {}
        for shard in self.identity:
            out.update(shard.profiles)
        for contact_shard in self.contact_shards:
            out.update(contact_shard.contacts)
        return out

    def identities(self) -> dict[str, tuple[str, int]]:
        """Device links: identifier -> (contact_id, linked at)."""
        out: dict[str, tuple[str, int]] = {}
        for shard in self.identity:
            out.update(shard.links)
        return out

    def results(self) -> dict[str, Any]:
        """Final contacts as rows and triggers as records, for comparisons."""
        return {
            "contacts": {cid: c.to_row() for cid, c in sorted(self.contacts().items())},
            "triggers": sorted((t.to_dict() for t in self.triggers), key=lambda t: t["trigger_id"]),
        }


def run_events(config: Config, events: Iterable[Event], **kw: Any) -> LocalPipeline:
    """Run events through a fresh pipeline to the end and return it."""
    pipe = LocalPipeline(config, **{k: v for k, v in kw.items() if k in ("shards", "allowed_lateness_ms")})
    pipe.feed(events, batch=kw.get("batch", 1))
    pipe.finish()
    return pipe
