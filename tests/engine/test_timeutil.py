"""Event-time text: formatting and parsing of ISO-8601 timestamps agree with the standard library."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from fractions import Fraction

import pytest
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


def _stdlib_ms(text: str) -> int | None:
    """What the standard library makes of a timestamp (with RFC 3339's lower-case "t" and "z" allowed):
    epoch ms, or None when it rejects it."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        if len(text) < 11 or text[10] not in "tT":
            return None
        try:
            dt = datetime.fromisoformat(text.replace("t", "T").replace("z", "Z"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    d = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    # Exact fractions: a float timestamp loses sub-millisecond digits far from 1970.
    micros = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    return math.floor(Fraction(micros, 1000) + Fraction(1, 2))  # a sub-millisecond half rounds up


def _parsed(text: str) -> int | None:
    try:
        return parse_iso_ms(text)
    except ValueError:
        return None


# Every character the fast path reads, and the ones it must refuse: digits, separators,
# letters, a space, a sign and a non-ASCII digit (same length, more bytes).
_CHARS = st.sampled_from("0123456789-:.TZtz +\u0663")


@settings(max_examples=3_000, deadline=None)
@given(st.integers(MIN_EVENT_MS, MAX_EVENT_MS - 1), st.lists(st.tuples(st.integers(0, 23), _CHARS), max_size=3),
       st.booleans())
def test_parse_iso_ms_agrees_with_the_standard_library_on_near_misses(ms: int, edits: list[tuple[int, str]],
                                                                      short: bool) -> None:
    """Timestamps with a few characters changed parse exactly as datetime.fromisoformat reads them, or not at all."""
    text = format_ms(ms)
    if short:  # the form without milliseconds
        text = text[:19] + "Z"
    chars = list(text)
    for pos, ch in edits:
        chars[pos % len(chars)] = ch
    text = "".join(chars)
    assert _parsed(text) == _stdlib_ms(text), text


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-05T08:00:01.250Z", 1_767_600_001_250),
    ("2026-01-05T08:00:01Z", 1_767_600_001_000),
    ("2026-02-30T08:00:01.250Z", None),  # no such day
    ("2026-13-05T08:00:01.250Z", None),  # no such month
    ("2026-01-05T24:00:01.250Z", None),  # no such hour
    ("2026-01-05T08:00:60.250Z", None),  # no leap seconds
    ("2026-01-05T08:00:01.25xZ", None),
    ("2026-01-05 08:00:01.250Z", 1_767_600_001_250),  # a space for the T, as the standard library allows
    ("2026-01-05t08:00:01.250z", 1_767_600_001_250),  # lower case, as RFC 3339 allows
    ("2026-01-05T08:00:01z", 1_767_600_001_000),
    ("2026-01-05 08:00:01.250z", None),  # lower case only in the RFC 3339 form, with a "t"
    ("2026-01-05T08:00:01.250+00:00", 1_767_600_001_250),
    ("2026-01-05T09:00:01.250+01:00", 1_767_600_001_250),
    ("2026-01-05T08:00:01.2505Z", 1_767_600_001_251),  # a sub-millisecond half rounds up
    ("2026-01-05T08:00:01.2504999Z", 1_767_600_001_250),
    ("1969-12-31T23:59:59.9995Z", 0),  # before 1970 too: up is later, not away from zero
    ("1000-01-01T00:00:00.0005", -30_610_223_999_999),  # found by the property test below: a float lost it
])
def test_parse_iso_ms_examples(text: str, expected: int | None) -> None:
    """The fast path's shapes and their neighbours: a bad calendar is refused, other offsets honoured."""
    assert _parsed(text) == expected
