"""Event-time helpers: ISO-8601 parsing, durations and formatting, all in integer milliseconds.

The engine never reads a clock; every instant it sees comes from an event or a tick.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Final

# Events outside this range are rejected as absurd: they are tracker bugs (epoch 0,
# year 2999) and would otherwise hold a watermark back or push it to the far future.
MIN_EVENT_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_MS: Final = 4_102_444_800_000  # 2100-01-01T00:00:00Z

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


# Epoch milliseconds of each minute seen, by its text ("2026-01-05T08:00") as bytes.
_MINUTE_CACHE: Final[dict[bytes, int]] = {}
_ZERO: Final = 48  # ord("0"); Final, so compiled code inlines it instead of a global lookup


def parse_iso_ms(text: str) -> int:
    """Parse an ISO-8601 timestamp into epoch milliseconds; naive times count as UTC.

    Raises ValueError on anything that is not a timestamp.
    """
    # Fast path for what trackers send, "2026-01-05T08:00:01.250Z" or without millis.
    # The minute prefix repeats across millions of events, so its start is cached; a new
    # one goes through the standard library, which checks it. Compiled, reading the
    # seconds and milliseconds as bytes costs a few instructions a digit, where slicing
    # them into dictionary keys cost a new string and a hash each.
    n = len(text)
    if n == 24 or n == 20:
        try:
            # Without arguments: naming the codec made the encoding cost 1.1k instructions.
            b = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: not a timestamp either way
            return _slow_parse(text)
        if len(b) == n and b[16] == 58 and (b[19] == 46 and b[23] == 90 if n == 24 else b[19] == 90):
            s1, s2 = b[17] - _ZERO, b[18] - _ZERO
            milli = 0
            if n == 24:
                m1, m2, m3 = b[20] - _ZERO, b[21] - _ZERO, b[22] - _ZERO
                if not (0 <= m1 <= 9 and 0 <= m2 <= 9 and 0 <= m3 <= 9):
                    return _slow_parse(text)
                milli = m1 * 100 + m2 * 10 + m3
            if 0 <= s1 <= 5 and 0 <= s2 <= 9:
                prefix = b[:16]
                base = _MINUTE_CACHE.get(prefix)
                if base is None:
                    base = _slow_parse(text[:16] + ":00Z")
                    if len(_MINUTE_CACHE) > 200_000:
                        _MINUTE_CACHE.clear()
                    _MINUTE_CACHE[prefix] = base
                return base + (s1 * 10 + s2) * 1000 + milli
    return _slow_parse(text)


def _slow_parse(text: str) -> int:
    if len(text) > 64:
        raise ValueError("timestamp string too long")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        # RFC 3339 allows a lower-case "t" and "z" (2026-01-05t08:00:00z); the standard library does not.
        if len(text) < 11 or text[10] not in "tT" or not ("t" in text or "z" in text):
            raise
        dt = datetime.fromisoformat(text.replace("t", "T").replace("z", "Z"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Exact: a timedelta holds whole days, seconds and microseconds, where a float timestamp
    # loses sub-millisecond digits far from 1970. A half millisecond rounds up (towards later).
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1000 + (d.microseconds + 500) // 1000


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


_DAY_MS: Final = 86_400_000
# "YYYY-MM-DDT" by day number: a new day goes through strftime, once.
_DAY_TEXT: Final[dict[int, str]] = {}
# The rest of a formatted time, looked up: "hh:mm:" by minute of the day, "ss." and "mmmZ".
_MINUTE_TEXT: Final = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECOND_TEXT: Final = [f"{s:02d}." for s in range(60)]
_MILLI_TEXT: Final = [f"{m:03d}Z" for m in range(1000)]


def format_ms(ms: int) -> str:
    """Format epoch milliseconds as ISO-8601 UTC with milliseconds and a Z suffix."""
    # Every trigger line calls it. Integer division rather than divmod (which compiled
    # code does through a tuple of boxed ints), and a day cache rather than a minute
    # cache: a miss of the old minute cache (strftime) cost as much as 20 hits.
    day = ms // _DAY_MS
    rest = ms - day * _DAY_MS
    minute = rest // 60_000
    rest -= minute * 60_000
    sec = rest // 1000
    prefix = _DAY_TEXT.get(day)
    if prefix is None:
        prefix = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%dT")
        if len(_DAY_TEXT) > 100_000:
            _DAY_TEXT.clear()
        _DAY_TEXT[day] = prefix
    return prefix + _MINUTE_TEXT[minute] + _SECOND_TEXT[sec] + _MILLI_TEXT[rest - sec * 1000]


def parse_duration_ms(text: object) -> int:
    """Parse a duration such as ``"30m"``, ``"7d"``, ``"1.5h"`` or ``"250ms"`` into milliseconds.

    Raises ValueError naming the accepted units.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '30m' or '7d', got {type(text).__name__}")
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"expected a duration like '90s', '30m', '1h', '7d' or '2w', got {text!r}")
    ms = int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if ms > MAX_DURATION_MS:
        raise ValueError(f"expected a duration of at most 100 years (36500d), got {text!r}")
    return ms


MAX_DURATION_MS: Final = 36_500 * 86_400_000  # beyond the year 2100 from any event time
