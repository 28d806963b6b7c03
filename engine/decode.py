"""Decoding: one raw input line becomes an Event or a Rejection, and never raises."""

from __future__ import annotations

from hashlib import blake2b
from sys import intern
from typing import Any, Final

import orjson

from .events import EVENT_TYPES, Event, Rejection
from .timeutil import MAX_EVENT_MS, MIN_EVENT_MS, parse_iso_ms

MAX_EVENT_BYTES: Final = 32 * 1024
# How far an event's timestamp may lie after its receivedAt (when the line has one: Segment
# sets it on receipt). An event cannot happen after it was received, so more than a little
# means the sending device's clock runs ahead; accepted, it would carry its input's watermark
# that far into the future, making every later event late and firing timers early.
MAX_AHEAD_OF_RECEIPT_MS: Final = 5 * 60_000
_BOM: Final = b"\xef\xbb\xbf"
MAX_ID_CHARS: Final = 256
# How deeply a line's JSON may nest. orjson reads 1,024 levels but writes only 254, and the
# warehouse rows, snapshots and triggers write an event's parts back: one line nested
# deeper stopped the whole run. No tracker nests anywhere near this.
MAX_NESTING: Final = 64

# Placeholders that broken trackers send instead of a real id. Accepting them would
# stitch every visitor who sent "undefined" into one giant contact.
JUNK_IDS: Final = frozenset(
    {
        "",
        "0",
        "-1",
        "anonymous",
        "anon",
        "null",
        "nil",
        "none",
        "undefined",
        "nan",
        "unknown",
        "n/a",
        "na",
        "guest",
        "true",
        "false",
        "[object object]",
        "00000000-0000-0000-0000-000000000000",
        "distinct_id",
        "id",
        "user_id",
        "userid",
        "email",
        "not_authenticated",
        "-",
        "(null)",
        "<nil>",
    }
)

_EVENT_TYPES = frozenset(EVENT_TYPES)
_LONGEST_JUNK: Final = max(len(j) for j in JUNK_IDS)


def _junk_message_id(message_id: str) -> bool:
    """True for a placeholder messageId ('undefined', 'null', ...): one that unrelated events share."""
    return len(message_id) <= _LONGEST_JUNK and message_id.strip().lower() in JUNK_IDS
_DUMPS: Final = orjson.dumps  # looked up once: compiled, `orjson.dumps` is a getattr at every call


def nesting(value: Any) -> int:
    """How many levels of objects and arrays ``value`` nests (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > deepest:
            deepest = level
        stack.extend([(child, level + 1) for child in children])
    return deepest


def too_large_detail(size: int, kept: int | None = None) -> str:
    """The detail of a ``too_large`` rejection of ``size`` bytes, of which the source kept only ``kept``."""
    detail = f"{size} bytes; the limit is {MAX_EVENT_BYTES}"
    if kept is not None and kept < size:
        # Sources hold no more than so much of a line: raw is its start, and the whole line
        # is still where the source position points.
        detail += f"; raw keeps only its first {kept} bytes"
    return detail


def _raw_text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def junk_reason(value: str) -> str | None:
    """Return why an identifier is junk, or None when it is usable."""
    n = len(value)
    if 0 < n <= MAX_ID_CHARS and value.isprintable() and not value[0].isspace() and not value[-1].isspace():
        # The common case, decided with a few C calls: only the placeholder list remains.
        return f"placeholder value {value!r}" if value.lower() in JUNK_IDS else None
    stripped = value.strip()
    if stripped.lower() in JUNK_IDS:
        return f"placeholder value {value!r}"
    if len(value) > MAX_ID_CHARS:
        return f"longer than {MAX_ID_CHARS} characters"
    if stripped != value:
        return f"leading or trailing whitespace in {value!r}"
    if not value.isprintable():
        return f"control characters in {value!r}"
    return None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _identifier(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Reject("wrong_type", f"{key} must be a string or a number, got {type(value).__name__}")
        # Segment's libraries take numeric ids and its API turns them into strings, as
        # JavaScript writes numbers: 42.0 is "42" (one id with 42), not Python's "42.0".
        value = str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) < 1e21 else str(value)
    why = junk_reason(value)
    if why is not None:
        raise _Reject("junk_identifier", f"{key}: {why}")
    return value


def _mapping(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Reject("wrong_type", f"{key} must be an object, got {type(value).__name__}")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _Reject("wrong_type", f"{key} must be a string, got {type(value).__name__}")


def _segment_time(value: Any) -> int | None:
    """The epoch ms of one of Segment's own timestamps (sentAt, receivedAt); None when absent or unreadable."""
    if type(value) is not str:
        return None
    try:
        return parse_iso_ms(value)
    except (ValueError, OverflowError, OSError):
        return None  # Segment's to set, and optional: one that does not parse is ignored


def _ahead_of_receipt(ts: int, received: Any) -> int:
    """How many ms ``ts`` lies beyond the allowance after ``received`` (receivedAt); 0 when within it or unreadable."""
    at = _segment_time(received)
    return 0 if at is None else max(0, ts - at - MAX_AHEAD_OF_RECEIPT_MS)


def _timestamp(obj: dict[str, Any]) -> int:
    """When the event happened, in epoch ms, the way Segment computes its ``timestamp``.

    ``timestamp`` when the line has one. Otherwise the device's ``originalTimestamp``, corrected
    for the device clock's skew when the line has both ``sentAt`` (the device's clock at sending)
    and ``receivedAt`` (the server's at receipt): receivedAt - (sentAt - originalTimestamp).
    With neither, ``receivedAt``, as Segment's server does for a call that names no time.
    """
    value = obj.get("timestamp")
    key = "timestamp"
    received = obj.get("receivedAt")
    if value is None:
        value = obj.get("originalTimestamp")
        key = "originalTimestamp"
        if value is None:
            if received is None:
                raise _Reject("bad_timestamp", "timestamp is missing (and neither originalTimestamp nor receivedAt stands in)")
            value, key = received, "receivedAt"
    if not isinstance(value, str):
        raise _Reject("bad_timestamp", f"{key} must be an ISO-8601 string, got {type(value).__name__}")
    try:
        ms = parse_iso_ms(value)
    except (ValueError, OverflowError, OSError):
        raise _Reject("bad_timestamp", f"{key} {value[:64]!r} is not ISO-8601") from None
    if key == "originalTimestamp":
        sent = _segment_time(obj.get("sentAt"))
        at = _segment_time(received) if sent is not None else None
        if sent is not None and at is not None:
            if ms - sent > MAX_AHEAD_OF_RECEIPT_MS:
                raise _Reject("bad_timestamp", f"originalTimestamp {value[:64]!r} is {(ms - sent) / 1000:,.0f} s after sentAt "
                              f"{str(obj.get('sentAt'))[:64]!r}: an event cannot be sent before it happens")
            ms = at - (sent - ms)
            if not MIN_EVENT_MS <= ms < MAX_EVENT_MS:
                raise _Reject("bad_timestamp", f"originalTimestamp {value[:64]!r} corrected for the device's clock "
                              f"(receivedAt - (sentAt - originalTimestamp)) is outside 2000-01-01..2100-01-01")
            return ms  # at most the allowance after receivedAt, by the check on sentAt above
    if not MIN_EVENT_MS <= ms < MAX_EVENT_MS:
        raise _Reject("bad_timestamp", f"{key} {value!r} is outside 2000-01-01..2100-01-01")
    excess = _ahead_of_receipt(ms, received) if received is not None else 0
    if excess:
        ahead_s = (excess + MAX_AHEAD_OF_RECEIPT_MS) / 1000
        raise _Reject("bad_timestamp", f"{key} {value[:64]!r} is {ahead_s:,.0f} s after receivedAt {str(received)[:64]!r} "
                      f"(at most {MAX_AHEAD_OF_RECEIPT_MS // 1000} s): the sending device's clock runs ahead")
    return ms


# Event types the fast path decodes, with the key of their name (None: they have none).
_FAST_NAME_KEY: Final[dict[str, str | None]] = {"track": "event", "page": "name", "screen": "name", "identify": None}
# The same type strings, to replace the parser's fresh copies: every later use of an
# event's type as a key or in a comparison then meets one object with its hash cached.
_FAST_TYPES: Final[dict[str, str]] = {t: t for t in _FAST_NAME_KEY}


# Identifiers `_plain_id` judged lately: a visitor's id comes back with each of their
# events, and its four string method calls cost about 2.7k instructions compiled, against
# one lookup (whose hash the shard lookup of the same id then reuses). Bounded like
# ids.SHARD_CACHE_SIZE: cleared when full.
_PLAIN_IDS: Final[dict[str, bool]] = {}
PLAIN_IDS_SIZE = 65_536


def _plain_id(value: Any) -> bool:
    """True for an identifier `_identifier` accepts as it is: a printable, trimmed, non-placeholder string."""
    if type(value) is not str:
        return False
    known = _PLAIN_IDS.get(value)
    if known is not None:
        return known
    plain = (0 < len(value) <= MAX_ID_CHARS and value.isprintable() and not value[0].isspace()
             and not value[-1].isspace() and value.lower() not in JUNK_IDS)
    if len(_PLAIN_IDS) >= PLAIN_IDS_SIZE:
        _PLAIN_IDS.clear()
    _PLAIN_IDS[value] = plain
    return plain


def _fast_build(obj: dict[str, Any]) -> Event | None:
    """The Event of a well-formed track, page, screen or identify; None sends the line to `_build`.

    Nearly every line is one of these, and checking it field by field through `_build`'s
    helpers cost twice the JSON parse itself. Anything unusual (another type, a missing or
    odd field, a line without messageId) returns None, so `_build` alone decides every
    rejection and every edge case; a differential test holds the two to the same result.
    """
    etype = obj.get("type")
    if type(etype) is not str:
        return None
    name_key = _FAST_NAME_KEY.get(etype, "")
    if name_key == "":
        return None
    anonymous_id = obj.get("anonymousId")
    user_id = obj.get("userId")
    if anonymous_id is None:
        if not _plain_id(user_id):
            return None
    elif not _plain_id(anonymous_id) or (user_id is not None and not _plain_id(user_id)):
        return None
    name = None
    if name_key is not None:
        name = obj.get(name_key)
        if etype == "track":
            if type(name) is not str or not name.strip():
                return None
        elif name is not None and type(name) is not str:
            return None
        if name is not None:
            # Interned, as the engine's counts key it: one copy per name, its hash cached.
            name = intern(name)
    text = obj.get("timestamp")
    message_id = obj.get("messageId")
    if (type(text) is not str or type(message_id) is not str or len(message_id) > MAX_ID_CHARS or not message_id.strip()
            or _junk_message_id(message_id)):
        return None
    try:
        ts = parse_iso_ms(text)
    except (ValueError, OverflowError, OSError):
        return None
    if not MIN_EVENT_MS <= ts < MAX_EVENT_MS:
        return None
    received = obj.get("receivedAt")
    if received is not None and _ahead_of_receipt(ts, received):
        return None
    properties = obj.get("properties")
    context = obj.get("context")
    traits = obj.get("traits")
    if properties is None:
        properties = {}
    elif type(properties) is not dict:
        return None
    if context is None:
        context = {}
    elif type(context) is not dict:
        return None
    if traits is None:
        traits = {}
    elif type(traits) is not dict:
        return None
    if not traits and etype != "identify":
        ctx_traits = context.get("traits")
        if isinstance(ctx_traits, dict):
            traits = ctx_traits
    return Event(message_id, _FAST_TYPES[etype], ts, anonymous_id, user_id, None, None, name, properties, traits,
                 context)


def _build(obj: dict[str, Any], raw: bytes) -> Event:
    event = _fast_build(obj)
    if event is not None:
        return event
    etype = obj.get("type")
    if not isinstance(etype, str) or etype not in _EVENT_TYPES:
        if etype is None and isinstance(obj.get("batch"), list):
            raise _Reject("unknown_type", f"a Segment batch envelope of {len(obj['batch'])} events, not an event: "
                          "write its events one per line (e.g. jq -c '.batch[]')")
        shown = "missing" if etype is None else repr(etype)[:40]
        raise _Reject("unknown_type", f"type is {shown}; expected one of {', '.join(EVENT_TYPES)}")
    anonymous_id = _identifier(obj, "anonymousId")
    user_id = _identifier(obj, "userId")
    previous_id = group_id = name = None
    if etype == "alias":
        previous_id = _identifier(obj, "previousId")
        if previous_id is None or user_id is None:
            raise _Reject("missing_field", "alias needs both previousId and userId")
    elif anonymous_id is None and user_id is None:
        raise _Reject("missing_identity", "neither anonymousId nor userId is present")
    if etype == "track":
        name = obj.get("event")
        if not isinstance(name, str) or not name.strip():
            raise _Reject("missing_field", "track needs a non-empty string `event`")
    elif etype in ("page", "screen"):
        name = _optional_str(obj, "name")
    elif etype == "group":
        group_id = obj.get("groupId")
        if isinstance(group_id, (int, float)) and not isinstance(group_id, bool):
            group_id = str(group_id)
        if not isinstance(group_id, str) or junk_reason(group_id):
            raise _Reject("missing_field", "group needs a usable groupId")
    ts = _timestamp(obj)
    message_id = obj.get("messageId")
    if message_id is None or (isinstance(message_id, str) and (not message_id.strip() or _junk_message_id(message_id))):
        # Without a messageId, the line itself identifies the event: a resent
        # identical line is still recognized as a duplicate. A placeholder ('undefined',
        # 'null', ...) is a tracker's bug shared by unrelated events, so it counts as none.
        message_id = "h:" + blake2b(raw.strip(), digest_size=12).hexdigest()
    elif not isinstance(message_id, str):
        raise _Reject("wrong_type", f"messageId must be a string, got {type(message_id).__name__}")
    elif len(message_id) > MAX_ID_CHARS:
        raise _Reject("junk_identifier", f"messageId: longer than {MAX_ID_CHARS} characters")
    properties = _mapping(obj, "properties")
    context = _mapping(obj, "context")
    traits = _mapping(obj, "traits")
    if not traits and etype not in ("identify", "group"):
        ctx_traits = context.get("traits")
        if isinstance(ctx_traits, dict):
            traits = ctx_traits
    return Event(
        message_id=message_id,
        type=etype,
        ts=ts,
        anonymous_id=anonymous_id,
        user_id=user_id,
        previous_id=previous_id,
        group_id=group_id,
        name=name,
        properties=properties,
        traits=traits,
        context=context,
    )


def has_consent(event: Event, category: str) -> bool:
    """True when the event's context grants the consent category (Segment's consent object)."""
    consent = event.context.get("consent")
    prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    return isinstance(prefs, dict) and prefs.get(category) is True


def decode_line(raw: bytes, source: str = "", consent_category: str | None = None,
                context_keys: frozenset[str] | None = None) -> Event | Rejection:
    """Decode one input line (without its newline) into an Event, or a Rejection with a reason code.

    It never raises, whatever the bytes: every failure becomes a Rejection that
    keeps the raw line and its source position for the dead-letter output. With a
    ``consent_category``, an anonymous event without that consent is rejected as
    ``no_consent`` and, being tracking data nobody agreed to, its raw line is not kept.
    With ``context_keys`` (Config.context_keys), the event keeps only those keys of its
    context as a dict, and the whole context as JSON text in ``context_json``.
    """
    out = _decode(raw, source)
    if type(out) is not Event:
        return out
    if consent_category is not None and out.user_id is None and not has_consent(out, consent_category):
        return Rejection("no_consent", f"anonymous event without consent for {consent_category!r}; "
                         "the line is not stored", "", source)
    context = out.context
    if context_keys is not None and context:
        # Written now, while the objects are fresh in the cache, and they die here instead
        # of riding along to the shards: 5-7 % of a `standard` replay (benchmarks/notes.md).
        out.context_json = _DUMPS(context).decode()
        out.context = {key: context[key] for key in context_keys if key in context}
    return out


def _decode(raw: bytes, source: str, strip_bom: bool = True) -> Event | Rejection:
    try:
        if len(raw) > MAX_EVENT_BYTES:
            return Rejection("too_large", too_large_detail(len(raw)), _raw_text(raw), source)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as ex:
            if strip_bom and raw.startswith(_BOM):
                # A UTF-8 byte order mark, as Windows tools write at the start of a file (or of
                # each file of a concatenation): not part of the event. Looked for only here,
                # where the parse already failed, so other lines pay nothing. A rejection
                # still keeps the whole line.
                out = _decode(raw[len(_BOM):], source, False)
                if type(out) is Event:
                    return out
                inner: Rejection = out  # type: ignore[assignment]
                return Rejection(inner.reason, inner.detail, _raw_text(raw), source)
            if not raw.strip():
                return Rejection("empty_line", "the line is blank", _raw_text(raw), source)
            if str(ex).startswith("depth limit exceeded"):
                return Rejection("too_large", f"nested more than 1024 levels deep (at most {MAX_NESTING})",
                                 _raw_text(raw), source)
            return Rejection("invalid_json", str(ex)[:200], _raw_text(raw), source)
        if not isinstance(obj, dict):
            return Rejection("not_an_object", f"got a JSON {type(obj).__name__}", _raw_text(raw), source)
        # Counting brackets (strings' included) is a cheap bound on the depth: only a line
        # with that many is walked.
        if raw.count(b"{") + raw.count(b"[") > MAX_NESTING and (depth := nesting(obj)) > MAX_NESTING:
            return Rejection("too_large", f"nested {depth} levels deep (at most {MAX_NESTING})", _raw_text(raw), source)
        return _build(obj, raw)
    except _Reject as rej:
        return Rejection(rej.reason, rej.detail, _raw_text(raw), source)
    except Exception as ex:  # noqa: BLE001 - decoding must never raise; P4 makes it data
        return Rejection("invalid_json", f"undecodable: {type(ex).__name__}: {ex}"[:200], _raw_text(raw), source)
