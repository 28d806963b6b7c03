"""End to end: the real flow in a child process, the warehouse read by this process."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import load_config
from engine.decode import decode_line
from engine.events import Event
from engine.pipeline import LocalPipeline

from .conftest import CONFIG, last_snapshot, run_into, tables, trigger_ids

pytestmark = pytest.mark.slow


def test_flow_agrees_with_the_reference_pipeline(clickstream: Path, baseline: Path) -> None:
    """The Bytewax flow emits exactly the triggers of the in-memory reference run of the engine."""
    events = [e for e in map(decode_line, clickstream.read_bytes().splitlines()) if isinstance(e, Event)]
    pipe = LocalPipeline(load_config(CONFIG))
    pipe.feed(events, batch=2000)
    pipe.finish()
    assert sorted(trigger_ids(baseline / "triggers.jsonl")) == sorted(t.trigger_id for t in pipe.triggers)
    contacts = pipe.contacts()
    rows = tables(baseline / "warehouse.duckdb")["contacts"]
    assert {r[0] for r in rows} == set(contacts)
    stage = {r[0]: r[7] for r in rows}
    assert stage == {cid: c.stage for cid, c in contacts.items()}


@pytest.mark.parametrize("extra", [("--workers", "2"), ("--shards", "7"), ("--cut-every", "700"), ("--cut-every", "0")],
                         ids=["two_workers", "seven_shards", "cuts_every_700_lines", "cuts_by_time_only"])
def test_same_results_whatever_the_workers_and_shards(clickstream: Path, baseline: Path, tmp_path: Path, extra: tuple[str, ...]) -> None:
    """Worker count, shard count and cut cadence change nothing: identical warehouse tables and trigger ids."""
    run_into(tmp_path, [clickstream], *extra)
    assert tables(tmp_path / "warehouse.duckdb") == tables(baseline / "warehouse.duckdb")
    assert sorted(trigger_ids(tmp_path / "triggers.jsonl")) == sorted(trigger_ids(baseline / "triggers.jsonl"))


def _shuffle_within_lateness(lines: list[bytes], lateness_ms: int, seed: int) -> list[bytes]:
    """Reorder lines so no event arrives after one more than half the lateness newer.

    Sorting by event time plus a jitter below lateness/2 bounds how far behind the
    newest event so far any line can arrive. Undecodable lines keep their neighbours.
    """
    rng = random.Random(seed)
    keyed, last = [], 0
    for i, raw in enumerate(lines):
        e = decode_line(raw)
        if isinstance(e, Event):
            last = e.ts
        keyed.append((last + rng.uniform(0, lateness_ms / 2), i, raw))
    return [raw for _, _, raw in sorted(keyed)]


def test_same_results_whatever_the_arrival_order(clickstream: Path, baseline: Path, tmp_path: Path) -> None:
    """Lines shuffled within the allowed lateness give the same tables and triggers; nothing is late."""
    lines = clickstream.read_bytes().splitlines()
    shuffled = _shuffle_within_lateness(lines, load_config(CONFIG).settings.allowed_lateness_ms, seed=5)
    assert shuffled != lines
    path = tmp_path / "shuffled.jsonl"
    path.write_bytes(b"\n".join(shuffled) + b"\n")
    run_into(tmp_path / "out", [path])
    got, want = tables(tmp_path / "out" / "warehouse.duckdb"), tables(baseline / "warehouse.duckdb")
    assert got == want
    assert sorted(trigger_ids(tmp_path / "out" / "triggers.jsonl")) == sorted(trigger_ids(baseline / "triggers.jsonl"))
    assert last_snapshot(tmp_path / "out" / "warehouse.duckdb")["late"] == 0


def test_input_reconciles_and_dead_letters_keep_the_line(clickstream: Path, baseline: Path) -> None:
    """lines in = accepted + dead-lettered + duplicates; each dead letter has reason, detail, raw and source."""
    lines = clickstream.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    snap = last_snapshot(baseline / "warehouse.duckdb")
    assert snap["lines_read"] == len(lines)
    assert snap["accepted"] + snap["dead_lettered"] + snap["duplicates"] == len(lines)
    assert snap["buffered"] == 0
    assert snap["dead_lettered"] > 50 and snap["duplicates"] > 10
    dead = [orjson.loads(x) for x in (baseline / "dead_letters.jsonl").read_bytes().splitlines()]
    assert len(dead) == snap["dead_lettered"]
    reasons = {d["reason"] for d in dead}
    assert {"invalid_json", "not_an_object", "unknown_type", "missing_identity", "bad_timestamp", "too_large",
            "junk_identifier", "wrong_type", "empty_line"} <= reasons
    for d in dead:
        assert set(d) == {"reason", "detail", "raw", "source"} and d["detail"]
        file, _, line_no = d["source"].rpartition(":")
        assert file == str(clickstream)
        assert lines[int(line_no) - 1].decode("utf-8", "backslashreplace") == d["raw"]


def test_summary_and_exit_code(clickstream: Path, tmp_path: Path) -> None:
    """A finite run ends with a summary that names the counts and the outputs."""
    res = run_into(tmp_path, [clickstream])
    out = res.stdout
    for word in ("lines read", "reconciles", "accepted", "dead-lettered", "duplicates", "late", "contacts",
                 "triggers", "send_email", "throughput", "lines/s", "modules", "warehouse"):
        assert word in out, out
    # Dead letters by reason, like triggers by action: they add up to the dead-lettered count.
    rows = out.splitlines()
    at = next(i for i, l in enumerate(rows) if l.startswith("dead-lettered"))
    end = next(i for i, l in enumerate(rows) if l.startswith("duplicates"))
    by_reason = {l.split()[0]: int(l.split()[1].replace(",", "")) for l in rows[at + 1:end]}
    assert {"invalid_json", "too_large", "bad_timestamp"} <= by_reason.keys(), out
    assert sum(by_reason.values()) == int(rows[at].split()[1].replace(",", "")), out
    # The worker's time by step: every step of the flow took some, and the shares add up to the run.
    line = next(l for l in out.splitlines() if l.startswith("time by step"))
    shares = dict(re.findall(r"(\w+) (\d+)%", line))
    assert {"read", "decode", "identity", "contacts", "warehouse", "outputs", "other"} <= shares.keys(), line
    assert int(shares["identity"]) > 0 and int(shares["decode"]) > 0, line
    assert 96 <= sum(map(int, shares.values())) <= 104, line


def test_gzip_and_directory_inputs(clickstream: Path, baseline: Path, tmp_path: Path) -> None:
    """A directory of files, one of them gzip'd, reads like the single file it was split from."""
    import gzip

    lines = clickstream.read_bytes().splitlines(keepends=True)
    folder = tmp_path / "in"
    folder.mkdir()
    half = len(lines) // 2
    (folder / "a.jsonl").write_bytes(b"".join(lines[:half]))
    with gzip.open(folder / "b.jsonl.gz", "wb") as fh:
        fh.write(b"".join(lines[half:]))
    run_into(tmp_path / "out", [folder])
    got, want = tables(tmp_path / "out" / "warehouse.duckdb"), tables(baseline / "warehouse.duckdb")
    assert got == want


def test_a_line_over_the_line_limit_is_dead_lettered_by_its_start(tmp_path: Path) -> None:
    """A multi-megabyte line is never held whole: its dead letter keeps its first MiB and names its real size."""
    from flows.lines import MAX_LINE_BYTES

    def page(n: int) -> bytes:
        return orjson.dumps({"type": "page", "anonymousId": f"a{n}", "messageId": f"m{n}",
                             "timestamp": "2026-01-05T08:00:00Z"})

    huge = page(2)[:-1] + b',"properties":{"html":"' + b"x" * (3 * MAX_LINE_BYTES) + b'"}}'
    tail = b'{"junk":"' + b"y" * (2 * MAX_LINE_BYTES)  # unterminated, at the end of the file
    path = tmp_path / "events.jsonl"
    path.write_bytes(page(1) + b"\n" + huge + b"\r\n" + page(3) + b"\n" + tail)
    run_into(tmp_path / "out", [path])
    snap = last_snapshot(tmp_path / "out" / "warehouse.duckdb")
    assert (snap["lines_read"], snap["accepted"], snap["dead_lettered"]) == (4, 2, 2)
    dead = [orjson.loads(x) for x in (tmp_path / "out" / "dead_letters.jsonl").read_bytes().splitlines()]
    assert [d["source"] for d in dead] == [f"{path}:2", f"{path}:4"]
    assert [d["reason"] for d in dead] == ["too_large", "too_large"]
    assert [d["raw"].encode() for d in dead] == [huge[:MAX_LINE_BYTES], tail[:MAX_LINE_BYTES]]
    assert [d["detail"] for d in dead] == [
        f"{len(huge)} bytes; the limit is 32768; raw keeps only its first {MAX_LINE_BYTES} bytes",
        f"{len(tail)} bytes; the limit is 32768; raw keeps only its first {MAX_LINE_BYTES} bytes"]


def test_a_deeply_nested_line_is_dead_lettered_and_the_run_goes_on(tmp_path: Path) -> None:
    """JSON nested past what orjson writes back (254 levels) once stopped the run in whichever step
    wrote the event out; now it is a too_large dead letter and the lines around it are applied."""

    def event(n: int, key: str = "properties", levels: int = 0) -> bytes:
        head = orjson.dumps({"type": "identify" if key == "traits" else "page", "anonymousId": f"a{n}",
                             "userId": f"u{n}", "messageId": f"m{n}", "timestamp": "2026-01-05T08:00:00Z"})
        if not levels:
            return head
        return head[:-1] + f',"{key}":'.encode() + b'{"a":' * levels + b"1" + b"}" * levels + b"}"

    lines = [event(1), event(2, "properties", 300), event(3, "context", 300), event(4, "traits", 300), event(5)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    run_into(tmp_path / "out", [path])
    snap = last_snapshot(tmp_path / "out" / "warehouse.duckdb")
    assert (snap["lines_read"], snap["accepted"], snap["dead_lettered"]) == (5, 2, 3)
    dead = [orjson.loads(x) for x in (tmp_path / "out" / "dead_letters.jsonl").read_bytes().splitlines()]
    assert [(d["reason"], d["source"]) for d in dead] == [("too_large", f"{path}:{n}") for n in (2, 3, 4)]
    assert all(d["detail"] == "nested 301 levels deep (at most 64)" for d in dead)


def _run_lines(tmp_path: Path, lines: list[dict[str, Any]]) -> Any:
    """Run ``lines`` (messageIds added by position) into tmp_path/out; the warehouse, open read-only."""
    import duckdb

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(dict(x, messageId=f"m{i}")) + b"\n" for i, x in enumerate(lines)))
    run_into(tmp_path / "out", [path])
    return duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)


def test_an_anonymous_id_equal_to_the_user_id_is_one_contact_in_the_warehouse(tmp_path: Path) -> None:
    """A tracker sending the userId as anonymousId too: one known row, with the anonymous history
    (before, the anonymous profile's row stood in for the known contact, without its e-mail)."""
    lines = [
        {"type": "page", "anonymousId": "user-42", "properties": {"path": "/pricing"}, "timestamp": "2026-01-05T08:00:01Z"},
        {"type": "identify", "anonymousId": "user-42", "userId": "user-42", "traits": {"email": "u42@example.com"},
         "timestamp": "2026-01-05T08:00:02Z"},
        {"type": "track", "userId": "user-42", "event": "Form Submitted", "timestamp": "2026-01-05T08:00:03Z"},
    ]
    con = _run_lines(tmp_path, lines)
    try:
        rows = con.execute("SELECT contact_id, user_id, email, anonymous_ids, events FROM contacts").fetchall()
        assert rows == [("user-42", "user-42", "u42@example.com", ["user-42"], 3)]
        assert con.execute("SELECT count(*) FROM events WHERE contact_id = 'user-42'").fetchone() == (3,)
    finally:
        con.close()


@pytest.mark.parametrize("order", ["anonymous_first", "known_first"])
def test_a_known_contact_whose_id_was_another_persons_device_stays_in_the_warehouse(tmp_path: Path, order: str) -> None:
    """x1 browses anonymously and identifies as x2; a userId x1 (someone else) appears too. The merge's
    tombstone for device x1 once hid contact x1 from the warehouse, while its triggers were there."""
    lines = [
        {"type": "page", "anonymousId": "x1", "properties": {"path": "/"}, "timestamp": "2026-01-05T08:00:01Z"},
        {"type": "identify", "anonymousId": "x1", "userId": "x2", "traits": {"email": "x2@example.com"},
         "timestamp": "2026-01-05T08:00:02Z"},
        {"type": "track", "userId": "x1", "event": "Form Submitted", "traits": {"email": "x1@example.com"},
         "timestamp": "2026-01-05T08:00:03Z"},
    ]
    if order == "known_first":
        lines = [dict(lines[2], timestamp="2026-01-05T08:00:00Z"), *lines[:2]]
    con = _run_lines(tmp_path, lines)
    try:
        rows = con.execute("SELECT contact_id, user_id, email FROM contacts ORDER BY 1").fetchall()
        assert rows == [("x1", "x1", "x1@example.com"), ("x2", "x2", "x2@example.com")]
        assert con.execute("SELECT count(*) FROM contact_scores WHERE contact_id = 'x1'").fetchone()[0] > 0
        assert {r[0] for r in con.execute("SELECT contact_id FROM triggers").fetchall()} <= {"x1", "x2"}
    finally:
        con.close()
