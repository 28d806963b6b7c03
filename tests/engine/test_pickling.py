"""Everything that crosses processes or goes into recovery snapshots pickles back to itself.

Run under `make test` both compiled (leadstream/native.py) and as the Python sources:
compiled classes cannot be rebuilt by ``__new__`` alone or take state by ``__dict__``, so
each one pickles through its constructor, and this holds every kind to it.
"""

from __future__ import annotations

import pickle
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.contact import FIELDS, ContactState
from engine.contacts import ContactShard
from engine.decode import decode_line
from engine.dedupe import Deduper
from engine.events import Event, Rejection, event_from_json
from engine.identity import IdentityShard
from engine.ordering import ReorderBuffer
from engine.pipeline import LocalPipeline
from engine.routing import MERGE, Routed
from engine.store import ContactStore
from engine.timers import TimerQueue
from leadstream.generate import GenerateOptions, generate_lines

CONFIG = load_config(Path(__file__).resolve().parents[2] / "examples" / "marketing.toml")


def _run() -> tuple[LocalPipeline, list[Routed]]:
    """A pipeline half-way through 6,000 generated lines, and the records it routed."""
    lines = list(generate_lines(GenerateOptions(events=6_000, contacts=400, seed=5)))
    decoded = [decode_line(line) for line in lines]
    events = [e for e in decoded if isinstance(e, Event)]
    pipe = LocalPipeline(CONFIG, shards=4)
    routed: list[Routed] = []
    route = pipe._route

    def spy(out: Any) -> None:
        routed.extend(out.routed)
        route(out)

    pipe._route = spy  # type: ignore[method-assign]
    pipe.feed(events, batch=500)
    return pipe, routed


PIPE, ROUTED = _run()
REJECTIONS = [r for r in (decode_line(b) for b in (b"{oops", b'{"type": "track"}', b"[1]")) if isinstance(r, Rejection)]


def _bytes(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _same(obj: Any) -> None:
    back = pickle.loads(_bytes(obj))
    assert type(back) is type(obj)
    if isinstance(obj, (IdentityShard, ContactShard)):
        # Field by field; a set may iterate in another order once rebuilt.
        for name, value in obj.__reduce__()[2].items():
            again = getattr(back, name)
            assert (sorted(again) == sorted(value)) if isinstance(value, set) else _bytes(again) == _bytes(value), name
        return
    # Pickling the copy again gives the same bytes: every field came back, in order.
    assert _bytes(back) == _bytes(obj)
    if not isinstance(obj, (ContactStore, Deduper, ReorderBuffer, TimerQueue)):
        assert back == obj


CASES: dict[str, Any] = {
    "event": lambda: next(r.event for r in ROUTED if r.event is not None),
    "rejection": lambda: REJECTIONS[0],
    "trigger": lambda: PIPE.triggers[0],
    "routed_event": lambda: next(r for r in ROUTED if r.kind != MERGE),
    "routed_merge": lambda: next(r for r in ROUTED if r.kind == MERGE),
    "contact_with_runs": lambda: next(c for c in PIPE.contacts().values() if c.runs),
    "run": lambda: next(iter(next(c for c in PIPE.contacts().values() if c.runs).runs.values())),
    "identity_shard": lambda: PIPE.identity[0],
    "contact_shard": lambda: PIPE.contact_shards[0],
    "contact_store": lambda: PIPE.contact_shards[0].contacts,
    "deduper": lambda: PIPE.identity[0].dedupe,
    "reorder_buffer": lambda: PIPE.identity[0].buffer,
    "timer_queue": lambda: PIPE.contact_shards[0].timers,
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_pickles_back_to_itself(kind: str) -> None:
    """Each kind of record and state round-trips through pickle unchanged."""
    assert len(REJECTIONS) == 3 and any(r.kind == MERGE for r in ROUTED)
    _same(CASES[kind]())


@pytest.mark.parametrize("context_keys", [None, frozenset({"campaign"})], ids=["whole_context", "context_as_text"])
def test_decoded_events_pickle_as_one_json_array(context_keys: frozenset[str] | None) -> None:
    """Every decoded event of a generated stream goes the JSON way and comes back equal, field by field."""
    lines = list(generate_lines(GenerateOptions(events=3_000, contacts=200, seed=9)))
    events = [e for e in (decode_line(line, context_keys=context_keys) for line in lines) if isinstance(e, Event)]
    assert {e.type for e in events} >= {"identify", "track", "page", "alias"}
    assert any(e.context_json is not None for e in events) == (context_keys is not None)
    assert all(e.__reduce__()[0] is event_from_json for e in events)
    back = pickle.loads(pickle.dumps(events))
    assert back == events
    assert [type(v) for e in back for v in e.properties.values()] == [
        type(v) for e in events for v in e.properties.values()]


def test_an_event_json_cannot_hold_pickles_its_fields() -> None:
    """A value JSON has no form for (a set, a non-string key) falls back to the constructor's arguments."""
    odd = Event("m-1", "track", 1, anonymous_id="a", name="X", properties={"tags": {"a", "b"}, 3: "three"})
    assert odd.__reduce__()[0] is Event
    assert pickle.loads(pickle.dumps(odd)) == odd


def test_contact_state_lists_its_fields_in_fields_order() -> None:
    """Freezing (engine/store.py) finds workflow runs by their place in FIELDS, and thawing and
    unpickling assign by it: the explicit state tuple must follow FIELDS exactly."""
    pipe, _ = _run()
    contacts = [c for shard in pipe.identity for c in shard.profiles.values()]
    contacts += [c for shard in pipe.contact_shards for c in shard.contacts.values()]
    assert len(contacts) > 100 and any(c.runs for c in contacts) and any(c.user_id for c in contacts)
    by_name = attrgetter(*FIELDS)
    for contact in contacts:
        state = contact.__getstate__()
        # Equal, not identical: compiled classes box their int and float fields on every read.
        assert state == by_name(contact), contact.contact_id
        restored = ContactState("", None, state)
        assert tuple(getattr(restored, name) for name in FIELDS) == state, contact.contact_id
