"""Event-time helpers: ISO-8601 parsing, durations and formatting, all in integer milliseconds.

The engine never reads a clock; every instant it sees comes from an event or a tick.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

# Events outside this range are rejected as absurd: they are tracker bugs (epoch 0,
# year 2999) and would otherwise hold a watermark back or push it to the far future.
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


_MINUTE_CACHE: dict[str, int] = {}
# Seconds and milliseconds by their digits: two lookups instead of digit checks and int().
_SECONDS = {f"{s:02d}": s * 1000 for s in range(60)}
_MILLIS = {f"{m:03d}": m for m in range(1000)}


def parse_iso_ms(text: str) -> int:
    """Parse an ISO-8601 timestamp into epoch milliseconds; naive times count as UTC.

    Raises ValueError on anything that is not a timestamp.
    """
    # Fast path for what trackers send, "2026-01-05T08:00:01.250Z" or without
    # millis: the minute prefix repeats across millions of events, so cache it.
    n = len(text)
    if (n == 24 and text[19] == "." and text[23] == "Z") or (n == 20 and text[19] == "Z"):
        sec = _SECONDS.get(text[17:19])
        milli = _MILLIS.get(text[20:23]) if n == 24 else 0
        if text[16] == ":" and sec is not None and milli is not None:
            prefix = text[:16]
            base = _MINUTE_CACHE.get(prefix)
            if base is None:
                base = _slow_parse(prefix + ":00Z")
                if len(_MINUTE_CACHE) > 200_000:
                    _MINUTE_CACHE.clear()
                _MINUTE_CACHE[prefix] = base
            return base + sec + milli
    return _slow_parse(text)


def _slow_parse(text: str) -> int:
    if len(text) > 64:
        raise ValueError("timestamp string too long")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000 + (0.5 if dt.timestamp() >= 0 else -0.5))


_FORMAT_CACHE: dict[int, str] = {}
# The seconds and milliseconds of a formatted time, looked up: formatting them was half of
# format_ms, which every trigger line calls.
_SECOND_TEXT = [f"{s:02d}." for s in range(60)]
_MILLI_TEXT = [f"{m:03d}Z" for m in range(1000)]


def format_ms(ms: int) -> str:
    """Format epoch milliseconds as ISO-8601 UTC with milliseconds and a Z suffix."""
    # strftime is slow and every trigger needs it; the minute prefix repeats, so cache it.
    minute, rest = divmod(ms, 60_000)
    prefix = _FORMAT_CACHE.get(minute)
    if prefix is None:
        prefix = datetime.fromtimestamp(minute * 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:")
        if len(_FORMAT_CACHE) > 200_000:
            _FORMAT_CACHE.clear()
        _FORMAT_CACHE[minute] = prefix
    sec, milli = divmod(rest, 1000)
    return prefix + _SECOND_TEXT[sec] + _MILLI_TEXT[milli]


def parse_duration_ms(text: object) -> int:
    """Parse a duration such as ``"30m"``, ``"7d"``, ``"1.5h"`` or ``"250ms"`` into milliseconds.

    Raises ValueError naming the accepted units.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '30m' or '7d', got {type(text).__name__}")
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"expected a duration like '90s', '30m', '1h', '7d' or '2w', got {text!r}")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])
