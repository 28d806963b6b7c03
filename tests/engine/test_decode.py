"""decode_line: one raw line becomes an Event or a Rejection with a reason code, and it never raises."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import decode as decode_module
from engine.decode import MAX_EVENT_BYTES, decode_line
from engine.events import REASONS, Event, Rejection

T0 = "2026-01-05T08:00:00.000Z"
T0_MS = 1_767_600_000_000
DROP = object()  # marks a key to remove from the base event


class _Derived:
    """Equal to any messageId the decoder derived from the line ('h:<hash>')."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith("h:")

    def __repr__(self) -> str:
        return "'h:...'"


HASHED = _Derived()

BASE: dict[str, dict[str, Any]] = {
    "identify": {"type": "identify", "userId": "user-1", "anonymousId": "anon-1", "traits": {"email": "a@b.example"}},
    "track": {"type": "track", "anonymousId": "anon-1", "event": "Form Submitted", "properties": {"topic": "ai"}},
    "page": {"type": "page", "anonymousId": "anon-1", "name": "Pricing", "properties": {"path": "/pricing"}},
    "screen": {"type": "screen", "userId": "user-1", "name": "Home"},
    "alias": {"type": "alias", "previousId": "anon-1", "userId": "user-1"},
    "group": {"type": "group", "userId": "user-1", "groupId": "acme", "traits": {"name": "Acme"}},
}


def obj(etype: str = "page", **changes: Any) -> dict[str, Any]:
    """A valid event of ``etype`` with ``changes`` applied (a value of DROP removes the key)."""
    out = {**BASE[etype], "messageId": f"m-{etype}", "timestamp": T0}
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def nested(levels: int, kind: type = dict) -> Any:
    """A value nesting ``levels`` objects (or arrays) deep, around the number 1."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value} if kind is dict else [value]
    return value


def deep_line(etype: str, key: str, levels: int, opening: str = '{"a":', closing: str = "}") -> bytes:
    """``line`` with ``key`` nesting ``levels`` deep, written by hand: orjson writes no deeper than 254."""
    head = line(etype, **{key: DROP})[:-1]
    return head + f',"{key}":{{"a":'.encode() + (opening * (levels - 1) + "1" + closing * (levels - 1)).encode() + b"}}"


def line(etype: str = "page", **changes: Any) -> bytes:
    """``obj`` as a JSON line."""
    return orjson.dumps(obj(etype, **changes))


# ------------------------------------------------------------------ rejections, one row per cause

REJECTED = [
    # (id, raw line, reason code, text the detail must contain: the offending field where there is one)
    ("empty", b"", "empty_line", "blank"),
    ("blank-spaces", b"   ", "empty_line", "blank"),
    ("blank-tab-cr", b"\t\r", "empty_line", "blank"),
    ("too-large", line(properties={"html": "x" * MAX_EVENT_BYTES}), "too_large", str(MAX_EVENT_BYTES)),
    ("nested-65", line(properties=nested(64)), "too_large", "nested 65 levels deep (at most 64)"),
    ("nested-300-context", deep_line("page", "context", 300), "too_large", "nested 301 levels"),
    ("nested-300-arrays", deep_line("identify", "traits", 300, "[", "]"), "too_large", "nested 301 levels"),
    ("truncated", line()[:20], "invalid_json", "column"),
    ("single-quotes", b"{'type': 'page'}", "invalid_json", "column"),
    ("trailing-comma", b'{"type": "page",}', "invalid_json", "column"),
    ("two-values", line() + b" " + line(), "invalid_json", "column"),
    ("array", b"[1, 2]", "not_an_object", "list"),
    ("number", b"42", "not_an_object", "int"),
    ("string", b'"page"', "not_an_object", "str"),
    ("null", b"null", "not_an_object", "NoneType"),
    ("type-missing", line(type=DROP), "unknown_type", "type"),
    ("type-capitalized", line(type="Track"), "unknown_type", "type"),
    ("type-unknown", line(type="purchase"), "unknown_type", "type"),
    ("type-number", line(type=3), "unknown_type", "type"),
    ("batch-envelope", orjson.dumps({"batch": [obj("page"), obj("track")], "sentAt": T0}), "unknown_type",
     "a Segment batch envelope of 2 events, not an event: write its events one per line"),
    ("no-identity", line(anonymousId=DROP), "missing_identity", "anonymousId"),
    ("null-identities", line("screen", userId=None, anonymousId=None), "missing_identity", "userId"),
    ("junk-anonymous", line(anonymousId="anonymous"), "junk_identifier", "anonymousId"),
    ("junk-null", line(anonymousId="null"), "junk_identifier", "anonymousId"),
    ("junk-undefined", line(anonymousId="undefined"), "junk_identifier", "anonymousId"),
    ("junk-zero", line(anonymousId="0"), "junk_identifier", "anonymousId"),
    ("junk-empty", line(anonymousId=""), "junk_identifier", "anonymousId"),
    ("junk-whitespace", line(anonymousId="   "), "junk_identifier", "anonymousId"),
    ("junk-padded", line(anonymousId=" anon-1"), "junk_identifier", "anonymousId"),
    ("junk-control", line(anonymousId="anon\n1"), "junk_identifier", "anonymousId"),
    ("junk-over-long", line(anonymousId="a" * 257), "junk_identifier", "anonymousId"),
    ("junk-userid-case", line("screen", userId="UNDEFINED"), "junk_identifier", "userId"),
    ("junk-userid-padded-null", line("screen", userId=" null "), "junk_identifier", "userId"),
    ("junk-previousid", line("alias", previousId="anonymous"), "junk_identifier", "previousId"),
    ("junk-messageid-over-long", line(messageId="m" * 257), "junk_identifier", "messageId"),
    ("ts-missing", line(timestamp=DROP), "bad_timestamp", "timestamp"),
    ("ts-null", line(timestamp=None), "bad_timestamp", "timestamp"),
    ("ts-yesterday", line(timestamp="yesterday"), "bad_timestamp", "timestamp"),
    ("ts-1970", line(timestamp="1970-01-01T00:00:00.000Z"), "bad_timestamp", "timestamp"),
    ("ts-2999", line(timestamp="2999-12-31T23:59:59.000Z"), "bad_timestamp", "timestamp"),
    ("ts-2100-exactly", line(timestamp="2100-01-01T00:00:00Z"), "bad_timestamp", "timestamp"),
    ("ts-just-before-2000", line(timestamp="1999-12-31T23:59:59.999Z"), "bad_timestamp", "timestamp"),
    ("ts-number", line(timestamp=1_767_600_000), "bad_timestamp", "timestamp"),
    ("ts-padded", line(timestamp=" " + T0), "bad_timestamp", "timestamp"),
    ("ts-over-long", line(timestamp=T0[:-1] + "0" * 60 + "Z"), "bad_timestamp", "timestamp"),
    ("original-ts-bad", line(timestamp=DROP, originalTimestamp="soon"), "bad_timestamp", "originalTimestamp"),
    ("received-only-bad", line(timestamp=DROP, receivedAt="soon"), "bad_timestamp", "receivedAt"),
    ("original-after-sent", line(timestamp=DROP, originalTimestamp=T0, sentAt="2026-01-05T07:54:59.999Z",
                                 receivedAt=T0), "bad_timestamp", "before it happens"),
    ("corrected-before-2000", line(timestamp=DROP, originalTimestamp="2000-01-01T00:00:00Z",
                                   sentAt="2026-01-05T08:00:00Z", receivedAt="2026-01-04T08:00:00Z"),
     "bad_timestamp", "corrected"),
    ("anonymousid-list", line(anonymousId=[42]), "wrong_type", "anonymousId must be a string or a number"),
    ("userid-bool", line("screen", userId=True), "wrong_type", "userId"),
    ("previousid-object", line("alias", previousId={"id": 7}), "wrong_type", "previousId"),
    ("userid-zero", line("track", userId=0), "junk_identifier", "placeholder value '0'"),
    ("userid-minus-one", line("track", userId=-1), "junk_identifier", "placeholder value '-1'"),
    ("userid-zero-float", line("track", userId=0.0), "junk_identifier", "placeholder value '0'"),
    ("userid-go-nil", line("track", userId="<nil>"), "junk_identifier", "placeholder value '<nil>'"),
    ("nested-1100", b'{"type":"page","properties":' + b"[" * 1100 + b"]" * 1100 + b"}", "too_large",
     "nested more than 1024 levels deep"),
    ("properties-list", line(properties=["a"]), "wrong_type", "properties"),
    ("properties-string", line(properties="path=/x"), "wrong_type", "properties"),
    ("traits-string", line("identify", traits="vip"), "wrong_type", "traits"),
    ("context-number", line(context=5), "wrong_type", "context"),
    ("messageid-number", line(messageId=5), "wrong_type", "messageId"),
    ("page-name-number", line(name=5), "wrong_type", "name"),
    ("track-no-event", line("track", event=DROP), "missing_field", "event"),
    ("track-blank-event", line("track", event="  "), "missing_field", "event"),
    ("track-event-number", line("track", event=3), "missing_field", "event"),
    ("alias-no-previousid", line("alias", previousId=DROP), "missing_field", "previousId"),
    ("alias-no-userid", line("alias", userId=DROP), "missing_field", "userId"),
    ("group-no-groupid", line("group", groupId=DROP), "missing_field", "groupId"),
    ("group-junk-groupid", line("group", groupId="null"), "missing_field", "groupId"),
    ("group-groupid-zero", line("group", groupId=0), "missing_field", "groupId"),
    ("group-groupid-bool", line("group", groupId=True), "missing_field", "groupId"),
]


@pytest.mark.parametrize(("raw", "reason", "detail"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_rejections(raw: bytes, reason: str, detail: str) -> None:
    """Each way a line can be bad maps to its reason code, and the detail names what was wrong."""
    out = decode_line(raw, source="in.jsonl:7")
    assert isinstance(out, Rejection), out
    assert out.reason == reason, out
    assert detail in out.detail, out
    assert out.source == "in.jsonl:7"
    assert out.raw == raw.decode("utf-8")


def test_every_reason_decode_can_give_has_a_row() -> None:
    """A new reason code in decode must get a row in the table above.

    no_consent is config-driven (tested below), webhook_failed concerns trigger batches,
    not input lines (tests/flows/test_webhook.py), and unreadable_input the sources, which
    meet a file that cannot be read further (tests/flows/test_sources.py).
    """
    covered = {r[2] for r in REJECTED}
    assert covered == set(REASONS) - {"no_consent", "webhook_failed", "unreadable_input"}


@pytest.mark.parametrize("bare", [line(), line(messageId=DROP), b"  " + line()], ids=["plain", "hashed_id", "indented"])
def test_a_byte_order_mark_at_the_start_of_a_line_is_ignored(bare: bytes) -> None:
    """A UTF-8 BOM (a Windows-written file's first line) decodes to the event of the line without it, id included."""
    assert decode_line(b"\xef\xbb\xbf" + bare) == decode_line(bare)
    assert isinstance(decode_line(bare), Event)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xef\xbb\xbf", "empty_line"),
    (b"\xef\xbb\xbf{oops", "invalid_json"),
    (b"\xef\xbb\xbf\xef\xbb\xbf{}", "invalid_json"),  # one mark is a file's start; two are damage
], ids=["mark_only", "mark_then_junk", "two_marks"])
def test_what_follows_a_byte_order_mark_is_judged_as_usual(raw: bytes, reason: str) -> None:
    """Past the mark the line is decoded as any other: blank, or not JSON."""
    out = decode_line(raw)
    assert isinstance(out, Rejection) and out.reason == reason
    assert out.raw == raw.decode()  # the dead letter keeps the mark


@pytest.mark.parametrize(("received", "accepted"), [
    ("2026-01-05T08:00:02.000Z", True),  # received after it happened: the usual case
    ("2026-01-05T07:55:00.000Z", True),  # 5 minutes ahead of receipt: within the allowance
    ("2026-01-05T07:54:59.999Z", False),  # a millisecond more
    ("2026-01-05T08:30:00.000+02:00", False),  # an offset: 06:30 UTC, 90 minutes before
    ("2025-12-31T00:00:00Z", False),  # a device clock days ahead
    ("not a time", True),  # Segment's field, and optional: one that does not parse is ignored
    (1767600000000, True),
], ids=["after", "at-allowance", "just-over", "offset", "days", "unparsable", "number"])
def test_a_timestamp_after_receipt_is_a_clock_running_ahead(received: Any, accepted: bool) -> None:
    """An event cannot happen after it was received: more than 5 minutes ahead of receivedAt is bad_timestamp."""
    for etype in ("page", "alias"):  # the fast path and the checked one
        out = decode_line(line(etype, receivedAt=received))
        if accepted:
            assert isinstance(out, Event) and out.ts == T0_MS
        else:
            assert isinstance(out, Rejection) and out.reason == "bad_timestamp", out
            assert "after receivedAt" in out.detail and "clock runs ahead" in out.detail


@pytest.mark.parametrize(("changes", "expected_ms"), [
    # Segment's timestamp: receivedAt - (sentAt - originalTimestamp) corrects the device's clock skew.
    ({"originalTimestamp": "2026-01-05T09:00:00.000Z", "sentAt": "2026-01-05T09:00:10.000Z",
      "receivedAt": "2026-01-05T08:00:10.000Z"}, T0_MS),  # a device clock an hour ahead
    ({"originalTimestamp": "1970-01-01T00:00:00.000Z", "sentAt": "1970-01-01T00:01:00.000Z",
      "receivedAt": "2026-01-05T08:01:00.000Z"}, T0_MS),  # a device clock reset to 1970, queued a minute
    ({"originalTimestamp": T0, "sentAt": "2026-01-05T10:00:00.000+01:00",
      "receivedAt": "2026-01-05T09:00:00.500Z"}, T0_MS + 500),  # queued an hour (an offset), 0.5 s in transit
    ({"originalTimestamp": T0, "sentAt": "2026-01-05T07:56:00.000Z",
      "receivedAt": "2026-01-05T07:56:00.000Z"}, T0_MS),  # sent before it happened, within the allowance
    ({"originalTimestamp": T0, "sentAt": T0}, T0_MS),  # no receivedAt: nothing to correct by
    ({"originalTimestamp": T0, "receivedAt": "2026-01-05T08:00:05.000Z"}, T0_MS),  # no sentAt
    ({"originalTimestamp": T0, "sentAt": "later", "receivedAt": "2026-01-05T09:00:00.000Z"}, T0_MS),  # unreadable
    ({"receivedAt": T0}, T0_MS),  # no time named: the server's receipt, as Segment's own server does
    ({"receivedAt": T0, "sentAt": "2026-01-05T07:00:00.000Z"}, T0_MS),
    ({"timestamp": T0, "originalTimestamp": "2026-01-05T09:00:00.000Z", "sentAt": "2026-01-05T09:00:10.000Z",
      "receivedAt": "2026-01-05T08:00:10.000Z"}, T0_MS),  # a timestamp given is Segment's already
], ids=["clock-ahead", "clock-1970", "sent-late", "sent-before-within", "no-received", "no-sent", "unreadable-sent",
        "received-only", "received-and-sent", "timestamp-wins"])
def test_timestamp_is_computed_as_segment_does(changes: dict[str, Any], expected_ms: int) -> None:
    """Without `timestamp`, originalTimestamp corrected by sentAt and receivedAt, else receivedAt."""
    for etype in ("track", "alias"):
        out = decode_line(line(etype, **{"timestamp": DROP, **changes}))
        assert isinstance(out, Event), out
        assert out.ts == expected_ms


def test_invalid_utf8_is_invalid_json_and_keeps_the_raw_text() -> None:
    """Bytes that are not UTF-8 are invalid_json; the dead letter keeps them, backslash-escaped."""
    raw = b'{"type": "page", "anonymousId": "\xff\xfe", "timestamp": "' + T0.encode() + b'"}'
    out = decode_line(raw)
    assert isinstance(out, Rejection)
    assert out.reason == "invalid_json"
    assert "\\xff\\xfe" in out.raw
    assert out.raw.startswith('{"type": "page"')


@pytest.mark.parametrize("bad_type", [["track"], {"name": "track"}], ids=["list", "object"])
def test_unhashable_type_is_unknown_type(bad_type: Any) -> None:
    """A JSON array or object as `type` is valid JSON with an unknown type, not invalid JSON."""
    out = decode_line(line(type=bad_type))
    assert isinstance(out, Rejection)
    assert out.reason == "unknown_type", out


@pytest.mark.parametrize(
    "ts", ["2026-01-05T08:00:\u0661\u0662.\u0661\u0662\u0663Z", "2026-01-05T08:00:\u0661\u0662Z"], ids=["millis", "seconds"]
)
def test_non_ascii_digits_are_not_iso8601(ts: str) -> None:
    """Only ASCII digits make an ISO-8601 timestamp, on the fast path as on the slow one."""
    out = decode_line(line(timestamp=ts))
    assert isinstance(out, Rejection)
    assert out.reason == "bad_timestamp", out


# ------------------------------------------------------------------ accepted lines

ACCEPTED = [
    # (id, raw line, expected attributes of the Event)
    ("nested-64", line(properties=nested(63)), {"properties": nested(63)}),
    # Numeric ids, as Segment's libraries take them: the decimal string.
    ("userid-number", line("track", userId=12345), {"user_id": "12345", "anonymous_id": "anon-1"}),
    ("anonymousid-number", line(anonymousId=42), {"anonymous_id": "42", "device_id": "42"}),
    ("previousid-number", line("alias", previousId=7, userId=8), {"previous_id": "7", "user_id": "8"}),
    ("big-number-id", line("screen", userId=2**64 - 1), {"user_id": str(2**64 - 1)}),
    ("float-id", line("screen", userId=1.5), {"user_id": "1.5"}),
    ("whole-float-id", line("screen", userId=42.0), {"user_id": "42"}),  # as JavaScript's String(42.0)
    ("exponent-id", line("screen", userId=1e3), {"user_id": "1000"}),
    # A placeholder messageId is shared by unrelated events: the line's hash stands in, as for none.
    ("messageid-undefined", line(messageId="undefined"), {"message_id": HASHED}),
    ("messageid-null-padded", line(messageId=" NULL "), {"message_id": HASHED}),
    ("messageid-zero-uuid", line(messageId="00000000-0000-0000-0000-000000000000"), {"message_id": HASHED}),
    ("messageid-c-null", line(messageId="(null)"), {"message_id": HASHED}),
    ("messageid-dash", line(messageId="-"), {"message_id": HASHED}),
    ("many-brackets-shallow", line(properties={"items": [{"sku": n} for n in range(200)]}),
     {"properties": {"items": [{"sku": n} for n in range(200)]}}),
    ("brackets-in-strings", line(properties={"s": "{[" * 100}), {"properties": {"s": "{[" * 100}}),
    ("identify", line("identify"), {"type": "identify", "user_id": "user-1", "anonymous_id": "anon-1",
                                    "traits": {"email": "a@b.example"}, "ts": T0_MS, "message_id": "m-identify"}),
    ("track", line("track"), {"type": "track", "name": "Form Submitted", "properties": {"topic": "ai"}}),
    ("page", line("page"), {"type": "page", "name": "Pricing", "anonymous_id": "anon-1", "user_id": None}),
    ("page-without-name", line("page", name=DROP), {"type": "page", "name": None}),
    ("page-null-name", line("page", name=None), {"type": "page", "name": None}),
    ("screen", line("screen"), {"type": "screen", "name": "Home", "user_id": "user-1"}),
    ("alias", line("alias"), {"type": "alias", "previous_id": "anon-1", "user_id": "user-1", "device_id": "anon-1"}),
    ("group", line("group"), {"type": "group", "group_id": "acme", "traits": {"name": "Acme"}}),
    ("group-numeric-id", line("group", groupId=12), {"group_id": "12"}),
    ("naive-ts-is-utc", line(timestamp="2026-01-05T08:00:00"), {"ts": T0_MS}),
    ("offset-plus", line(timestamp="2026-01-05T09:00:00+01:00"), {"ts": T0_MS}),
    ("offset-minus-millis", line(timestamp="2026-01-05T03:30:00.250-04:30"), {"ts": T0_MS + 250}),
    ("z-no-millis", line(timestamp="2026-01-05T08:00:01Z"), {"ts": T0_MS + 1000}),
    ("utc-offset-zero", line(timestamp="2026-01-05T08:00:00+00:00"), {"ts": T0_MS}),
    ("first-instant-2000", line(timestamp="2000-01-01T00:00:00Z"), {"ts": 946_684_800_000}),
    ("1999-with-offset-is-2000", line(timestamp="1999-12-31T23:00:00-02:00"), {"ts": 946_684_800_000 + 3_600_000}),
    ("last-ms-before-2100", line(timestamp="2099-12-31T23:59:59.999Z"), {"ts": 4_102_444_799_999}),
    ("original-ts-fallback", line(timestamp=DROP, originalTimestamp=T0), {"ts": T0_MS}),
    ("original-ts-when-null", line(timestamp=None, originalTimestamp=T0), {"ts": T0_MS}),
    ("ts-wins-over-original", line(originalTimestamp="junk"), {"ts": T0_MS}),
    ("context-traits-track", line("track", context={"traits": {"email": "c@d.example"}}), {"traits": {"email": "c@d.example"}}),
    ("context-traits-page", line("page", context={"traits": {"plan": "pro"}}), {"traits": {"plan": "pro"}}),
    ("top-traits-win-over-context", line("page", traits={"a": 1}, context={"traits": {"b": 2}}), {"traits": {"a": 1}}),
    ("identify-ignores-context-traits", line("identify", traits=DROP, context={"traits": {"b": 2}}), {"traits": {}}),
    ("null-objects-are-empty", line(properties=None, context=None, traits=None), {"properties": {}, "context": {}}),
    ("unknown-keys-ignored", line(sentAt=T0, integrations={"All": True}), {"type": "page"}),
    ("userid-only", line("track", anonymousId=DROP, userId="user-9"), {"user_id": "user-9", "device_id": "user-9"}),
    ("null-anonymousid-with-userid", line("screen", anonymousId=None), {"anonymous_id": None}),
    ("id-256-chars", line(anonymousId="a" * 256), {"anonymous_id": "a" * 256}),
    ("blank-messageid-derived", line(messageId="  "), {}),
]


@pytest.mark.parametrize(("raw", "expected"), [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_accepted(raw: bytes, expected: dict[str, Any]) -> None:
    """Valid Segment calls of every type decode into a normalized Event; times become UTC epoch ms."""
    out = decode_line(raw)
    assert isinstance(out, Event), out
    for attr, value in expected.items():
        assert getattr(out, attr) == value, attr


def test_missing_message_id_is_derived_from_the_line() -> None:
    """Without a messageId the id is a hash of the line: stable, equal for identical lines, apart otherwise."""
    raw = line(messageId=DROP)
    first, again = decode_line(raw), decode_line(raw)
    assert isinstance(first, Event) and isinstance(again, Event)
    assert first.message_id.startswith("h:")
    assert first.message_id == again.message_id
    # Surrounding whitespace is not part of the line's identity (a resent line may differ in it).
    padded = decode_line(b"  " + raw + b"\r")
    assert isinstance(padded, Event) and padded.message_id == first.message_id
    other = decode_line(line(messageId=DROP, anonymousId="anon-2"))
    assert isinstance(other, Event) and other.message_id != first.message_id
    # A null messageId derives the same way.
    assert decode_line(line(messageId=None)).message_id.startswith("h:")


def test_to_segment_round_trips() -> None:
    """An accepted event written back with to_segment decodes to the same Event."""
    for _, raw, _ in ACCEPTED:
        event = decode_line(raw)
        assert isinstance(event, Event)
        again = decode_line(orjson.dumps(event.to_segment()))
        assert again == event


# ------------------------------------------------------------------ never raises

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
SEGMENT_KEYS = ("type", "anonymousId", "userId", "previousId", "groupId", "event", "name", "properties",
                "traits", "context", "messageId", "timestamp", "originalTimestamp", "sentAt", "receivedAt")
SEGMENTISH = st.dictionaries(
    st.sampled_from(SEGMENT_KEYS),
    st.one_of(JSON_VALUES, st.sampled_from(["page", "track", "alias", "group", "identify", "screen", T0, "anon-1", "null", ""])),
    max_size=len(SEGMENT_KEYS),
)


def _check_outcome(raw: bytes) -> None:
    out = decode_line(raw, source="s")
    assert isinstance(out, (Event, Rejection))
    if isinstance(out, Rejection):
        assert out.reason in REASONS
        assert isinstance(out.detail, str) and out.detail
        assert out.source == "s"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_never_raises_on_bytes(raw: bytes) -> None:
    """Any bytes at all give an Event or a Rejection with a known reason, never an exception."""
    _check_outcome(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON_VALUES, SEGMENTISH))
def test_never_raises_on_json(value: Any) -> None:
    """Any JSON value, Segment-shaped or not, gives an Event or a Rejection with a known reason."""
    _check_outcome(orjson.dumps(value))


# ------------------------------------------------------------------ the fast path agrees with the checked path

# Values that sit on the fast path's edges: placeholders, whitespace, lengths at the limit,
# non-strings where strings go, timestamps in other shapes and out of range.
EDGE_VALUES: list[Any] = [
    None, "", " ", "anon-1", " anon-1", "anon-1 ", "Undefined", "NULL", "a" * 256, "a" * 257, "x\u0000y", "user-1",
    "page", "track", "identify", "screen", "group", "alias", T0, "2026-01-05T08:00:00Z", "2026-01-05T08:00:60.000Z",
    "2026-01-05T08:00:00.5Z", "1999-12-31T23:59:59.999Z", "2100-01-01T00:00:00.000Z", "2026-01-05 08:00:00",
    "2026-01-05T08:00:00.000+02:00", "yesterday", 0, 1.5, True, [], {}, {"traits": {"email": "a@b.example"}},
    {"email": "c@d.example"}, ["anon-1"],
    "2026-01-05T07:55:00.000Z", "2026-01-05T07:54:59.999Z",  # as receivedAt: 5 minutes before T0, and just over
]
EDGY = st.sampled_from(EDGE_VALUES)
# A valid event with one to three fields replaced by edge values (or removed).
NEAR_VALID = st.builds(
    lambda etype, changes: obj(etype, **changes),
    st.sampled_from(list(BASE)),
    st.dictionaries(st.sampled_from(SEGMENT_KEYS), st.one_of(EDGY, st.just(DROP)), min_size=1, max_size=3),
)


def _checked_only(raw: bytes) -> Event | Rejection:
    real = decode_module._fast_build
    decode_module._fast_build = lambda obj: None
    try:
        return decode_line(raw, source="s")
    finally:
        decode_module._fast_build = real


def _mismatches(values: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any, Any]]:
    out = []
    for value in values:
        raw = orjson.dumps(value)
        fast, checked = decode_line(raw, source="s"), _checked_only(raw)
        if fast != checked:
            out.append((value, fast, checked))
    return out


def test_fast_path_agrees_on_every_single_edge() -> None:
    """Every event type with any one field set to any edge value (or removed) decodes the same both ways."""
    values = [obj(etype, **{key: edge}) for etype in BASE for key in SEGMENT_KEYS
              for edge in [*EDGE_VALUES, DROP]]
    # Pairs that matter together: context traits stand in only when the event has none of its own.
    values += [obj(etype, traits=DROP, context={"traits": {"plan": "pro"}}) for etype in BASE]
    values += [obj(etype, anonymousId=DROP, userId=uid) for etype in BASE for uid in EDGE_VALUES]
    assert _mismatches(values) == []
    assert len(values) > 3000


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(NEAR_VALID, SEGMENTISH))
def test_fast_path_decodes_like_the_checked_path(value: Any) -> None:
    """Whatever the fields, the fast path gives the Event (or leaves the Rejection) the checked path gives."""
    assert _mismatches([value]) == []


def test_plain_id_cache_answers_like_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache of judged ids gives the checks' verdict, on a first look, a repeat and after it starts over."""
    monkeypatch.setattr(decode_module, "PLAIN_IDS_SIZE", 4)
    ids = [v for v in EDGE_VALUES if not isinstance(v, (list, dict))] + ["\u00e9t\u00e9", "a\tb", "NaN", "n/a", "Guest"]
    expected = [isinstance(v, str) and decode_module.junk_reason(v) is None for v in ids]
    for _ in range(3):  # the first pass fills (and with 4 entries, clears) it; later ones hit it
        assert [decode_module._plain_id(v) for v in ids] == expected
    assert len(decode_module._PLAIN_IDS) <= 4


def test_fast_path_takes_the_common_events() -> None:
    """Well-formed track, page, screen and identify events are decoded by the fast path itself."""
    for etype in ("track", "page", "screen", "identify"):
        fast = decode_module._fast_build(orjson.loads(line(etype)))
        assert isinstance(fast, Event) and fast == decode_line(line(etype))


# ------------------------------------------------------------------ consent

CONSENTED = {"consent": {"categoryPreferences": {"analytics": True}}}


@pytest.mark.parametrize(
    ("fields", "accepted"),
    [
        ({"anonymousId": "d1", "context": CONSENTED}, True),
        ({"anonymousId": "d1", "context": {"consent": {"categoryPreferences": {"analytics": False}}}}, False),
        ({"anonymousId": "d1", "context": {"consent": {"categoryPreferences": {"marketing": True}}}}, False),
        ({"anonymousId": "d1"}, False),
        ({"anonymousId": "d1", "context": {"consent": "yes"}}, False),
        ({"userId": "u1"}, True),
        ({"userId": "u1", "anonymousId": "d1"}, True),
    ],
    ids=["granted", "refused", "other_category", "no_consent_object", "malformed_consent", "known", "identified"],
)
def test_consent_category_gates_anonymous_tracking(fields: dict, accepted: bool) -> None:
    """With a consent category, anonymous events need it granted; known contacts do not."""
    raw = orjson.dumps({"type": "page", "timestamp": T0, "messageId": "m1", **fields})
    out = decode_line(raw, "f:1", consent_category="analytics")
    if accepted:
        assert isinstance(out, Event)
    else:
        assert isinstance(out, Rejection) and out.reason == "no_consent"
        assert out.raw == "", "tracking data nobody agreed to is not stored"
        assert out.source == "f:1" and "analytics" in out.detail
    assert isinstance(decode_line(raw), Event), "without a consent category every valid event is tracked"


# ------------------------------------------------------------------ the context the rules read

FULL_CONTEXT = {"campaign": {"source": "google", "name": "q1"}, "page": {"path": "/pricing", "url": "https://x/pricing"},
                "library": {"name": "analytics.js"}, "ip": "203.0.113.9", **CONSENTED}


@pytest.mark.parametrize(
    ("keys", "kept"),
    [
        (None, FULL_CONTEXT),
        (frozenset({"campaign"}), {"campaign": FULL_CONTEXT["campaign"]}),
        (frozenset({"campaign", "page", "locale"}), {"campaign": FULL_CONTEXT["campaign"], "page": FULL_CONTEXT["page"]}),
        (frozenset(), {}),
    ],
    ids=["whole", "campaign_only", "with_a_key_the_event_lacks", "nothing"],
)
def test_events_keep_the_context_keys_the_rules_read(keys: frozenset[str] | None, kept: dict) -> None:
    """With context keys, the context dict holds those alone and the whole of it travels as JSON text;
    consent is judged on the whole context before anything is dropped."""
    raw = orjson.dumps({"type": "page", "timestamp": T0, "messageId": "m1", "anonymousId": "d1", "context": FULL_CONTEXT})
    out = decode_line(raw, "f:1", consent_category="analytics", context_keys=keys)
    assert isinstance(out, Event) and out.context == kept
    if keys is None:
        assert out.context_json is None
    else:
        assert out.context_json is not None and orjson.loads(out.context_json) == FULL_CONTEXT
    assert out.to_segment()["context"] == FULL_CONTEXT  # the events table and logs get all of it


def test_an_event_without_context_keeps_none_as_text() -> None:
    raw = orjson.dumps({"type": "page", "timestamp": T0, "messageId": "m1", "anonymousId": "d1"})
    out = decode_line(raw, context_keys=frozenset({"campaign"}))
    assert isinstance(out, Event) and out.context == {} and out.context_json is None
