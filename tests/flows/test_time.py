"""Event time in the running flow: idle streams still fire timers, and a live run equals its replay."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import orjson
import pytest

from engine.timeutil import format_ms, parse_iso_ms

from .conftest import ROOT, last_snapshot, run_into

pytestmark = pytest.mark.slow

QUICK = """
[settings]
allowed_lateness = "5s"

[workflows.quick_cart]
trigger = { event = { all = [{ field = "event.name", op = "eq", value = "Product Added" }] } }
entry = "if_not_active"
exit_when = { all = [{ field = "event.name", op = "eq", value = "Order Completed" }] }
steps = [
  { wait = "2s", restart_on = { all = [{ field = "event.name", op = "eq", value = "Product Added" }] } },
  { action = "send_email", params = { template = "cart_reminder" } },
]

[workflows.quick_welcome]
trigger = { event = { all = [{ field = "event.type", op = "eq", value = "identify" }] } }
entry = "once"
steps = [
  { action = "send_email", params = { template = "welcome" } },
  { wait = "1500ms" },
  { action = "send_email", params = { template = "welcome_2" } },
]
"""


def _line(n: int, ts_ms: int, **fields: object) -> bytes:
    return orjson.dumps({"messageId": f"live-{n}", "timestamp": format_ms(ts_ms), **fields}) + b"\n"


def _start_follow(config: Path, folder: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(config), "--input", str(folder), "--follow",
         "--warehouse", str(out / "w.duckdb"), "--triggers", str(out / "t.jsonl"), "--snapshot-interval", "1", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def _triggers(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def test_idle_stream_fires_timers_within_a_second(tmp_path: Path) -> None:
    """With --follow, a stream that goes quiet still fires a due timer once the allowed lateness has passed it.

    The watermark of a quiet stream follows the wall clock minus the lateness (5 s here),
    as it would if events kept coming, so the timer fires within a second after that.
    """
    config = tmp_path / "quick.toml"
    config.write_text(QUICK)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "live.jsonl").write_bytes(b"")
    proc = _start_follow(config, folder, out)
    try:
        time.sleep(2.0)  # let the flow start and reach the empty file
        ts = int(time.time() * 1000)
        with (folder / "live.jsonl").open("ab") as fh:
            fh.write(_line(1, ts, type="track", event="Product Added", userId="u1"))
        due = ts + 2000
        seen = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and seen is None:
            if any(t["params"].get("template") == "cart_reminder" for t in _triggers(out / "t.jsonl")):
                seen = time.time() * 1000
            time.sleep(0.02)
    finally:
        _stop(proc)
    assert seen is not None, "the timer never fired while the stream was idle"
    reminder = next(t for t in _triggers(out / "t.jsonl") if t["params"].get("template") == "cart_reminder")
    assert parse_iso_ms(reminder["event_time"]) == due, "a timer's trigger carries its due time"
    lateness = 5000
    assert lateness <= seen - due < lateness + 1500, f"fired {seen - due:.0f} ms after its due time"


def test_a_followed_run_stopped_after_a_quiet_spell_publishes_everything(tmp_path: Path) -> None:
    """Stopped after the idle watermark has carried the shards past the newest event, the final snapshot
    holds the last events and triggers: its cut was the newest event's time, behind where the contact
    stage ended, and with no snapshot due before (a long --snapshot-interval) none was published."""
    config = tmp_path / "quick.toml"
    config.write_text(QUICK)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "live.jsonl").write_bytes(b"")
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(config), "--input", str(folder), "--follow",
         "--warehouse", str(out / "w.duckdb"), "--triggers", str(out / "t.jsonl"), "--snapshot-interval", "600",
         "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
        with (folder / "live.jsonl").open("ab") as fh:
            fh.write(_line(1, int(time.time() * 1000), type="track", event="Product Added", userId="u1"))
        deadline = time.monotonic() + 30  # the reminder fires 2 s + the lateness later, while idle
        while time.monotonic() < deadline and not _triggers(out / "t.jsonl"):
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        _stop(proc)
    assert [t["params"]["template"] for t in _triggers(out / "t.jsonl")] == ["cart_reminder"]
    snap = last_snapshot(out / "w.duckdb")
    assert (snap["lines_read"], snap["accepted"], snap["buffered"]) == (1, 1, 0), snap
    con = duckdb.connect(str(out / "w.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)
        assert con.execute("SELECT action FROM triggers").fetchall() == [("send_email",)]
    finally:
        con.close()


def test_live_run_equals_fast_replay(tmp_path: Path) -> None:
    """The same log gives the same trigger ids and event times live (--follow, appended over time) and replayed."""
    config = tmp_path / "quick.toml"
    config.write_text(QUICK)
    folder, out = tmp_path / "in", tmp_path / "live"
    folder.mkdir()
    log = folder / "live.jsonl"
    log.write_bytes(b"")
    proc = _start_follow(config, folder, out)
    script = [  # (seconds after start, event fields)
        (0.0, {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}}),
        (0.3, {"type": "track", "event": "Product Added", "userId": "u1"}),
        (0.9, {"type": "track", "event": "Product Added", "userId": "u1"}),
        (1.2, {"type": "identify", "userId": "u2", "anonymousId": "d2"}),
        (1.5, {"type": "track", "event": "Product Added", "userId": "u2"}),
        (2.2, {"type": "track", "event": "Order Completed", "userId": "u2"}),
        (4.5, {"type": "track", "event": "Product Added", "userId": "u1"}),
        (7.5, {"type": "page", "anonymousId": "d9"}),  # after every due time: both runs reach it
    ]
    try:
        time.sleep(2.0)
        start = int(time.time() * 1000)
        for n, (offset, fields) in enumerate(script):
            wait = start / 1000 + offset - time.time()
            if wait > 0:
                time.sleep(wait)
            with log.open("ab") as fh:
                fh.write(_line(n, int(time.time() * 1000), **fields))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (out / "w.duckdb").exists() and last_snapshot(out / "w.duckdb")["accepted"] == len(script):
                break
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        _stop(proc)
    live = {(t["trigger_id"], t["event_time"]) for t in _triggers(out / "t.jsonl")}
    replayed_out = tmp_path / "replayed"
    run_into(replayed_out, [log], config=config)
    replayed = {(t["trigger_id"], t["event_time"]) for t in _triggers(replayed_out / "triggers.jsonl")}
    last_ts = parse_iso_ms(orjson.loads(log.read_bytes().splitlines()[-1])["timestamp"])
    # The live run keeps firing timers after the last event as wall time passes; a replay
    # ends at the last event's time. Up to that instant they must agree exactly.
    live_until_end = {(i, t) for i, t in live if parse_iso_ms(t) <= last_ts}
    assert replayed == live_until_end
    templates = sorted(t["params"]["template"] for t in _triggers(replayed_out / "triggers.jsonl"))
    assert templates == ["cart_reminder", "cart_reminder", "welcome", "welcome", "welcome_2", "welcome_2"]
    assert last_snapshot(out / "w.duckdb")["late"] == 0
