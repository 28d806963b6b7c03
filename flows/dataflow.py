"""The leadstream dataflow: read -> decode and route -> identity shards -> contact shards -> sinks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from engine.config import Config

from .kafka import (KafkaLineSource, dead_letter_messages, is_kafka_url, kafka_sink, message_limit, parse_kafka_url,
                    trigger_messages)
from .packets import seal
from .progress import PROGRESS
from .router import CUT_EVERY_LINES, Router
from .sinks import LineFileSink
from .sources import LineSource
from .stages import DEAD_LETTER, EXPORT, TO_CONTACTS, TRIGGER, ContactLogic, IdentityLogic, StageContext
from .warehouse import WarehouseLogic


@dataclass(frozen=True)
class FlowOptions:
    """Where a run reads from and writes to, and how often it publishes."""

    parts: tuple[str, ...]  # input partitions: sources.expand_inputs, or kafka.list_kafka_parts ("topic:N")
    warehouse: Path
    triggers: Path | str  # a JSONL file or kafka://host:port/topic
    dead_letter: Path | str  # likewise
    follow: bool = False
    snapshot_interval_s: float = 10.0
    shards: int | None = None  # overrides [settings] shards
    kafka_input: str | None = None  # kafka://host:port/topic: read it instead of files (parts name its partitions)
    kafka_eof: bool = False  # end each Kafka partition at the end of what the broker has
    kafka_config: tuple[tuple[str, str], ...] = ()  # extra librdkafka settings for every Kafka client
    webhook: Any = None  # a webhook.WebhookDelivery that also receives every trigger
    single_process: bool = True  # False in a cluster: exports then cross processes as Arrow tables
    cut_every_lines: int = CUT_EVERY_LINES  # a partition also proposes a cut after this many lines; 0: by time only


def build_flow(config: Config, opts: FlowOptions) -> Dataflow:
    """Build the dataflow for one config and one set of inputs and outputs."""
    shards = opts.shards or config.settings.shards
    ctx = StageContext(config, opts.parts, shards, opts.follow, opts.single_process)
    # Cuts come twice per interval, so a complete one is always ready when a snapshot is due.
    router = Router(shards, config.settings.allowed_lateness_ms, opts.snapshot_interval_s / 2, opts.follow,
                    config.privacy.consent_category, opts.cut_every_lines or None, config.context_keys())
    flow = Dataflow("leadstream")

    kconf = dict(opts.kafka_config)
    if opts.kafka_input:
        source: Any = KafkaLineSource(parse_kafka_url(opts.kafka_input), list(opts.parts), opts.kafka_eof, kconf)
    else:
        source = LineSource(list(opts.parts), opts.follow)
    lines = op.input("read", flow, source)
    # SourceBatch(part, first_line, file, lines, eof, idle_ms, judged)
    packets = op.flat_map("decode_and_route", lines, router.route)
    # (identity shard key, ToIdentity)
    # In a cluster, records bound for the stateful steps are sealed (packets.Sealed): they
    # may cross processes, and Bytewax pickles what crosses twice. Each step unseals.
    keep: Any = (lambda kv: kv) if opts.single_process else seal
    if not opts.single_process:
        packets = op.map("seal_packets", packets, seal)
        # (identity shard key, Sealed(ToIdentity))
    identity = op.stateful_batch("identity", packets, lambda resume: IdentityLogic(ctx, resume))
    # (identity shard key, tagged output: TO_CONTACTS | TRIGGER | DEAD_LETTER | EXPORT)
    split = op.branch("split_identity_outputs", identity, lambda kv: kv[1][0] == TO_CONTACTS)
    # trues: packets for the contact stage; falses: trigger lines, dead letters, exports
    routed = op.map("to_contacts", split.trues, lambda kv: keep((kv[1][1], kv[1][2])))
    # (contact shard key, ToContacts, Sealed in a cluster)
    contacts = op.stateful_batch("contacts", routed, lambda resume: ContactLogic(ctx, resume))
    # (contact shard key, tagged output: TRIGGER | EXPORT)
    outputs = op.merge("shard_outputs", split.falses, contacts)
    # (shard key, tagged output) from both stages

    trigger_lines: Any = op.filter_map("trigger_lines", outputs, lambda kv: kv[1][1] if kv[1][0] == TRIGGER else None)
    # ("triggers", JSON lines of one shard's batch, newline-separated)
    if is_kafka_url(str(opts.triggers)):
        messages = op.flat_map("trigger_messages", trigger_lines, trigger_messages)
        # KafkaSinkMessage(key=contact_id, value=one trigger): a contact's triggers stay in one partition, in order
        op.output("write_triggers", messages, kafka_sink(parse_kafka_url(str(opts.triggers)), kconf))
    else:
        op.output("write_triggers", trigger_lines, LineFileSink(Path(opts.triggers)))
    dead_lines: Any = op.filter_map("dead_letter_lines", outputs, lambda kv: kv[1][1] if kv[1][0] == DEAD_LETTER else None)
    # ("dead_letters", JSON lines)
    if opts.webhook is not None:
        from .webhook import COLLECT_MS, GROUPS

        grouped = op.filter_map("webhook_groups", outputs,
                                lambda kv: (str(int(kv[0]) % GROUPS), kv[1][1][1]) if kv[1][0] == TRIGGER else None)
        # (shard group, trigger lines of one shard's batch)
        batches = op.collect("webhook_batches", grouped, timedelta(milliseconds=COLLECT_MS), max_size=64)
        # (shard group, [trigger lines, ...]) at most COLLECT_MS after the first
        undelivered = op.flat_map("webhook", batches, opts.webhook)
        # ("dead_letters", JSON lines): batches the webhook gave up on, reason webhook_failed
        dead_lines = op.merge("all_dead_letters", dead_lines, undelivered)
    if is_kafka_url(str(opts.dead_letter)):
        limit = message_limit(dict(opts.kafka_config))
        dead_messages = op.flat_map("dead_letter_messages", dead_lines, lambda item: dead_letter_messages(item, limit))
        # KafkaSinkMessage(key=input partition, value=one dead letter)
        op.output("write_dead_letters", dead_messages, kafka_sink(parse_kafka_url(str(opts.dead_letter)), kconf))
    else:
        op.output("write_dead_letters", dead_lines, LineFileSink(Path(opts.dead_letter)))

    exports: Any = op.filter_map("exports", outputs, lambda kv: keep(("warehouse", kv[1][1])) if kv[1][0] == EXPORT else None)
    # ("warehouse", Export, Sealed in a cluster)
    fingerprint = config.fingerprint
    profiles = config.profile_decays()
    snapshots = op.stateful_batch(
        "warehouse",
        exports,
        lambda resume: WarehouseLogic(opts.warehouse, 2 * shards, opts.snapshot_interval_s, fingerprint, resume,
                                      profiles),
    )
    # ("warehouse", snapshot summary dict)
    op.inspect("snapshot_log", snapshots, lambda _step, item: PROGRESS.published(str(item[1])))
    return flow
