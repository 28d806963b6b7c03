"""Kafka in and out, through Bytewax's own connector (``bytewax.connectors.kafka``, confluent-kafka).

Input: every Kafka partition of the topic is one source partition, read with Bytewax's
``KafkaSource`` (consumer ``assign()``, no consumer group; the read offset is the
partition's recovery snapshot). Each message value is one JSONL line. The partition is
wrapped so that it emits the same ``SourceBatch`` items as the file sources, so the
router cannot tell the difference: ``part`` and ``file`` are ``topic:partition`` and line
numbers are offsets, so a dead letter's source reads ``topic:partition:offset``.

Kafka partitions never end: a Kafka run is a follow-mode run (a quiet partition advances
its watermark with the wall clock) until it is stopped, unless ``eof`` is set, which
ends each partition when it has read everything the broker had (librdkafka's
partition-EOF, which compares with the high watermark of each fetch response).

Output: triggers become one message each, keyed by contact_id, so one contact's triggers
land in one Kafka partition in the order they were emitted; dead letters are keyed by
the input partition they came from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from engine.decode import too_large_detail

from .lines import MAX_LINE_BYTES
from .progress import PROGRESS, timed
from .sources import IDLE_AFTER_S, MAX_BATCH_LINES, POLL, STOP, SourceBatch


def message_batches(name: str, msgs: list[Any]) -> list[SourceBatch]:
    """One partition's fetched messages as batches of lines, a new batch wherever offsets skip.

    A message longer than the file sources' line limit is cut to it and judged ``too_large``
    here, as a file line would be: the broker's own limit (1 MB by default) may be raised.
    """
    batches: list[SourceBatch] = []
    current: SourceBatch | None = None
    for msg in msgs:
        value = msg.value if msg.value is not None else b""  # a tombstone is an empty line: dead-lettered
        if current is None or msg.offset != current.first_line + len(current.lines) \
                or len(current.lines) >= MAX_BATCH_LINES:
            current = SourceBatch(name, msg.offset, name, [])
            batches.append(current)
        line = value.rstrip(b"\r\n")
        if len(line) > MAX_LINE_BYTES:
            if current.judged is None:
                current.judged = {}
            current.judged[len(current.lines)] = ("too_large", too_large_detail(len(line), MAX_LINE_BYTES))
            line = line[:MAX_LINE_BYTES]
        current.lines.append(line)
    return batches


@dataclass(frozen=True)
class KafkaAddress:
    """A parsed ``kafka://host:port[,host:port...]/topic``."""

    brokers: tuple[str, ...]
    topic: str

    @property
    def bootstrap(self) -> str:
        """The brokers as librdkafka's ``bootstrap.servers``."""
        return ",".join(self.brokers)


def is_kafka_url(text: str | None) -> bool:
    """Whether a --input/--triggers/--dead-letter argument names a Kafka topic."""
    return bool(text) and str(text).startswith("kafka://")


def parse_kafka_url(url: str) -> KafkaAddress:
    """``kafka://h1:9092,h2:9092/topic`` -> brokers and topic; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ValueError(f"{url}: expected kafka://host:port/topic")
    brokers = tuple(b.strip() for b in parts.netloc.split(",") if b.strip())
    topic = parts.path.lstrip("/")
    if not brokers or not topic or "/" in topic:
        raise ValueError(f"{url}: expected kafka://host:port[,host:port...]/topic")
    for b in brokers:
        host, _, port = b.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{url}: broker {b!r} is not host:port")
    return KafkaAddress(brokers, topic)


def kafka_config(extra: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings added to every client; ``extra`` (from --kafka-config) wins."""
    return dict(extra or {})


def list_kafka_parts(addr: KafkaAddress, config: dict[str, str] | None = None, timeout_s: float = 10.0) -> list[str]:
    """The input partitions of a topic, ``topic:N`` in partition order; fails if the topic is missing."""
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": addr.bootstrap, **kafka_config(config)})
    # All topics, not just this one: asking for one topic by name may auto-create it.
    try:
        meta = client.list_topics(timeout=timeout_s)
    except Exception as ex:  # noqa: BLE001 - KafkaException: no broker answered
        raise ValueError(f"kafka://{addr.bootstrap}/{addr.topic}: no broker answered ({ex})") from None
    topic = meta.topics.get(addr.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        why = "no such topic; create it first" if topic is None else (
            topic.error.str() if topic.error is not None else "no partitions")
        raise ValueError(f"kafka://{addr.bootstrap}/{addr.topic}: cannot read the topic ({why})")
    return [f"{addr.topic}:{i}" for i in sorted(topic.partitions)]


# After this long without messages a followed partition counts as idle even if the broker's
# watermarks say it has more (see _caught_up).
QUIET_FALLBACK_S = 2.0


class _KafkaLinePartition(StatefulSourcePartition[SourceBatch, Any]):
    """One Kafka partition, read by Bytewax's partition, handed out as ``SourceBatch`` items."""

    def __init__(self, name: str, inner: StatefulSourcePartition, follow: bool) -> None:
        self.name = name
        self.inner = inner
        self.follow = follow
        self.sent_eof = False
        self.last_data = time.monotonic()
        self.was_empty = False

    def _marker(self, eof: bool = False, idle_ms: int = 0) -> SourceBatch:
        offset = self.inner.snapshot()
        return SourceBatch(self.name, offset if isinstance(offset, int) and offset >= 0 else 0, self.name, [],
                           eof=eof, idle_ms=idle_ms)

    @timed("read")
    def next_batch(self) -> list[SourceBatch]:
        """Messages as line batches (split where offsets jump), or an idle/EOF marker."""
        if self.sent_eof:
            raise StopIteration
        if STOP.is_set():
            self.sent_eof = True
            return [self._marker(eof=True)]
        try:
            msgs = self.inner.next_batch()
        except StopIteration:
            # Only with eof: librdkafka reported the end of the partition.
            self.sent_eof = True
            return [self._marker(eof=True)]
        if not msgs:
            self.was_empty = True
            idle = time.monotonic() - self.last_data
            # Caught up: idle at once. Otherwise only after a longer quiet spell, so a broker
            # whose reported watermarks are off cannot hold the watermark (and timers) forever.
            if self.follow and idle >= IDLE_AFTER_S and (idle >= QUIET_FALLBACK_S or self._caught_up()):
                return [self._marker(idle_ms=int(idle * 1000))]
            return []
        self.was_empty = False
        self.last_data = time.monotonic()
        fetched = list(msgs)
        batches = message_batches(self.name, fetched)
        PROGRESS.add_read(self.name, sum(len(m.value or b"") for m in fetched), sum(len(b.lines) for b in batches))
        return batches

    def _caught_up(self) -> bool:
        """Whether this partition has read everything the last fetch response said the broker had.

        A Kafka partition that delivers nothing for a moment is not necessarily idle: the
        consumer may still be connecting, or a fetch may be slow. Declaring it idle would
        let the watermark run ahead of data it has yet to deliver, which would then be late.
        Only a partition whose read position has reached the high watermark of its latest
        fetch (cached by librdkafka, no broker round trip; unlike the listed high watermark,
        Tansu reports this one right) counts as idle.
        """
        consumer = getattr(self.inner, "_consumer", None)  # Bytewax 0.21's partition reader
        if consumer is None:
            return True
        from confluent_kafka import TopicPartition

        topic, _, idx = self.name.rpartition(":")
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, int(idx)), cached=True)
        except Exception:  # noqa: BLE001 - no fetch answered yet
            return False
        if high is None or high < 0:
            return False
        offset = self.inner.snapshot()
        position = offset if isinstance(offset, int) and offset >= 0 else 0
        return position >= high

    def next_awake(self) -> datetime | None:
        """Back off for a poll interval after an empty fetch instead of spinning."""
        if self.was_empty:
            return datetime.now(timezone.utc) + POLL
        return None

    def snapshot(self) -> Any:
        """The next offset to read (Bytewax's own Kafka snapshot)."""
        return self.inner.snapshot()

    def close(self) -> None:
        """Close the consumer."""
        self.inner.close()


class KafkaLineSource(FixedPartitionedSource[SourceBatch, Any]):
    """A Kafka topic as line partitions ``topic:N``, one per Kafka partition."""

    def __init__(self, addr: KafkaAddress, parts: list[str], eof: bool, config: dict[str, str] | None = None,
                 batch_size: int = 1000) -> None:
        from bytewax.connectors.kafka import KafkaSource

        self.addr = addr
        self.parts = parts
        self.eof = eof
        self.inner = KafkaSource(list(addr.brokers), [addr.topic], tail=not eof, add_config=kafka_config(config),
                                 batch_size=batch_size)

    def list_parts(self) -> list[str]:
        """The partitions listed when the run started (every process lists the same)."""
        return list(self.parts)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _KafkaLinePartition:
        """Open Bytewax's partition reader at the resume offset and wrap it."""
        topic, _, idx = for_part.rpartition(":")
        inner = self.inner.build_part(step_id, f"{idx}-{topic}", resume_state)
        return _KafkaLinePartition(for_part, inner, follow=not self.eof)


# ------------------------------------------------------------------ sinks


def trigger_messages(item: tuple[str, str]) -> list[Any]:
    """("triggers", "line\\nline...") -> one KafkaSinkMessage per trigger, keyed by contact_id."""
    from bytewax.connectors.kafka import KafkaSinkMessage

    out = []
    for line in item[1].split("\n"):
        if line:
            out.append(KafkaSinkMessage(key=str(orjson.loads(line)["contact_id"]).encode(), value=line.encode()))
    return out


def dead_letter_messages(item: tuple[str, str]) -> list[Any]:
    """("dead_letters", "line\\nline...") -> one KafkaSinkMessage per dead letter, keyed by input partition."""
    from bytewax.connectors.kafka import KafkaSinkMessage

    out = []
    for line in item[1].split("\n"):
        if line:
            source = str(orjson.loads(line).get("source") or "")
            out.append(KafkaSinkMessage(key=source.rpartition(":")[0].encode() or None, value=line.encode()))
    return out


def kafka_sink(addr: KafkaAddress, config: dict[str, str] | None = None) -> Any:
    """Bytewax's KafkaSink for a topic (at least once: a resumed run repeats the resume epoch)."""
    from bytewax.connectors.kafka import KafkaSink

    return KafkaSink(list(addr.brokers), addr.topic, add_config={"linger.ms": "5", **kafka_config(config)})
