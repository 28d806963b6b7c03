"""Event-time text: formatting and parsing of ISO-8601 timestamps agree with the standard library."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.timeutil import MAX_EVENT_MS, MIN_EVENT_MS, format_ms, parse_iso_ms


@settings(max_examples=2_000, deadline=None)
@given(st.integers(MIN_EVENT_MS, MAX_EVENT_MS - 1))
def test_format_ms_matches_strftime_and_parses_back(ms: int) -> None:
    """Every millisecond of the accepted range formats like strftime and parses back to itself."""
    second, milli = divmod(ms, 1000)
    expected = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{milli:03d}Z"
    assert format_ms(ms) == expected
    assert parse_iso_ms(format_ms(ms)) == ms
