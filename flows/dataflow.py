"""The leadstream dataflow: read -> decode and route -> identity shards -> contact shards -> sinks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink
from bytewax.dataflow import Dataflow

from engine.config import Config

from .progress import PROGRESS
from .router import Router
from .sources import LineSource
from .stages import DEAD_LETTER, EXPORT, TO_CONTACTS, TRIGGER, ContactLogic, IdentityLogic, StageContext
from .warehouse import WarehouseLogic


@dataclass(frozen=True)
class FlowOptions:
    """Where a run reads from and writes to, and how often it publishes."""

    parts: tuple[str, ...]  # input partitions, from sources.expand_inputs
    warehouse: Path
    triggers: Path
    dead_letter: Path
    follow: bool = False
    snapshot_interval_s: float = 10.0
    shards: int | None = None  # overrides [settings] shards


def build_flow(config: Config, opts: FlowOptions) -> Dataflow:
    """Build the dataflow for one config and one set of inputs and outputs."""
    shards = opts.shards or config.settings.shards
    ctx = StageContext(config, opts.parts, shards, opts.follow)
    # Cuts come twice per interval, so a complete one is always ready when a snapshot is due.
    router = Router(shards, config.settings.allowed_lateness_ms, opts.snapshot_interval_s / 2, opts.follow)
    flow = Dataflow("leadstream")

    lines = op.input("read", flow, LineSource(list(opts.parts), opts.follow))
    # SourceBatch(part, first_line, file, lines, eof, idle_ms)
    packets = op.flat_map("decode_and_route", lines, router.route)
    # (identity shard key, ToIdentity)
    identity = op.stateful_batch("identity", packets, lambda resume: IdentityLogic(ctx, resume))
    # (identity shard key, tagged output: TO_CONTACTS | TRIGGER | DEAD_LETTER | EXPORT)
    routed = op.filter_map("to_contacts", identity, lambda kv: (kv[1][1], kv[1][2]) if kv[1][0] == TO_CONTACTS else None)
    # (contact shard key, ToContacts)
    contacts = op.stateful_batch("contacts", routed, lambda resume: ContactLogic(ctx, resume))
    # (contact shard key, tagged output: TRIGGER | EXPORT)
    outputs = op.merge("shard_outputs", identity, contacts)
    # (shard key, tagged output) from both stages

    trigger_lines = op.filter_map("trigger_lines", outputs, lambda kv: kv[1][1] if kv[1][0] == TRIGGER else None)
    # ("triggers", JSON line)
    op.output("write_triggers", trigger_lines, FileSink(opts.triggers))
    dead_lines = op.filter_map("dead_letter_lines", outputs, lambda kv: kv[1][1] if kv[1][0] == DEAD_LETTER else None)
    # ("dead_letters", JSON line)
    op.output("write_dead_letters", dead_lines, FileSink(opts.dead_letter))

    exports = op.filter_map("exports", outputs, lambda kv: ("warehouse", kv[1][1]) if kv[1][0] == EXPORT else None)
    # ("warehouse", Export)
    fingerprint = config.fingerprint
    snapshots = op.stateful_batch(
        "warehouse",
        exports,
        lambda resume: WarehouseLogic(opts.warehouse, 2 * shards, opts.snapshot_interval_s, fingerprint, resume),
    )
    # ("warehouse", snapshot summary dict)
    op.inspect("snapshot_log", snapshots, lambda _step, item: PROGRESS.published(str(item[1])))
    return flow
