"""Tests of the synthetic clickstream generator: determinism, format, and the injected faults."""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime
from functools import lru_cache

import orjson
import pytest

from leadstream.generate import GenerateOptions, GenerateStats, generate_lines, write_events

SAMPLE = GenerateOptions(events=20_000, contacts=1_000, seed=7)
SMALL = replace(SAMPLE, events=10_000)  # enough for the fault tests, and twice as fast
TYPES = {"identify", "track", "page", "screen", "alias", "group"}
TRACK_NAMES = {
    "Form Submitted", "Webinar Registered", "Webinar Attended", "Email Opened",
    "Email Link Clicked", "Product Added", "Order Completed", "Signed Up",
}
MALFORMED_KINDS = {
    "truncated_json", "not_an_object", "unknown_type", "no_identity", "bad_timestamp",
    "junk_user_id", "oversize", "wrong_type", "empty_line",
}
JUNK_IDS = {"anonymous", "null", "undefined", "0", ""}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@lru_cache(maxsize=None)
def run(opts: GenerateOptions) -> tuple[list[bytes], GenerateStats]:
    """Lines (without newlines) and stats of one generation; cached because several tests share samples."""
    out = io.BytesIO()
    stats = write_events(opts, out)
    data = out.getvalue()
    assert data.endswith(b"\n") or not data
    return data.split(b"\n")[:-1], stats


@lru_cache(maxsize=None)
def parsed(opts: GenerateOptions) -> list[tuple[str, dict | None]]:
    """(classify(line), parsed object if the line is ok) for every line of run(opts)."""
    return [(kind, orjson.loads(line) if kind == "ok" else None) for kind in map(classify, run(opts)[0])
            for line in [None] if False] or [
        (kind, orjson.loads(line) if kind == "ok" else None)
        for line in run(opts)[0] for kind in [classify(line)]
    ]


def ts_ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


def classify(line: bytes) -> str:
    """'ok' for a valid Segment event, else which kind of malformed line it is."""
    if not line:
        return "empty_line"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "truncated_json"
    if not isinstance(obj, dict):
        return "not_an_object"
    if obj.get("type") not in TYPES:
        return "unknown_type"
    if len(line) > 32 * 1024:
        return "oversize"
    user_id, anon_id = obj.get("userId"), obj.get("anonymousId")
    if not isinstance(obj.get("properties"), dict) or not isinstance(user_id, (str, type(None))):
        return "wrong_type"
    if user_id is None and anon_id is None:
        return "no_identity"
    if user_id is not None and user_id.strip() in JUNK_IDS:
        return "junk_user_id"
    ts = obj.get("timestamp")
    if not isinstance(ts, str) or not TS.match(ts) or not "2000" < ts < "2100":
        return "bad_timestamp"
    return "ok"


def good_events(lines: list[bytes]) -> list[dict]:
    return [orjson.loads(line) for line in lines if classify(line) == "ok"]


def late_violations(lines: list[bytes], disorder_seconds: float) -> list[float]:
    """How many seconds each out-of-bound good line is older than the newest good line before it."""
    newest, lags = None, []
    for line in lines:
        if classify(line) != "ok":
            continue
        ts = ts_ms(orjson.loads(line)["timestamp"])
        if newest is not None and ts < newest - disorder_seconds * 1000:
            lags.append((newest - ts) / 1000)
        newest = ts if newest is None else max(newest, ts)
    return lags


# -- determinism and size -----------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_different_seed_differs() -> None:
    opts = GenerateOptions(events=3_000, contacts=200, seed=42, late_share=0.01, bot_share=0.05)
    first, again, other = io.BytesIO(), io.BytesIO(), io.BytesIO()
    write_events(opts, first)
    write_events(opts, again)
    write_events(replace(opts, seed=43), other)
    assert first.getvalue() == again.getvalue()
    assert first.getvalue() != other.getvalue()
    assert b"\n".join(generate_lines(opts)) + b"\n" == first.getvalue()


@pytest.mark.parametrize(
    ("events", "contacts", "extra"),
    [
        (0, 10, {}),
        (1, 10, {}),
        (2_500, 1, {}),
        (5_000, 20_000, {}),  # fewer events than one visit per contact
        (5_000, 50, {"days": 0.5}),  # denser than the 30-minute visit boundary allows
        (4_000, 300, {"late_share": 0.2, "duplicate_share": 0.05, "malformed_share": 0.1}),
        (3_000, 100, {"bot_share": 1.0}),
        (3_000, 100, {"devices_per_user": 50, "identify_share": 1.0}),
    ],
)
def test_line_count_equals_events(events: int, contacts: int, extra: dict) -> None:
    lines, stats = run(GenerateOptions(events=events, contacts=contacts, **extra))
    assert len(lines) == stats.lines == events
    assert stats.people <= contacts


@pytest.mark.parametrize(
    "bad",
    [
        {"events": -1}, {"contacts": 0}, {"devices_per_user": 0}, {"days": 0},
        {"disorder_seconds": -1}, {"malformed_share": 1.5}, {"late_share": -0.1},
        {"malformed_share": 0.6, "bot_share": 0.6},
    ],
)
def test_invalid_options_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        list(generate_lines(GenerateOptions(**bad)))


# -- format ---------------------------------------------------------------------------------


def test_good_lines_follow_the_segment_spec() -> None:
    lines, _ = run(SAMPLE)
    events = good_events(lines)
    assert len(events) > 0.98 * len(lines)
    for e in events:
        assert isinstance(e["messageId"], str) and e["messageId"]
        assert TS.match(e["timestamp"])
        assert isinstance(e["context"], dict) and isinstance(e["properties"], dict)
        ids = [e.get("anonymousId"), e.get("userId")]
        assert any(ids)
        for value, pattern in zip(ids, (r"anon-[0-9a-f]+|anon-bot", r"user-\d+")):
            assert value is None or re.fullmatch(pattern, value)
        kind = e["type"]
        if kind == "track":
            assert e["event"] in TRACK_NAMES
        elif kind == "page":
            page = e["context"]["page"]
            assert set(page) == {"path", "url", "referrer"}
            assert {"path", "url", "title"} <= set(e["properties"])
            assert e["name"] and e["properties"]["path"] == page["path"]
            assert re.fullmatch(r"/|/blog/[a-z0-9-]+|/pricing(/enterprise)?|/product/\w+|/webinars|/contact",
                                page["path"])
        elif kind == "screen":
            assert e["name"]
        elif kind == "identify":
            assert e["userId"] and "@" in e["traits"]["email"]
        elif kind == "alias":
            assert e["userId"] and e["previousId"].startswith("anon-")
        elif kind == "group":
            assert e["groupId"] and {"name", "industry"} <= set(e["traits"])
    assert {e["type"] for e in events} == TYPES


def test_sample_contains_every_track_event_name() -> None:
    events = good_events(run(SAMPLE)[0])
    assert {e["event"] for e in events if e["type"] == "track"} == TRACK_NAMES


def test_realistic_marketing_content() -> None:
    events = good_events(run(SAMPLE)[0])
    traits = [e["traits"] for e in events if e["type"] == "identify" and "first_name" in e["traits"]]
    assert {"Munich", "Berlin", "Hamburg", "London", "Paris"} <= {t["city"] for t in traits}
    assert {"Student", "CEO", "CTO", "VP Marketing", "Director of Sales", "Marketing Manager",
            "Engineer"} <= {t["title"] for t in traits}
    assert all(isinstance(t["company_size"], int) for t in traits)
    assert len({t["email"] for t in traits}) == len(traits)  # one person, one e-mail

    campaigns = [e["context"]["campaign"] for e in events if "campaign" in e["context"]]
    assert {"linkedin", "google", "newsletter", "facebook"} <= {c["source"] for c in campaigns}
    assert all(set(c) == {"source", "medium", "name"} for c in campaigns)

    consents = [e["context"].get("consent") for e in events if e.get("anonymousId") != "anon-bot"]
    with_consent = [c for c in consents if c is not None]
    assert 0.8 < len(with_consent) / len(consents) < 1
    assert {c["categoryPreferences"]["marketing"] for c in with_consent} == {True, False}

    orders = [e["properties"] for e in events if e.get("event") == "Order Completed"]
    assert all(o["revenue"] == sum(p["price"] for p in o["products"]) for o in orders)
    # Carts: more products are added than bought, i.e. some carts are abandoned.
    added = sum(e.get("event") == "Product Added" for e in events)
    assert 0 < sum(len(o["products"]) for o in orders) < added


def test_first_event_is_at_start_and_event_time_spans_about_days() -> None:
    events = good_events(run(SAMPLE)[0])
    assert events[0]["timestamp"] == "2026-01-05T08:00:00.000Z"
    span_days = (max(ts_ms(e["timestamp"]) for e in events) - ts_ms(events[0]["timestamp"])) / 86_400_000
    assert 0.8 * SAMPLE.days < span_days < 1.2 * SAMPLE.days


# -- injected faults ------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.0, 0.005, 0.05])
def test_malformed_share_and_kinds(share: float) -> None:
    lines, stats = run(replace(SAMPLE, malformed_share=share))
    kinds = Counter(classify(line) for line in lines)
    bad = len(lines) - kinds["ok"]
    assert bad == stats.malformed
    if share:
        assert abs(bad / len(lines) - share) < 0.3 * share
        assert set(kinds) - {"ok"} == MALFORMED_KINDS
        assert any(len(line) > 32 * 1024 for line in lines)
    else:
        assert bad == 0


@pytest.mark.parametrize("share", [0.0, 0.002, 0.02])
def test_duplicates_repeat_a_recent_line_verbatim(share: float) -> None:
    lines, stats = run(replace(SAMPLE, duplicate_share=share))
    first_seen: dict[str, tuple[int, bytes]] = {}
    repeats = 0
    for n, line in enumerate(lines):
        if classify(line) != "ok":
            continue
        mid = orjson.loads(line)["messageId"]
        if mid in first_seen:
            at, original = first_seen[mid]
            assert line == original
            assert n - at <= 50  # re-sent shortly after, not at a random later place
            repeats += 1
        else:
            first_seen[mid] = (n, line)
    assert repeats == stats.duplicates
    assert abs(repeats / len(lines) - share) < 0.3 * share + 1e-9


@pytest.mark.parametrize("disorder_seconds", [0.0, 2.0, 30.0])
def test_disorder_is_bounded_without_late_events(disorder_seconds: float) -> None:
    lines, stats = run(replace(SAMPLE, disorder_seconds=disorder_seconds, late_share=0.0))
    assert stats.late == 0
    assert late_violations(lines, disorder_seconds) == []
    stamps = [e["timestamp"] for e in good_events(lines)]
    assert (stamps == sorted(stamps)) == (disorder_seconds == 0)


def test_late_events_arrive_a_minute_to_an_hour_behind() -> None:
    lines, stats = run(replace(SAMPLE, late_share=0.02))
    assert abs(stats.late / len(lines) - 0.02) < 0.005
    lags = late_violations(lines, SAMPLE.disorder_seconds)
    assert 0.8 * stats.late <= len(lags) <= stats.late
    assert all(lag <= 3_600 + 600 for lag in lags)
    assert sorted(lags)[len(lags) // 2] > 60


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3])
def test_bot_share_goes_to_one_hot_key(share: float) -> None:
    events = good_events(run(replace(SAMPLE, bot_share=share))[0])
    bot = [e for e in events if e.get("anonymousId") == "anon-bot"]
    assert abs(len(bot) / len(events) - share) < 0.02
    assert all(e["type"] == "page" and "userId" not in e for e in bot)


# -- identity -----------------------------------------------------------------------------


def devices_by_user(events: list[dict]) -> dict[str, set[str]]:
    devices = defaultdict(set)
    for e in events:
        if e.get("userId") and e.get("anonymousId"):
            devices[e["userId"]].add(e["anonymousId"])
    return devices


def test_some_people_identify_on_several_devices() -> None:
    lines, stats = run(SAMPLE)
    events = good_events(lines)
    devices = devices_by_user(events)
    assert sum(len(d) >= 2 for d in devices.values()) >= 10
    # Every device is stitched to at most one person.
    owners = Counter(anon for d in devices.values() for anon in d)
    assert max(owners.values()) == 1
    first_identifies = {e["userId"] for e in events if e["type"] == "identify" and "first_name" in e["traits"]}
    assert len(first_identifies) == stats.identified
    assert stats.people == SAMPLE.contacts
    assert abs(stats.identified / stats.people - SAMPLE.identify_share) < 0.1


def test_single_device_people_never_stitch_devices() -> None:
    events = good_events(run(replace(SAMPLE, devices_per_user=1))[0])
    assert all(len(d) == 1 for d in devices_by_user(events).values())


def test_merge_storm_links_many_devices_to_one_user() -> None:
    opts = GenerateOptions(events=20_000, contacts=100, devices_per_user=50, identify_share=1.0, seed=3)
    devices = devices_by_user(good_events(run(opts)[0]))
    assert max(len(d) for d in devices.values()) >= 10
