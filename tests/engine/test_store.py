"""The contact store: idle contacts frozen to bytes, thawed on access, with identical results."""

from __future__ import annotations

import marshal
import pickle
from pathlib import Path
from typing import Any

import pytest
import zstandard

from engine.config import load_config
from engine.contact import ContactState
from engine.decode import decode_line
from engine.events import Event
from engine.pipeline import LocalPipeline
from engine import store as store_module
from engine.store import IDLE_CUTS, TRAIN_AFTER, ContactStore, freeze, thaw
from engine.workflows import Run
from leadstream.generate import GenerateOptions, generate_lines

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"


def _contact(cid: str, score: float) -> ContactState:
    c = ContactState(cid, cid)
    c.scores["default"] = score
    c.traits["email"] = f"{cid}@example.com"
    return c


def test_frozen_contacts_thaw_on_access_and_stay_single() -> None:
    """Freezing keeps the mapping; the first access thaws one live object that later updates land on."""
    store = ContactStore()
    for i in range(5):
        store[f"u{i}"] = _contact(f"u{i}", float(i))
    assert store.freeze_except({"u0"}) == 4
    assert store.live == 1 and len(store) == 5 and "u3" in store and "nope" not in store
    thawed = store.get("u3")
    assert thawed is not None and thawed.scores == {"default": 3.0} and store.live == 2
    thawed.scores["default"] = 99.0
    assert store["u3"] is thawed  # the same live object, not a second copy
    assert store.get("nope", "missing") == "missing"
    with pytest.raises(KeyError):
        store["nope"]
    assert store.pop("u4").traits == {"email": "u4@example.com"} and "u4" not in store
    assert sorted(store.keys()) == ["u0", "u1", "u2", "u3"]
    store["u1"] = _contact("u1", 7.0)  # replacing a frozen one drops the frozen copy
    store.freeze_except(())
    assert store.live == 0 and store["u1"].scores == {"default": 7.0} and store["u3"].scores == {"default": 99.0}


@pytest.mark.parametrize("idle_cuts", sorted({1, 3, IDLE_CUTS}))
def test_a_cut_freezes_only_contacts_idle_for_several_cuts(idle_cuts: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A contact stays live while it changed within the last IDLE_CUTS cuts, then freezes."""
    monkeypatch.setattr(store_module, "IDLE_CUTS", idle_cuts)
    store = ContactStore()
    for cid in ("busy", "once"):
        store[cid] = _contact(cid, 1.0)
    assert store.cut({"busy", "once"}) == 0
    for n in range(1, idle_cuts):
        assert store.cut({"busy"}) == 0, f"cut {n}: 'once' has been idle for fewer than {idle_cuts} cuts"
    assert store.cut({"busy"}) == 1 and store.live == 1 and store.get("busy") is not None
    assert store["once"].scores == {"default": 1.0} and store.live == 2


@pytest.mark.parametrize("odd", [False, True], ids=["builtin values: marshal", "other values: pickle"])
def test_freeze_round_trips_every_field(odd: bool) -> None:
    """Workflow runs, tuples, interned keys and nested JSON values come back equal; odd values fall back."""
    c = _contact("u1", 2.5)
    c.counts["Order Completed"] = 3
    c.caps["r1"] = (12, 1)
    c.traits["plan"] = {"tier": "pro", "seats": [1, 2.5, None, True]}
    c.runs["wf:nurture"] = Run("nurture", "m-1", 2, 10, 20, 30, {"topic": "ai"}, "wf:nurture")
    c.timers["wf:nurture"] = 30
    if odd:
        c.traits["weird"] = frozenset({1})  # not JSON, not marshal-able with runs as Run objects
        c.traits["obj"] = _contact("x", 0.0)
    blob = freeze(c)
    assert (blob[0] == pickle.PROTO[0]) == odd
    back = thaw(blob)
    assert back == c and back.runs["wf:nurture"] == c.runs["wf:nurture"] and back.runs is not c.runs


def test_blobs_of_earlier_marshal_versions_thaw() -> None:
    """Recovery state frozen with marshal version 4 (back-references) thaws like today's version 2 blobs."""
    c = _contact("u1", 2.5)
    c.runs["wf:nurture"] = Run("nurture", "m-1", 2, 10, 20, 30, {"topic": "ai"}, "wf:nurture")
    c.timers["wf:nurture"] = 30
    blob = freeze(c)
    older = marshal.dumps(marshal.loads(blob), 4)
    assert older != blob
    assert thaw(older) == thaw(blob) == c


def test_store_pickles_and_compares_by_content() -> None:
    """A recovery snapshot keeps frozen contacts as they are; equality ignores live or frozen."""
    a, b = ContactStore(), ContactStore()
    for store in (a, b):
        store["u1"] = _contact("u1", 1.0)
        store["u2"] = _contact("u2", 2.0)
    a.freeze_except({"u1"})
    assert a == b
    back = pickle.loads(pickle.dumps(a))
    assert back == b and back.live == 1
    b["u2"].scores["default"] = 3.0
    assert a != b


def test_freezing_mid_run_changes_no_result() -> None:
    """Freezing every contact between two halves of a run gives the same triggers and state."""
    config = load_config(CONFIG)
    events = [e for e in (decode_line(line, "gen") for line in generate_lines(
        GenerateOptions(events=8_000, contacts=600, seed=13))) if isinstance(e, Event)]
    plain, frozen = LocalPipeline(config, shards=4), LocalPipeline(config, shards=4)
    half = len(events) // 2
    for pipe in (plain, frozen):
        pipe.feed(events[:half], batch=400)
    for shard in frozen.identity:
        shard.profiles.freeze_except(())
    for shard in frozen.contact_shards:
        shard.contacts.freeze_except(())
    assert sum(s.contacts.live for s in frozen.contact_shards) == 0
    for pipe in (plain, frozen):
        pipe.feed(events[half:], batch=400)
        pipe.finish()
    assert frozen.results() == plain.results()
    assert len(plain.triggers) > 100


def _varied(i: int) -> ContactState:
    c = _contact(f"anon-{i:08x}", float(i % 40))
    c.counts["$page"] = i % 9
    c.counts["Product Added"] = i % 3
    c.runs["wf:re_engagement"] = Run("re_engagement", f"m-{i}-1", 0, i, i, i + 2_592_000_000, {}, "wf:re_engagement")
    c.timers["wf:re_engagement"] = i + 2_592_000_000
    return c


def test_a_store_compresses_frozen_contacts_once_it_holds_enough() -> None:
    """Past TRAIN_AFTER frozen contacts the store trains a dictionary: blobs shrink, contents stay equal."""
    store = ContactStore()
    n = TRAIN_AFTER + 200
    originals = {f"anon-{i:08x}": _varied(i) for i in range(n)}
    for cid, c in originals.items():
        store[cid] = pickle.loads(pickle.dumps(c))
    raw = sum(len(freeze(c)) for c in originals.values())
    store.freeze_except(())
    assert store.frozen_bytes < raw * 0.4, f"{store.frozen_bytes} bytes compressed of {raw}"
    later = _varied(n)
    store[later.contact_id] = pickle.loads(pickle.dumps(later))
    store.freeze_except(())  # frozen after training: compressed straight away
    assert store._cold[later.contact_id][0] == store_module._ZSTD
    back = pickle.loads(pickle.dumps(store))  # the dictionary travels with the recovery state
    for s in (store, back):
        assert s[later.contact_id] == later
        assert all(s[cid] == c for cid, c in originals.items())


def test_a_store_that_cannot_train_keeps_raw_blobs_and_retries_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """When zstd finds nothing to learn, contacts stay uncompressed and training waits for twice as many."""
    tries: list[int] = []

    def refuse(size: int, samples: list[bytes], **kwargs: Any) -> None:
        tries.append(len(samples))
        raise zstandard.ZstdError("cannot train dictionary")

    # zstandard's function, not BlobCodec.train: compiled modules call their own functions directly.
    monkeypatch.setattr(zstandard, "train_dictionary", refuse)
    store = ContactStore()
    for i in range(TRAIN_AFTER):
        store[f"u{i}"] = _varied(i)
    store.freeze_except(())
    assert tries == [TRAIN_AFTER] and store._train_at == 2 * TRAIN_AFTER
    assert store["u7"] == _varied(7)


def test_recovery_state_from_before_compression_loads() -> None:
    """A store pickled as (live, frozen) by an older version thaws its contacts."""
    c = _varied(3)
    old = ContactStore.__new__(ContactStore)
    old.__setstate__(({}, {c.contact_id: freeze(c)}))
    assert old[c.contact_id] == c and len(old) == 1
