"""Warehouse rows: events and triggers kept as columns until a cut, and recovery state from before columns."""

from __future__ import annotations

import pickle

import orjson
import pytest

from engine.config import load_config, parse_config
from engine.decode import decode_line
from engine.events import Event
from engine.pipeline import LocalPipeline
from flows import rows
from flows.stages import StageContext, _Pending
from leadstream.generate import GenerateOptions, generate_lines

from .conftest import CONFIG


@pytest.fixture(scope="module")
def applied() -> tuple[list[tuple[str, Event]], list]:
    """What a pipeline applied and fired over a few thousand generated events."""
    events = [e for e in (decode_line(line, "gen") for line in generate_lines(
        GenerateOptions(events=3_000, contacts=300, seed=11))) if isinstance(e, Event)]
    pipe = LocalPipeline(load_config(CONFIG), shards=4)
    pipe.feed(events, batch=250)
    pipe.finish()
    assert pipe.applied and pipe.triggers
    return pipe.applied, pipe.triggers


def test_event_columns_hold_every_field_of_every_event(applied) -> None:
    pairs, _ = applied
    cols = rows.EventColumns()
    cols.extend(pairs[:1000])
    cols.extend([])
    cols.extend(pairs[1000:])
    table = cols.table()
    assert table.schema == rows.EVENT_PART and len(cols) == table.num_rows == len(pairs)
    got = table.to_pylist()
    for (cid, e), row in zip(pairs, got):
        assert (row["message_id"], row["type"], row["name"], row["contact_id"], row["anonymous_id"],
                row["user_id"]) == (e.message_id, e.type, e.name, cid, e.anonymous_id, e.user_id)
        assert int(row["timestamp"].timestamp() * 1000) == e.ts
        assert (orjson.loads(row["properties"]) if row["properties"] else {}) == e.properties
        assert (orjson.loads(row["context"]) if row["context"] else {}) == e.context
    # Kept as str, not orjson's bytes: those hold their whole write buffer (about 4 KB each).
    assert all(v is None or type(v) is str for v in cols.cols[7] + cols.cols[8])


def test_trigger_columns_match_the_trigger_records(applied) -> None:
    _, triggers = applied
    cols = rows.TriggerColumns()
    cols.extend(triggers)
    got = cols.table().to_pylist()
    assert len(got) == len(triggers)
    for t, row in zip(triggers, got):
        assert (row["trigger_id"], row["action"], row["rule"], row["contact_id"]) == (
            t.trigger_id, t.action, t.rule, t.contact_id)
        assert orjson.loads(row["params"]) == t.params and orjson.loads(row["reason"]) == t.reason


@pytest.mark.parametrize("count", [1, 2, None], ids=["one", "two", "all"])
def test_trigger_lines_are_one_schema_record_per_line(applied, count: int | None) -> None:
    """The triggers sink's text: a JSON line per trigger, in order, no trailing newline."""
    _, triggers = applied
    chosen = triggers[:count]
    text = rows.trigger_lines(chosen)
    assert not text.endswith("\n")
    assert [orjson.loads(line) for line in text.split("\n")] == [t.to_dict() for t in chosen]


def test_pending_rows_survive_a_pickle_round_trip(applied) -> None:
    pairs, triggers = applied
    pending = _Pending()
    pending.events.extend(pairs)
    pending.triggers.extend(triggers)
    pending.counts["accepted"] = len(pairs)
    back = pickle.loads(pickle.dumps(pending))
    assert back.events.table().equals(pending.events.table())
    assert back.triggers.table().equals(pending.triggers.table())
    assert back.counts == {"accepted": len(pairs)}


def test_recovery_state_from_before_columns_is_converted_in_order(applied) -> None:
    pairs, triggers = applied
    # Before columns, a shard's pending rows were objects, the oldest already in Arrow chunks.
    old = {
        "events": pairs[1500:],
        "triggers": triggers[200:],
        "dead_letters": [("invalid_json", "bad", "{", "f:1")],
        "counts": {"accepted": len(pairs)},
        "chunks": {"events": [rows.events_table(pairs[:700]), rows.events_table(pairs[700:1500])],
                   "triggers": [rows.triggers_table(triggers[:200])]},
    }
    pending = _Pending.__new__(_Pending)
    pending.__setstate__(old)
    assert not hasattr(pending, "chunks")
    assert pending.events.table().equals(rows.events_table(pairs))
    assert pending.triggers.table().equals(rows.triggers_table(triggers))
    assert pending.dead_letters == old["dead_letters"] and pending.counts == old["counts"]


def test_export_tables_defers_columns_to_the_writer(applied) -> None:
    pairs, triggers = applied
    events, fired = rows.EventColumns(), rows.TriggerColumns()
    events.extend(pairs)
    fired.extend(triggers)
    deferred = rows.export_tables(events=events, triggers=fired, defer=True)
    built = rows.export_tables(events=pairs, triggers=triggers)
    assert set(deferred) == set(built) == {"events", "triggers"}
    for name in deferred:
        assert isinstance(deferred[name], rows.PendingRows)
        assert rows.assemble([deferred[name]]).equals(built[name])
    assert rows.export_tables(events=rows.EventColumns(), triggers=[]) == {}


@pytest.mark.parametrize(("follow", "single_process", "defer"),
                         [(True, True, True), (False, True, False), (True, False, False), (False, False, False)])
def test_only_a_followed_single_process_run_defers_tables(follow: bool, single_process: bool, defer: bool) -> None:
    """Replays build their tables in the shards (the writer's GIL hunger slowed the worker); live streams defer."""
    ctx = StageContext(load_config(CONFIG), ("in.jsonl",), 4, follow, single_process)
    assert ctx.defer_tables is defer


@pytest.mark.parametrize(
    "extra",
    ["", '[[scoring.default.rules]]\nname = "pricing_page"\npoints = 7\n'
         'all = [{ field = "event.context.page.path", op = "starts_with", value = "/pricing" }]\n'],
    ids=["example_config", "a_rule_on_the_context"],
)
def test_events_decoded_with_the_configs_context_keys_change_nothing(extra: str) -> None:
    """Keeping only the context keys the rules read (the rest as text) gives the same contacts,
    triggers and events table as whole contexts."""
    config_text = CONFIG.read_text()
    if extra:
        config_text = config_text.replace("# Buyer types deserve their own scoring", extra + "\n# Buyer types", 1)
    config = parse_config(config_text)
    keys = config.context_keys()
    assert keys == ({"campaign", "page"} if extra else {"campaign"})
    lines = list(generate_lines(GenerateOptions(events=4_000, contacts=300, seed=17)))
    results = []
    for context_keys in (None, keys):
        events = [e for e in (decode_line(line, "gen", None, context_keys) for line in lines) if isinstance(e, Event)]
        assert any(e.context_json for e in events) == (context_keys is not None)
        pipe = LocalPipeline(config, shards=4)
        pipe.feed(events, batch=250)
        pipe.finish()
        results.append((pipe.results(), rows.events_table(pipe.applied)))
    (whole, whole_events), (slim, slim_events) = results
    assert whole == slim and whole_events.equals(slim_events)
    if extra:  # the rule on the context did score: the plain example config gives other scores
        plain = LocalPipeline(load_config(CONFIG), shards=4)
        plain.feed([e for e in (decode_line(line, "gen") for line in lines) if isinstance(e, Event)], batch=250)
        plain.finish()
        assert plain.results()["contacts"] != whole["contacts"]
