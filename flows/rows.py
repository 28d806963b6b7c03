"""Warehouse rows: how contacts, events, triggers and dead letters become Parquet part rows.

Shards turn their changes into these plain tuples (cheap to pickle between workers);
the warehouse writer turns batches of tuples into Arrow tables with fixed schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson
import pyarrow as pa

from engine.contact import ContactState
from engine.events import Event, Rejection
from engine.triggers import Trigger
from engine.workflows import Run

TS = pa.timestamp("ms")

CONTACT_PART = pa.schema(
    [
        ("contact_id", pa.string()),
        ("deleted", pa.bool_()),
        ("merged_into", pa.string()),  # on a tombstone: the contact an anonymous profile merged into
        ("merged_at", TS),
        ("user_id", pa.string()),
        ("email", pa.string()),
        ("anonymous_ids", pa.list_(pa.string())),
        ("traits", pa.string()),
        # settled_at: when a decaying score was last brought to its value (see the contact_scores view).
        ("scores", pa.list_(pa.struct([("profile", pa.string()), ("score", pa.float64()), ("settled_at", TS)]))),
        ("grade", pa.string()),
        ("fit", pa.float64()),
        ("stage", pa.string()),
        ("stage_since", TS),
        ("segments", pa.list_(pa.struct([("segment", pa.string()), ("since", TS)]))),
        ("first_seen", TS),
        ("last_seen", TS),
        ("first_campaign", pa.string()),
        ("visits", pa.int32()),
        ("counts", pa.string()),
        ("lists", pa.list_(pa.string())),
        ("events", pa.int32()),
        ("updated_at", TS),
        ("erased", pa.bool_()),
        (
            "runs",
            pa.list_(pa.struct([("workflow", pa.string()), ("step", pa.string()), ("since", TS), ("due_at", TS),
                                ("entered_at", TS)])),
        ),
    ]
)
IDENTITY_PART = pa.schema(
    [("identifier", pa.string()), ("kind", pa.string()), ("contact_id", pa.string()), ("linked_at", TS)]
)
EVENT_PART = pa.schema(
    [
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("name", pa.string()),
        ("contact_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("timestamp", TS),
        ("properties", pa.string()),
        ("context", pa.string()),
    ]
)
TRIGGER_PART = pa.schema(
    [
        ("trigger_id", pa.string()),
        ("action", pa.string()),
        ("rule", pa.string()),
        ("contact_id", pa.string()),
        ("user_id", pa.string()),
        ("email", pa.string()),
        ("event_time", TS),
        ("params", pa.string()),
        ("reason", pa.string()),
    ]
)
DEAD_LETTER_PART = pa.schema(
    [("reason", pa.string()), ("detail", pa.string()), ("raw", pa.string()), ("source", pa.string())]
)
PART_SCHEMAS = {
    "contacts": CONTACT_PART,
    "identities": IDENTITY_PART,
    "events": EVENT_PART,
    "triggers": TRIGGER_PART,
    "dead_letters": DEAD_LETTER_PART,
}


# Looked up once: compiled, `orjson.X` is a getattr on the module at every call.
_DUMPS: Final = orjson.dumps
_SORTED_JSON: Final = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return _DUMPS(value, option=_SORTED_JSON).decode()


def contact_row(c: ContactState, steps: dict[str, list[str]] | None = None) -> tuple[Any, ...]:
    """A contact's current state as a contacts-part row; ``steps`` names each workflow's steps.

    Struct values are tuples in the schema's field order, not dicts: a shard exports every
    contact it changed at every cut, and tuples cost less to build and to convert to Arrow.
    """
    steps = steps or {}
    runs: list[tuple[Any, ...]] = []
    if c.runs:
        by_key: dict[str, Run] = c.runs  # typed: untyped, each field was a getattr
        for key in sorted(by_key):
            r = by_key[key]
            runs.append((r.workflow, _step_name(steps.get(r.workflow), r.pc), r.since, r.due, r.entered_at))
    return (
        c.contact_id,
        False,
        None,
        None,
        c.user_id,
        c.email,
        list(c.anonymous_ids),
        _json(c.traits),
        [(p, v, c.score_at.get(p)) for p, v in sorted(c.scores.items())],  # (profile, score, settled at)
        c.grade,
        c.fit,
        c.stage,
        c.stage_since,
        sorted(c.segments.items()),  # (segment, since) pairs
        c.first_seen,
        c.last_seen,
        _json(c.first_campaign),
        c.visits,
        _json(c.counts),
        sorted(c.lists),
        c.events,
        c.updated_at,
        c.deleted,
        runs,
    )


def _step_name(names: list[str] | None, pc: int) -> str:
    if names is None or pc >= len(names):
        return str(pc)
    return names[pc]


def merged_row(anonymous_id: str, into: str, at: int) -> tuple[Any, ...]:
    """A tombstone: an anonymous profile merged into a known contact and no longer exists."""
    return (anonymous_id, True, into, at) + (None,) * (len(CONTACT_PART) - 4)


def identity_row(identifier: str, contact_id: str, linked_at: int) -> tuple[Any, ...]:
    """A device link."""
    return (identifier, "anonymous_id", contact_id, linked_at)


def dead_letter_row(r: Rejection) -> tuple[Any, ...]:
    """A rejected line."""
    return (r.reason, r.detail, r.raw, r.source)


class _Columns:
    """A part kind's rows kept as one Python list per column of its schema."""

    __slots__ = ("cols",)
    schema: ClassVar[pa.Schema]

    def __init__(self) -> None:
        self.cols: tuple[list[Any], ...] = tuple([] for _ in self.schema)

    def __len__(self) -> int:
        return len(self.cols[0])

    def table(self) -> pa.Table:
        """The part table of everything appended."""
        return pa.table([pa.array(c, type=f.type) for c, f in zip(self.cols, self.schema)], schema=self.schema)

    def extend_table(self, table: pa.Table) -> None:
        """Append the rows of a part table of this kind."""
        for col, values in zip(self.cols, table.columns):
            if pa.types.is_timestamp(values.type):
                values = values.cast(pa.int64())
            col.extend(values.to_pylist())


class EventColumns(_Columns):
    """Applied events as the events part's columns, filled as shards apply them.

    A decoded Event with its dicts is about 1.9 KB and a dozen objects the collector
    scans at every checkpoint; its row is nine strings and numbers. Shards keep events
    until their next cut, so turning them into columns when applied keeps memory and
    collector passes small, and leaves the writer only the Arrow conversion.
    """

    __slots__ = ()
    schema: ClassVar[pa.Schema] = EVENT_PART

    def extend(self, applied: list[tuple[str, Event]]) -> None:
        """Append (contact_id, Event) pairs, in apply order."""
        if not applied:
            return
        mid, typ, name, cid, anon, uid, ts, props, ctx = self.cols
        # Decoded: orjson's bytes keep their whole write buffer (about 4 KB each).
        dumps = orjson.dumps
        mid.extend([e.message_id for _, e in applied])
        typ.extend([e.type for _, e in applied])
        name.extend([e.name for _, e in applied])
        cid.extend([c for c, _ in applied])
        anon.extend([e.anonymous_id for _, e in applied])
        uid.extend([e.user_id for _, e in applied])
        ts.extend([e.ts for _, e in applied])
        props.extend([dumps(e.properties).decode() if e.properties else None for _, e in applied])
        # The decoder may have written the context already, keeping only part of it as a dict.
        ctx.extend([e.context_json if e.context_json is not None else (dumps(e.context).decode() if e.context else None)
                    for _, e in applied])


class TriggerColumns(_Columns):
    """Fired triggers as the triggers part's columns (see EventColumns for why)."""

    __slots__ = ()
    schema: ClassVar[pa.Schema] = TRIGGER_PART

    def extend(self, triggers: list[Trigger]) -> None:
        """Append triggers, in firing order."""
        if not triggers:
            return
        tid, action, rule, cid, uid, email, at, params, reason = self.cols
        tid.extend([t.trigger_id for t in triggers])
        action.extend([t.action for t in triggers])
        rule.extend([t.rule for t in triggers])
        cid.extend([t.contact_id for t in triggers])
        uid.extend([t.user_id for t in triggers])
        email.extend([t.email for t in triggers])
        at.extend([t.event_time for t in triggers])
        params.extend([_json(t.params) for t in triggers])
        reason.extend([_json(t.reason) for t in triggers])


def events_table(applied: list[tuple[str, Event]]) -> pa.Table:
    """The events part table of (contact_id, Event) pairs."""
    cols = EventColumns()
    cols.extend(applied)
    return cols.table()


def triggers_table(triggers: list[Trigger]) -> pa.Table:
    """The triggers part table of Trigger objects."""
    cols = TriggerColumns()
    cols.extend(triggers)
    return cols.table()


def to_table(name: str, rows: Any) -> pa.Table:
    """Turn rows of one part kind (a list of rows, or Event/TriggerColumns) into an Arrow table."""
    if isinstance(rows, (EventColumns, TriggerColumns)):
        return rows.table()
    if name == "events":
        return events_table(rows)
    if name == "triggers":
        return triggers_table(rows)
    schema = PART_SCHEMAS[name]
    # Column by column: zip(*rows) over a cut's 10k+ contact rows kept one iterator per row
    # alive and cost about 3 us per row, more than converting the columns to Arrow.
    tuples: list[tuple[Any, ...]] = rows
    columns: list[list[Any]] = [[row[i] for row in tuples] for i in range(len(schema))]
    return pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)


@dataclass(slots=True)
class PendingRows:
    """One part table's rows whose Arrow table is built later, by the warehouse's part writer.

    A single-process run that follows a live stream hands rows over as they are: turning
    them into columns on the part writer's thread keeps that work out of the snapshot cut,
    where every shard of the worker would otherwise do it at once while newer events wait
    (p99 latency). A replay builds them in the shards (``StageContext.defer_tables``).
    """

    name: str
    rows: Any  # a list of rows, or EventColumns / TriggerColumns

    def build(self) -> pa.Table:
        """The Arrow table of these rows."""
        return to_table(self.name, self.rows)


def assemble(parts: list[pa.Table | PendingRows]) -> pa.Table:
    """One table from shards' tables and pending rows of the same part kind, in the given order."""
    tables = [p.build() if isinstance(p, PendingRows) else p for p in parts]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def export_tables(
    contacts: list[tuple[Any, ...]] = (),  # type: ignore[assignment]
    merged: list[tuple[str, str, int]] = (),  # type: ignore[assignment]
    identities: list[tuple[Any, ...]] = (),  # type: ignore[assignment]
    events: EventColumns | list[tuple[str, Event]] = (),  # type: ignore[assignment]
    triggers: TriggerColumns | list[Trigger] = (),  # type: ignore[assignment]
    dead_letters: list[tuple[Any, ...]] = (),  # type: ignore[assignment]
    defer: bool = False,
) -> dict[str, pa.Table | PendingRows]:
    """One shard's rows for one cut as part tables, leaving out the empty ones.

    With ``defer`` the tables are PendingRows, for the writer to build.
    """
    contact_rows = list(contacts) + [merged_row(*m) for m in merged]
    out: dict[str, Any] = {
        "contacts": contact_rows,
        "identities": list(identities),
        "events": events,
        "triggers": triggers,
        "dead_letters": list(dead_letters),
    }
    tables: dict[str, pa.Table | PendingRows] = {}
    for name, data in out.items():
        if len(data):
            pending = PendingRows(name, data)
            tables[name] = pending if defer else pending.build()
    return tables


def trigger_lines(triggers: list[Trigger]) -> str:
    """Triggers as JSON lines in the trigger schema, newline-separated (what the triggers sink writes).

    Here rather than in the flow's step so that the loop, once per trigger, is compiled.
    """
    dumps = orjson.dumps
    return "\n".join([dumps(t.to_dict()).decode() for t in triggers])
