"""The two stateful steps: identity shards and contact shards, wrapped as Bytewax logic.

Each logic is a thin shell around the pure shard classes in engine/: it feeds them
packets, advances them along the watermark (splitting at snapshot cuts), and turns
their output into downstream packets, trigger lines and warehouse exports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson
from bytewax.operators import StatefulBatchLogic

from engine.config import Config
from engine.contact import ContactState
from engine.contacts import ContactShard
from engine.engine import Engine
from engine.identity import IdentityShard
from engine.ordering import NEVER
from engine.routing import ShardOutput, by_contact_shard
from engine.watermarks import CutQueue, SourceClock, UpstreamClock

from . import rows, runtime
from .packets import Export, ToContacts, ToIdentity, unseal
from .progress import PROGRESS

# How often a shard's progress reaches downstream shards it sent nothing to: often when
# following a live stream (latency), rarely in a replay (every broadcast is N packets).
# A contact shard waits for the slowest identity shard, so the follow interval adds to
# every event's latency: 0.2 s cost 0.13 s of the median at 3k events/s. 0.05 s is
# about one poll of the source.
BROADCAST_FOLLOW_S = 0.05
BROADCAST_REPLAY_S = 1.0

# Tags of the values the stateful steps emit; the flow splits on them.
TO_CONTACTS, TRIGGER, DEAD_LETTER, EXPORT = "c", "t", "d", "x"


@dataclass
class StageContext:
    """What every shard of both stages needs: the compiled config and the topology."""

    config: Config
    parts: tuple[str, ...]
    shards: int
    follow: bool = False
    # Exports stay in this process (see defer_tables).
    single_process: bool = True
    engine: Engine = field(init=False)

    @property
    def defer_tables(self) -> bool:
        """Whether shards leave building their exports' Arrow tables to the warehouse's part writer.

        Only when following a live stream in one process, where a cut that builds them holds
        newer events back (p99 latency). In a replay the shards build them: the writer's
        thread then wanted the GIL while the worker ran, and every time the worker let go
        of it (compressing or thawing a contact, reading a block) it waited to get it back.
        Building on the worker made 1M lines of `standard` 10 % faster (61.5 s against 68.5 s).
        """
        return self.single_process and self.follow

    def __post_init__(self) -> None:
        self.engine = Engine(self.config)
        # Workflow step names by program counter, for the warehouse's workflow_members.
        self.steps = {wf.name: [step.name for step in wf.program] for wf in self.config.workflows}


@dataclass
class _Pending:
    """Rows a shard collected since its last cut: events and triggers as warehouse columns."""

    events: rows.EventColumns = field(default_factory=rows.EventColumns)
    triggers: rows.TriggerColumns = field(default_factory=rows.TriggerColumns)
    dead_letters: list[tuple[Any, ...]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def absorb(self, out: ShardOutput) -> None:
        """Take what the shard applied and fired; the Event and Trigger objects can then go."""
        self.events.extend(out.applied)
        self.triggers.extend(out.triggers)
        for k, v in out.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Recovery state from before columns: events and triggers as objects, some of
        # them already in Arrow chunks (which came first).
        events, triggers = state["events"], state["triggers"]
        if isinstance(events, list):
            chunks = state.pop("chunks", {})
            state["events"], state["triggers"] = rows.EventColumns(), rows.TriggerColumns()
            for name, objects in (("events", events), ("triggers", triggers)):
                for chunk in chunks.get(name, ()):
                    state[name].extend_table(chunk)
                state[name].extend(objects)
        self.__dict__.update(state)


def _trigger_lines(out: ShardOutput) -> list[tuple[str, tuple[str, str]]]:
    # One item per batch: the file sink writes it as consecutive lines, at a fraction
    # of the per-item cost of the dataflow.
    if not out.triggers:
        return []
    return [(TRIGGER, ("triggers", rows.trigger_lines(out.triggers)))]


class _ShardLogic(StatefulBatchLogic):
    """What both stages share: the cut queue, pending rows, retroactive rules and snapshots."""

    stage = ""
    state: Any  # the stage's shard state (IdentityShard or ContactShard)
    clock: Any  # what tells its watermark (SourceClock or UpstreamClock)

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.shard_no = -1  # learnt from the first packet: Bytewax does not pass the key
        self.cuts = CutQueue()
        self.pending = _Pending()
        self.rule_fingerprints = ctx.config.rule_fingerprints()
        self.retro: set[str] = set()
        self.reconfigure = False  # restored from a state saved under another config
        self.last_broadcast = 0.0
        # Whether this run's end of input was exported; never restored, so a resumed
        # run that reaches the end again publishes a final snapshot again.
        self.completed = False

    def _restore_config(self, resume: dict[str, Any]) -> None:
        # Automation rules are retroactive: one that appeared since the state was saved
        # is evaluated against every contact this shard already holds.
        seen = resume["rules"]
        self.retro = {rid for rid in self.rule_fingerprints if rid not in seen}
        # Any other change brings every contact in line with the new config once (states
        # saved before the config was recorded are left as they are).
        saved = resume.get("config")
        self.reconfigure = saved is not None and saved != self.ctx.config.fingerprint

    def _run_reconfigured(self, contacts: Iterable[ContactState], now: int, out: ShardOutput, timers: Any) -> None:
        self.reconfigure = False
        if now == NEVER:
            return
        engine, occ = self.ctx.engine, f"config:{self.ctx.config.fingerprint}"
        for c in contacts:
            changed, fired = engine.reconfigured(c, now, occ)
            out.triggers.extend(fired)
            if changed:
                self._mark_changed(c.contact_id)
                timers.sync(c.contact_id, c.timers)

    def _run_retroactive(self, contacts: Iterable[ContactState], now: int, out: ShardOutput) -> None:
        if not self.retro or now == NEVER:
            self.retro = set()
            return
        engine = self.ctx.engine
        for c in contacts:
            fired = engine.retroactive(c, self.retro, now)
            if fired:
                out.triggers.extend(fired)
                self._mark_changed(c.contact_id)
        self.retro = set()

    def _mark_changed(self, contact_id: str) -> None:
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to resume: shard state, clocks, pending cuts and rows, the rules and config known."""
        return {"state": self.state, "clock": self.clock, "cuts": self.cuts, "pending": self.pending,
                "rules": self.rule_fingerprints, "config": self.ctx.config.fingerprint}

    def _export(self, cut: int, buffered: int, final: bool, **state_rows: Any) -> Export:
        p = self.pending
        self.pending = _Pending()
        tables = rows.export_tables(events=p.events, triggers=p.triggers, dead_letters=p.dead_letters,
                                    defer=self.ctx.defer_tables, **state_rows)
        return Export(cut=cut, stage=self.stage, shard=self.shard_no, tables=tables, counts=p.counts,
                      buffered=buffered, final=final)

    def _steps(self, watermark: int, complete: bool) -> list[tuple[int, bool, bool]]:
        """The advance in steps (target, is_cut, is_final); the end of input is a final cut."""
        steps = [(target, is_cut, False) for target, is_cut in self.cuts.steps(watermark)]
        if complete and not self.completed:
            self.completed = True
            target = steps[-1][0]
            steps[-1] = (target, True, True)
        return steps

    def _due_broadcast(self) -> bool:
        now = time.monotonic()
        every = BROADCAST_FOLLOW_S if self.ctx.follow else BROADCAST_REPLAY_S
        if now - self.last_broadcast >= every:
            self.last_broadcast = now
            return True
        return False


class IdentityLogic(_ShardLogic):
    """Stage one for one shard: dedupe, order, resolve identity, keep anonymous profiles."""

    stage = "identity"

    def __init__(self, ctx: StageContext, resume: dict[str, Any] | None) -> None:
        super().__init__(ctx)
        settings = ctx.config.settings
        if resume is None:
            self.state = IdentityShard(-1, settings.dedupe_window_ms)
            self.clock = SourceClock(ctx.parts, settings.allowed_lateness_ms)
        else:
            self.state, self.clock, self.cuts, self.pending = (
                resume["state"], resume["clock"], resume["cuts"], resume["pending"])
            self.shard_no = self.state.shard
            self.clock.restart(ctx.parts)
            self._restore_config(resume)
        self.sent_watermark = self.state.watermark

    def _mark_changed(self, contact_id: str) -> None:
        self.state.changed_profiles.add(contact_id)

    def on_batch(self, values: list[ToIdentity]) -> tuple[list[Any], bool]:
        """Take router packets; emit contact-stage packets, trigger lines, dead letters, exports."""
        started = time.perf_counter()
        engine, state, pending = self.ctx.engine, self.state, self.pending
        emitted: list[Any] = []
        out = ShardOutput()
        for sealed in values:
            packet: ToIdentity = unseal(sealed)
            self.shard_no = state.shard = packet.shard
            if packet.cut is not None:
                self.cuts.add(packet.cut)
            # Lateness is judged against the ticks of the packets before this one: in a
            # replay every packet reaches every shard, so that does not depend on timing.
            late_before = self.clock.watermark()
            for tick in packet.ticks:
                self.clock.observe(tick.part, tick.max_ts, tick.idle_ms, tick.eof)
            if packet.events:
                state.receive(engine, packet.events, out, late_before)
            for rej in packet.rejections:
                pending.dead_letters.append(rows.dead_letter_row(rej))
            if packet.rejections:
                text = "\n".join(orjson.dumps(rej.to_dict()).decode() for rej in packet.rejections)
                emitted.append((DEAD_LETTER, ("dead_letters", text)))
                pending.counts["dead_lettered"] = pending.counts.get("dead_lettered", 0) + len(packet.rejections)
        if self.retro:
            self._run_retroactive(list(state.profiles.values()), state.watermark, out)
        if self.reconfigure:
            self._run_reconfigured(list(state.profiles.values()), state.watermark, out, state.timers)
        self._flush(out, state.watermark, None, False, emitted)
        for target, is_cut, final in self._steps(self.clock.watermark(), self.clock.complete):
            out = ShardOutput()
            state.advance(engine, target, out)
            self._flush(out, max(target, state.watermark), target if is_cut else None, final, emitted)
            if is_cut:
                links, profiles, removed = state.take_changes()
                emitted.append((EXPORT, self._export(
                    target,
                    len(state.buffer),
                    final,
                    contacts=[rows.contact_row(c, self.ctx.steps) for c in profiles.values()],
                    merged=[(anon, into, at) for anon, (into, at) in sorted(removed.items())],
                    identities=[rows.identity_row(d, cid, at) for d, (cid, at) in links.items()],
                )))
        PROGRESS.add_time("identity", time.perf_counter() - started)
        runtime.checkpoint(fallback=True)
        return emitted, self.RETAIN

    def _flush(self, out: ShardOutput, watermark: int, cut: int | None, final: bool, emitted: list[Any]) -> None:
        """Send records downstream; at a cut or when due, tell every contact shard our progress."""
        self.pending.absorb(out)
        emitted.extend(_trigger_lines(out))
        shards = self.ctx.shards
        by_shard = by_contact_shard(out.routed, shards)
        advanced = watermark > self.sent_watermark
        everyone = cut is not None or (advanced and self._due_broadcast())
        targets = range(shards) if everyone else by_shard
        for shard in targets:
            emitted.append(
                (TO_CONTACTS, str(shard), ToContacts(self.shard_no, shard, by_shard.get(shard, []), watermark, cut, final))
            )
        if everyone:
            self.sent_watermark = watermark


class ContactLogic(_ShardLogic):
    """Stage two for one shard: known contacts, fed in event-time order from every identity shard."""

    stage = "contacts"

    def __init__(self, ctx: StageContext, resume: dict[str, Any] | None) -> None:
        super().__init__(ctx)
        if resume is None:
            self.state = ContactShard(-1)
            self.clock = UpstreamClock(ctx.shards)
        else:
            self.state, self.clock, self.cuts, self.pending = (
                resume["state"], resume["clock"], resume["cuts"], resume["pending"])
            self.shard_no = self.state.shard
            self.clock.restart()
            self._restore_config(resume)

    def _mark_changed(self, contact_id: str) -> None:
        self.state.changed.add(contact_id)

    def on_batch(self, values: list[ToContacts]) -> tuple[list[Any], bool]:
        """Take identity-stage packets; emit trigger lines and exports."""
        started = time.perf_counter()
        engine, state = self.ctx.engine, self.state
        emitted: list[Any] = []
        out = ShardOutput()
        for sealed in values:
            packet: ToContacts = unseal(sealed)
            self.shard_no = state.shard = packet.dest
            if packet.cut is not None:
                self.cuts.add(packet.cut)
            if packet.records:
                state.receive(engine, packet.records, out)
            self.clock.observe(packet.src, packet.watermark, packet.final)
        if self.retro:
            self._run_retroactive(list(state.contacts.values()), state.watermark, out)
        if self.reconfigure:
            self._run_reconfigured(list(state.contacts.values()), state.watermark, out, state.timers)
        self.pending.absorb(out)
        emitted.extend(_trigger_lines(out))
        for target, is_cut, final in self._steps(self.clock.watermark(), self.clock.complete):
            out = ShardOutput()
            state.advance(engine, target, out)
            self.pending.absorb(out)
            emitted.extend(_trigger_lines(out))
            if is_cut:
                changed = state.take_changes()
                emitted.append((EXPORT, self._export(
                    target, len(state.buffer), final,
                    contacts=[rows.contact_row(c, self.ctx.steps) for c in changed.values()])))
        PROGRESS.add_time("contacts", time.perf_counter() - started)
        runtime.checkpoint(fallback=True)
        return emitted, self.RETAIN
