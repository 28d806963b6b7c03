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
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from engine.decode import too_large_detail

from .lines import MAX_LINE_BYTES
from .progress import PROGRESS, timed
from .sources import IDLE_AFTER_S, MAX_BATCH_LINES, POLL, STARTED, STOP, SourceBatch


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
    if parts.query or parts.fragment:
        # Settings go in --kafka-config; a query string was dropped without a word.
        raise ValueError(f"{url}: a kafka:// address takes no ?query or #fragment; pass client settings with "
                         "--kafka-config KEY=VALUE")
    brokers = tuple(b.strip() for b in parts.netloc.split(",") if b.strip())
    topic = parts.path.lstrip("/")
    if not brokers or not topic or "/" in topic:
        raise ValueError(f"{url}: expected kafka://host:port[,host:port...]/topic")
    for b in brokers:
        host, _, port = b.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{url}: broker {b!r} is not host:port")
    return KafkaAddress(brokers, topic)


# librdkafka's default message.max.bytes, and what a message's key and framing take beside its value.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
MESSAGE_OVERHEAD = 1024
PRODUCER_DEFAULTS = {"linger.ms": "5"}


def kafka_config(extra: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings added to every client; ``extra`` (from --kafka-config) wins."""
    return dict(extra or {})


def check_kafka_config(config: dict[str, str], consumer: bool, producer: bool) -> None:
    """Create the kinds of client a run will create, without a broker, so that a bad --kafka-config
    setting is found before anything runs; ValueError quotes librdkafka's reason.

    librdkafka checks its settings when a client is created, and the run's own clients are
    created inside the flow, where an unknown key or a bad value came out as a Rust panic.
    """
    from confluent_kafka import Consumer, KafkaException, Producer

    quiet = {"log_level": "0"}  # no warnings about the missing bootstrap.servers
    try:
        if consumer:
            Consumer({"group.id": "leadstream-check", **config, **quiet}).close()
        if producer:
            Producer({**PRODUCER_DEFAULTS, **config, **quiet}).flush(0)
    except KafkaException as ex:
        err = ex.args[0] if ex.args else ex
        raise ValueError(f"--kafka-config: {err.str() if hasattr(err, 'str') else err}") from None


def _topic(addr: KafkaAddress, config: dict[str, str] | None, timeout_s: float, use: str) -> Any:
    """A topic's metadata; ValueError when no broker answers or the topic does not exist."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        # Quiet unless asked otherwise: an unreachable broker is reported below, once, and
        # librdkafka logged a line per attempt meanwhile (some 200 in the 10 s it waits).
        client = AdminClient({"bootstrap.servers": addr.bootstrap, "log_level": "0", **kafka_config(config)})
    except KafkaException as ex:
        err = ex.args[0] if ex.args else ex
        raise ValueError(f"--kafka-config: {err.str() if hasattr(err, 'str') else err}") from None
    # All topics, not just this one: asking for one topic by name may auto-create it.
    try:
        meta = client.list_topics(timeout=timeout_s)
    except Exception as ex:  # noqa: BLE001 - KafkaException: no broker answered
        raise ValueError(f"kafka://{addr.bootstrap}/{addr.topic}: no broker answered ({ex})") from None
    _CLUSTERS[addr.bootstrap] = getattr(meta, "cluster_id", None)
    topic = meta.topics.get(addr.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        why = "no such topic; create it first" if topic is None else (
            topic.error.str() if topic.error is not None else "no partitions")
        raise ValueError(f"kafka://{addr.bootstrap}/{addr.topic}: cannot {use} the topic ({why})")
    return topic


def list_kafka_parts(addr: KafkaAddress, config: dict[str, str] | None = None, timeout_s: float = 10.0) -> list[str]:
    """The input partitions of a topic, ``topic:N`` in partition order; fails if the topic is missing."""
    topic = _topic(addr, config, timeout_s, "read")
    return [f"{addr.topic}:{i}" for i in sorted(topic.partitions)]


def check_output_topic(addr: KafkaAddress, config: dict[str, str] | None = None, timeout_s: float = 10.0) -> None:
    """Fail unless a broker answers and the output topic exists.

    Produced towards a broker that never answers, triggers waited in the client until its
    message timeout (5 minutes) and were then dropped, and the run reported them written.
    """
    _topic(addr, config, timeout_s, "write to")


# The cluster id each bootstrap list answered with, as the topic checks found it.
_CLUSTERS: dict[str, str | None] = {}


def same_topic(a: KafkaAddress, b: KafkaAddress) -> bool:
    """Whether two addresses name one topic of one cluster: the same name, and a broker in common or,
    once both were checked (``_topic``), the same cluster id (localhost:9092 and 127.0.0.1:9092 are one)."""
    if a.topic != b.topic:
        return False
    if set(a.brokers) & set(b.brokers):
        return True
    ids = _CLUSTERS.get(a.bootstrap), _CLUSTERS.get(b.bootstrap)
    return ids[0] is not None and ids[0] == ids[1]


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
        STARTED.set()
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


def message_limit(config: dict[str, str] | None) -> int:
    """The largest message value the producer takes: its ``message.max.bytes`` less room for the key
    and the record's framing."""
    try:
        limit = int((config or {}).get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
    except ValueError:
        limit = DEFAULT_MESSAGE_MAX_BYTES
    # The framing's room, but never more than half of a small limit (librdkafka takes 1,000 and up).
    return max(1, limit - min(MESSAGE_OVERHEAD, limit // 2))


def fit_dead_letter(line: str, limit: int) -> str:
    """A dead letter's JSON line cut to ``limit`` bytes by shortening its ``raw``, which ``detail`` then says.

    A dead letter keeps up to 1 MiB of its line, and a batch the webhook refused is one
    dead letter: over the producer's 1 MB default, it stopped the run at every resume.
    """
    encoded = line.encode()
    if len(encoded) <= limit:
        return line
    record = orjson.loads(line)
    raw = str(record.get("raw") or "")
    detail = str(record.get("detail") or "")
    keep = len(raw)
    while True:
        # Escaping makes a character up to 6 bytes of JSON: cut by what is over, then check.
        keep = max(0, keep - (len(encoded) - limit) - 64)
        note = f"; raw keeps only its first {keep} characters, to fit the topic's message size"
        out = orjson.dumps(dict(record, raw=raw[:keep], detail=detail + note))
        if len(out) <= limit or keep == 0:
            return out.decode()
        encoded = out


def dead_letter_messages(item: tuple[str, str], limit: int = DEFAULT_MESSAGE_MAX_BYTES - MESSAGE_OVERHEAD) -> list[Any]:
    """("dead_letters", "line\\nline...") -> one KafkaSinkMessage per dead letter, keyed by input partition."""
    from bytewax.connectors.kafka import KafkaSinkMessage

    out = []
    for line in item[1].split("\n"):
        if line:
            line = fit_dead_letter(line, limit)
            source = str(orjson.loads(line).get("source") or "")
            out.append(KafkaSinkMessage(key=source.rpartition(":")[0].encode() or None, value=line.encode()))
    return out


class KafkaDeliveryError(RuntimeError):
    """Messages the broker did not take (after librdkafka's own retries)."""


class _CheckedPartition(StatelessSinkPartition[Any]):
    """Bytewax's Kafka sink partition, and a failed delivery fails the batch that flushed it."""

    def __init__(self, inner: Any, failures: list[Any], url: str) -> None:
        self.inner, self.failures, self.url = inner, failures, url

    def write_batch(self, items: list[Any]) -> None:
        """Produce and flush (Bytewax's partition), then raise on any message the broker refused."""
        self.inner.write_batch(items)
        self._check()

    def _check(self) -> None:
        if self.failures:
            n, first = len(self.failures), self.failures[0]
            self.failures.clear()
            raise KafkaDeliveryError(f"{self.url}: {n} message(s) not delivered ({first}); the output misses them. "
                                     "Fix the broker or topic, then run the same command again (with --recovery DIR "
                                     "it resumes from the last snapshot and sends them again)")

    def close(self) -> None:
        """Flush what is left, then raise on any message the broker refused."""
        self.inner.close()
        self._check()


class CheckedKafkaSink(DynamicSink[Any]):
    """Bytewax's KafkaSink, with delivery reports checked.

    Bytewax's own sink flushes after every batch but never looks at what was delivered, so
    messages the broker refused (too large, no such topic, no broker within the message
    timeout) were dropped while the run went on and reported them written.
    """

    def __init__(self, addr: KafkaAddress, config: dict[str, str] | None = None) -> None:
        self.addr = addr
        self.config = {**PRODUCER_DEFAULTS, **kafka_config(config)}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CheckedPartition:
        """Build Bytewax's partition with a delivery callback that collects failures."""
        from bytewax.connectors.kafka import KafkaSink

        failures: list[Any] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err.str() if hasattr(err, "str") else err)

        # confluent-kafka takes a callable for on_delivery in the settings, beside librdkafka's strings.
        settings: dict[str, Any] = {**self.config, "on_delivery": delivered}
        inner = KafkaSink(list(self.addr.brokers), self.addr.topic, add_config=settings)
        url = f"kafka://{self.addr.bootstrap}/{self.addr.topic}"
        return _CheckedPartition(inner.build(step_id, worker_index, worker_count), failures, url)


def kafka_sink(addr: KafkaAddress, config: dict[str, str] | None = None) -> CheckedKafkaSink:
    """A Kafka sink for a topic (at least once: a resumed run repeats the resume epoch)."""
    return CheckedKafkaSink(addr, config)
