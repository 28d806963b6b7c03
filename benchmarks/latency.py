"""End-to-end latency in --follow mode: event appended to a followed file -> trigger line written.

Events of the standard workload are re-stamped with the wall clock as they are appended
(a live stream's timestamps are "now"), each with a fresh messageId, at a fixed rate.
A watcher tails the triggers file; a trigger's `reason.cause` names the messageId that
caused it (`<messageId>@<device>` for a device linked to a known contact, and a derived
trigger's `<messageId>/<pass>`), so latency = time the trigger line
was seen - time its event was appended and flushed. Triggers that a workflow timer fires
later (their event_time is after the event's, e.g. "wait 30s") are measured separately,
from their due time. Watermarks hold every event for the
allowed lateness (5 s) before it is applied, so about 5 s is the floor by design.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent


def _events(source: Path, n: int) -> list[dict]:
    out: list[dict] = []
    with source.open("rb") as fh:
        for line in fh:
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(e, dict) and isinstance(e.get("messageId"), str) and isinstance(e.get("timestamp"), str) \
                    and e.get("type") in ("identify", "track", "page", "screen", "alias", "group") \
                    and (isinstance(e.get("anonymousId"), str) or isinstance(e.get("userId"), str)):
                out.append(e)
                if len(out) >= n:
                    break
    return out


def _iso_now() -> tuple[str, int]:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z", int(now.timestamp() * 1000)


def parse_iso_ms(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


class _Watcher(threading.Thread):
    def __init__(self, path: Path, appended: dict[str, tuple[float, int]]) -> None:
        super().__init__(daemon=True)
        self.path, self.appended = path, appended
        self.latencies: list[float] = []
        self.timer_latencies: list[float] = []  # triggers a workflow wait fired later: seen - due
        self.triggers = 0
        self.unmatched = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.path.exists() and not self.stop.is_set():
            time.sleep(0.01)
        if self.stop.is_set():
            return
        buf = b""
        with self.path.open("rb") as fh:
            while True:
                chunk = fh.read()
                seen = time.time()
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if not line:
                            continue
                        self.triggers += 1
                        try:
                            trig = orjson.loads(line)
                            cause = trig.get("reason", {}).get("cause")
                            due_ms = parse_iso_ms(trig.get("event_time"))
                        except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
                            cause, due_ms = None, None
                        hit = self.appended.get(str(cause).split("/")[0].split("@")[0]) if cause else None
                        if hit is None:
                            self.unmatched += 1
                            continue
                        t, stamp_ms = hit
                        wait_s = (due_ms - stamp_ms) / 1000 if due_ms is not None else 0.0
                        if wait_s > 1.0:  # fired by a timer (e.g. "wait 30s"): due that much later
                            self.timer_latencies.append(seen - t - wait_s)
                        else:
                            self.latencies.append(seen - t)
                elif self.stop.is_set():
                    return
                else:
                    time.sleep(0.005)


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def measure(config: Path, source: Path, rate: float, duration_s: float, work: Path, log=print) -> dict[str, Any]:
    """Append `rate` events/s for `duration_s` to a followed file; return latency figures."""
    folder = work / "follow"
    folder.mkdir(parents=True, exist_ok=True)
    events_file = folder / "events.jsonl"
    triggers = folder / "triggers.jsonl"
    for p in (events_file, triggers):
        p.unlink(missing_ok=True)
    events_file.touch()
    pool = _events(source, int(rate * duration_s) + 10)
    cmd = [sys.executable, "-m", "leadstream.cli", "run", "--config", str(config), "--input", str(events_file),
           "--follow", "--warehouse", str(folder / "warehouse.duckdb"), "--triggers", str(triggers),
           "--dead-letter", str(folder / "dead_letters.jsonl"), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=open(folder / "stderr.txt", "wb"))
    appended: dict[str, tuple[float, int]] = {}
    watcher = _Watcher(triggers, appended)
    watcher.start()
    try:
        # Warm up: a few events stamped now; the flow is up once their triggers arrive.
        warm = _events(source, 200)
        with events_file.open("ab") as fh:
            stamp, _ = _iso_now()
            fh.write(b"".join(orjson.dumps(dict(e, messageId=f"warm-{i}", timestamp=stamp)) + b"\n"
                             for i, e in enumerate(warm)))
        deadline = time.time() + 90
        while not watcher.triggers and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if not watcher.triggers:
            return {"error": f"leadstream run --follow wrote no trigger within 90 s (exit {proc.poll()}); "
                             "see follow/stderr.txt in the work folder"}
        time.sleep(1.0)
        from .run import _system_cpu

        try:
            import psutil

            me = psutil.Process(proc.pid)
            own0 = sum(me.cpu_times()[:2])
        except Exception:
            me, own0 = None, 0.0
        sys0 = _system_cpu()
        started = time.time()
        sent = 0
        tick = 0.01
        with events_file.open("ab") as fh:
            while sent < len(pool):
                elapsed = time.time() - started
                if elapsed >= duration_s:
                    break
                due = min(len(pool), int(rate * elapsed) + 1)
                if due > sent:
                    stamp, stamp_ms = _iso_now()
                    ids = []
                    parts = []
                    for i in range(sent, due):
                        e = pool[i]
                        mid = f"lat-{i}"
                        e["messageId"], e["timestamp"] = mid, stamp
                        ids.append(mid)
                        parts.append(orjson.dumps(e))
                    fh.write(b"\n".join(parts) + b"\n")
                    fh.flush()
                    t = time.time()
                    for mid in ids:
                        appended[mid] = (t, stamp_ms)
                    sent = due
                time.sleep(tick)
        window = max(time.time() - started, 1e-9)
        achieved = sent / window
        other = None
        if me is not None:
            try:
                other = max(0.0, _system_cpu() - sys0 - (sum(me.cpu_times()[:2]) - own0)) / window
            except Exception:
                other = None
        time.sleep(8.0)  # let the tail pass the watermark (idle inputs follow the wall clock)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        watcher.stop.set()
        watcher.join(timeout=10)
    lat = watcher.latencies
    return {
        "rate_target": rate, "rate_achieved": achieved, "duration_s": duration_s, "events_appended": sent,
        "triggers_seen": watcher.triggers, "triggers_unmatched": watcher.unmatched, "triggers_matched": len(lat),
        "p50_s": _pct(lat, 50), "p90_s": _pct(lat, 90), "p99_s": _pct(lat, 99), "max_s": max(lat) if lat else None,
        "min_s": min(lat) if lat else None,
        "timer_triggers": len(watcher.timer_latencies),
        "timer_p50_s": _pct(watcher.timer_latencies, 50), "timer_p99_s": _pct(watcher.timer_latencies, 99),
        "other_cpu_share_of_a_core": other,  # this harness's appender and watcher included
    }
