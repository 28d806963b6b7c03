"""Tests of the synthetic clickstream generator: determinism, format, and the injected faults."""

from __future__ import annotations

import io
import math
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime
from functools import lru_cache

import orjson
from pathlib import Path

import pytest

from leadstream.generate import GenerateOptions, GenerateStats, generate_lines, write_events

SAMPLE = GenerateOptions(events=20_000, contacts=1_000, seed=7)
SMALL = replace(SAMPLE, events=8_000)  # enough for the fault tests, and faster
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


def classify(line: bytes) -> tuple[str, dict | None]:
    """('ok', event) for a valid Segment event, else (which kind of malformed line, None)."""
    if not line:
        return "empty_line", None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "truncated_json", None
    if not isinstance(obj, dict):
        return "not_an_object", None
    if obj.get("type") not in TYPES:
        return "unknown_type", None
    if len(line) > 32 * 1024:
        return "oversize", None
    user_id, anon_id = obj.get("userId"), obj.get("anonymousId")
    if not isinstance(obj.get("properties"), dict) or not isinstance(user_id, (str, type(None))):
        return "wrong_type", None
    if user_id is None and anon_id is None:
        return "no_identity", None
    if user_id is not None and user_id.strip() in JUNK_IDS:
        return "junk_user_id", None
    ts = obj.get("timestamp")
    if not isinstance(ts, str) or not TS.match(ts) or not "2000" < ts < "2100":
        return "bad_timestamp", None
    return "ok", obj


@lru_cache(maxsize=None)
def generated(opts: GenerateOptions) -> tuple[list[bytes], GenerateStats]:
    """Lines (without newlines) and stats of one generation, shared by the tests."""
    out = io.BytesIO()
    stats = write_events(opts, out)
    data = out.getvalue()
    assert data.endswith(b"\n") or not data
    return data.split(b"\n")[:-1], stats


# Only the latest parse is kept: hundreds of thousands of cached dicts make every GC pass slow.
@lru_cache(maxsize=1)
def run(opts: GenerateOptions) -> tuple[list[bytes], GenerateStats, list[tuple[str, dict | None]]]:
    """generated(opts) plus classify() of every line."""
    lines, stats = generated(opts)
    return lines, stats, [classify(line) for line in lines]


def good_events(opts: GenerateOptions, *, unique: bool = True) -> list[dict]:
    """The valid events in file order; with unique, verbatim re-sends (same messageId) are dropped."""
    events = [obj for kind, obj in run(opts)[2] if kind == "ok"]
    if not unique:
        return events
    seen: set[str] = set()
    return [e for e in events if not (e["messageId"] in seen or seen.add(e["messageId"]))]


def near(count: int, n: int, share: float) -> bool:
    """count out of n is within 3 binomial standard deviations (+1) of the expected share."""
    return abs(count - n * share) <= 3 * math.sqrt(n * share * (1 - share)) + 1


def ts_ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


def disorder_lags(opts: GenerateOptions) -> list[float]:
    """Seconds by which each out-of-bound good line is older than the newest good line before it."""
    newest, lags = None, []
    for e in good_events(opts, unique=False):
        ts = ts_ms(e["timestamp"])
        if newest is not None and ts < newest - opts.disorder_seconds * 1000:
            lags.append((newest - ts) / 1000)
        newest = ts if newest is None else max(newest, ts)
    return lags


def devices_by_user(events: list[dict]) -> dict[str, set[str]]:
    devices = defaultdict(set)
    for e in events:
        if e.get("userId") and e.get("anonymousId"):
            devices[e["userId"]].add(e["anonymousId"])
    return devices


# -- determinism, size, options -------------------------------------------------------------


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
        (2_000, 5_000, {}),  # fewer events than one visit per contact
        (5_000, 50, {"days": 0.5}),  # denser than the 30-minute visit boundary allows
        (4_000, 300, {"late_share": 0.2, "duplicate_share": 0.05, "malformed_share": 0.1}),
        (3_000, 100, {"bot_share": 1.0, "malformed_share": 0.0, "duplicate_share": 0.0}),
        (3_000, 100, {"devices_per_user": 50, "identify_share": 1.0}),
    ],
)
def test_line_count_equals_events(events: int, contacts: int, extra: dict) -> None:
    lines, stats, _ = run(GenerateOptions(events=events, contacts=contacts, **extra))
    assert len(lines) == stats.lines == events
    assert stats.people <= contacts


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"events": -1}, "--events must be 0 or more, got -1"),
        ({"contacts": 0}, "--contacts must be from 1 to 10,000,000, got 0"),
        ({"contacts": 10**9}, "--contacts must be from 1 to 10,000,000, got 1000000000"),
        ({"devices_per_user": 0}, "--devices-per-user must be 1 or more, got 0"),
        ({"days": 0}, "days must be a positive number, got 0"),
        ({"disorder_seconds": -1}, "--disorder must be from 0 to 86400 seconds, got -1"),
        ({"disorder_seconds": 1e12}, "--disorder must be from 0 to 86400 seconds"),
        ({"disorder_seconds": float("nan")}, "--disorder must be from 0 to 86400 seconds, got nan"),
        ({"malformed_share": 1.5}, "--malformed-share must lie in 0..1, got 1.5"),
        ({"late_share": -0.1}, "--late-share must lie in 0..1, got -0.1"),
        ({"bot_share": 1.0}, "--malformed-share + --duplicate-share + --bot-share must not exceed 1"),
        ({"malformed_share": 0.6, "bot_share": 0.6}, "must not exceed 1 (people's own events are the rest), got 1.2"),
    ],
)
def test_invalid_options_are_rejected(bad: dict, said: str) -> None:
    """Options that cannot make a stream are refused before anything is made, naming the flag."""
    with pytest.raises(ValueError) as ex:
        list(generate_lines(GenerateOptions(**bad)))
    assert said in str(ex.value)


def test_cli_refuses_bad_options_before_touching_the_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit status 2 with the flag, and an existing file of that name is left as it was."""
    from leadstream.cli import main

    out = tmp_path / "keep.jsonl"
    out.write_text("an earlier stream\n")
    assert main(["generate", "--events", "-1", "--out", str(out)]) == 2
    assert "leadstream generate: --events must be 0 or more, got -1" in capsys.readouterr().err
    assert out.read_text() == "an earlier stream\n"
    assert main(["generate", "--events", "5", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["generate", "--events", "5", "--out", str(out / "x.jsonl")]) == 2
    assert f"--out {out / 'x.jsonl'}: cannot create {out}" in capsys.readouterr().err
    assert main(["generate", "--events", "5", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5 and not list(tmp_path.glob(".*.tmp"))


# -- format and content ---------------------------------------------------------------------


def test_good_lines_follow_the_segment_spec() -> None:
    events = good_events(SAMPLE, unique=False)
    assert len(events) > 0.98 * SAMPLE.events
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
    assert {e["event"] for e in good_events(SAMPLE) if e["type"] == "track"} == TRACK_NAMES


def test_realistic_marketing_content() -> None:
    events = good_events(SAMPLE)
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
    events = good_events(SAMPLE)
    assert events[0]["timestamp"] == "2026-01-05T08:00:00.000Z"
    span_days = (max(ts_ms(e["timestamp"]) for e in events) - ts_ms(events[0]["timestamp"])) / 86_400_000
    assert 0.8 * SAMPLE.days < span_days < 1.2 * SAMPLE.days


# -- injected faults ------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.0, 0.005, 0.05])
def test_malformed_share_and_kinds(share: float) -> None:
    opts = replace(SMALL, malformed_share=share)
    lines, stats, classified = run(opts)
    kinds = Counter(kind for kind, _ in classified)
    bad = len(lines) - kinds["ok"]
    assert bad == stats.malformed
    assert near(bad, len(lines), share)
    if share:
        assert set(kinds) - {"ok"} == MALFORMED_KINDS


@pytest.mark.parametrize("share", [0.0, 0.002, 0.02])
def test_duplicates_repeat_a_recent_line_verbatim(share: float) -> None:
    opts = replace(SMALL, duplicate_share=share)
    lines, stats, classified = run(opts)
    first_seen: dict[str, int] = {}
    repeats = 0
    for n, (kind, event) in enumerate(classified):
        if kind != "ok":
            continue
        at = first_seen.setdefault(event["messageId"], n)
        if at != n:
            assert lines[n] == lines[at]
            assert n - at <= 50  # re-sent shortly after, not at a random later place
            repeats += 1
    assert repeats == stats.duplicates
    assert near(repeats, len(lines), share)


@pytest.mark.parametrize("disorder_seconds", [0.0, 2.0, 30.0])
def test_disorder_is_bounded_without_late_events(disorder_seconds: float) -> None:
    opts = replace(SMALL, disorder_seconds=disorder_seconds, late_share=0.0)
    assert run(opts)[1].late == 0
    assert disorder_lags(opts) == []
    stamps = [e["timestamp"] for e in good_events(opts, unique=False)]
    assert (stamps == sorted(stamps)) == (disorder_seconds == 0)


def test_late_events_arrive_far_behind() -> None:
    opts = replace(SMALL, late_share=0.02)
    stats = run(opts)[1]
    assert near(stats.late, opts.events, 0.02)
    lags = disorder_lags(opts)
    # Only late lines break the disorder bound, and nearly all of them do by more than a minute.
    assert 0.8 * stats.late <= len(lags) <= stats.late
    assert sum(lag >= 60 for lag in lags) >= 0.9 * len(lags)
    assert sorted(lags)[len(lags) // 2] < 3_600


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3])
def test_bot_share_goes_to_one_hot_key(share: float) -> None:
    events = good_events(replace(SMALL, bot_share=share), unique=False)
    bot = [e for e in events if e.get("anonymousId") == "anon-bot"]
    assert near(len(bot), len(events), share)
    assert all(e["type"] == "page" and "userId" not in e for e in bot)


# -- identity -------------------------------------------------------------------------------


def test_some_people_identify_on_several_devices() -> None:
    events = good_events(SAMPLE)
    stats = run(SAMPLE)[1]
    devices = devices_by_user(events)
    assert sum(len(d) >= 2 for d in devices.values()) >= 10
    owners = Counter(anon for d in devices.values() for anon in d)
    assert max(owners.values()) == 1  # a device never belongs to two people
    first_identifies = [e["userId"] for e in events if e["type"] == "identify" and "first_name" in e["traits"]]
    assert len(first_identifies) == len(set(first_identifies)) == stats.identified
    assert stats.people == SAMPLE.contacts
    assert abs(stats.identified / stats.people - SAMPLE.identify_share) < 0.1
    assert any(e["type"] == "alias" for e in events)


def test_single_device_people_never_stitch_devices() -> None:
    events = good_events(replace(SMALL, devices_per_user=1))
    assert all(len(d) == 1 for d in devices_by_user(events).values())


def test_merge_storm_links_many_devices_to_one_user() -> None:
    opts = GenerateOptions(events=10_000, contacts=50, devices_per_user=50, identify_share=1.0, seed=3)
    devices = devices_by_user(good_events(opts))
    assert max(len(d) for d in devices.values()) >= 10
