"""IdentityShard: late events land at a place fixed by the ticks seen, not by when the shard last advanced."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from engine.config import load_config
from engine.engine import Engine
from engine.events import Event
from engine.identity import IdentityShard, Late
from engine.ordering import NEVER, watermark_for
from engine.routing import MERGE, ShardOutput

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "examples" / "marketing.toml")
LATENESS = CONFIG.settings.allowed_lateness_ms
T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z
MINUTE = 60_000


def page(mid: str, device: str, ts: int, path: str = "/pricing") -> Event:
    """An anonymous page view."""
    return Event(mid, "page", ts, anonymous_id=device, name="Pricing", properties={"path": path})


def identify(mid: str, device: str, user: str, ts: int) -> Event:
    """A device identifying as a known user."""
    return Event(mid, "identify", ts, anonymous_id=device, user_id=user, traits={"email": f"{user}@example.com"})


FIRST = [page("m1", "d1", T0), page("m2", "d2", T0 + 10 * MINUTE)]
# Behind the watermark the first packet implies: 9 minutes behind the newest event.
SECOND = [page("m3", "d1", T0 + 1 * MINUTE, "/blog"), identify("m4", "d1", "u1", T0 + 1 * MINUTE + 1)]
WATERMARK = watermark_for(T0 + 10 * MINUTE, LATENESS)


def _run(advance_between: bool) -> tuple[IdentityShard, ShardOutput, ShardOutput]:
    """Two packets; the second judged against the first one's ticks; the shard advances in between or not."""
    engine = Engine(CONFIG)
    shard = IdentityShard(0, CONFIG.settings.dedupe_window_ms)
    received, applied = ShardOutput(), ShardOutput()
    shard.receive(engine, list(FIRST), received, NEVER)
    if advance_between:
        shard.advance(engine, WATERMARK, applied)
    shard.receive(engine, list(SECOND), received, WATERMARK)
    shard.advance(engine, T0 + 10 * MINUTE, applied)
    return shard, received, applied


@pytest.mark.parametrize("advance_between", [True, False], ids=["advanced", "batched"])
def test_late_events_are_placed_just_past_the_watermark(advance_between: bool) -> None:
    """Late events are counted, applied after what the watermark covers, and sent on at that place."""
    shard, received, applied = _run(advance_between)
    assert received.counts == {"late": 2}
    assert received.routed == [] and received.triggers == []  # nothing is applied on arrival
    assert [e.message_id for _, e in applied.applied] == ["m1", "m3", "m2"]
    # The identify links d1 and merges its profile: one record with both, which sorts just
    # past the watermark while keeping the event's own time for the engine.
    (merge,) = applied.routed
    assert merge.kind == MERGE and merge.profile is not None and merge.event is not None
    assert merge.ts == WATERMARK + 1
    assert merge.event.ts == T0 + MINUTE + 1 and merge.late
    assert shard.links == {"d1": ("u1", T0 + MINUTE + 1)}


def test_where_a_late_event_lands_does_not_depend_on_when_the_shard_advanced() -> None:
    """Advancing between two packets or only after both gives the same state, records and triggers."""
    shard_a, _, out_a = _run(advance_between=True)
    shard_b, _, out_b = _run(advance_between=False)
    assert [(c, e.message_id) for c, e in out_a.applied] == [(c, e.message_id) for c, e in out_b.applied]
    assert [t.trigger_id for t in out_a.triggers] == [t.trigger_id for t in out_b.triggers]
    assert [(r.kind, r.contact_id, r.ts, r.message_id) for r in out_a.routed] == \
        [(r.kind, r.contact_id, r.ts, r.message_id) for r in out_b.routed]
    assert shard_a.profiles.as_dict() == shard_b.profiles.as_dict()


def test_a_late_event_in_the_buffer_survives_a_snapshot() -> None:
    """Recovery snapshots pickle the reorder buffer, late events included."""
    engine = Engine(CONFIG)
    shard = IdentityShard(0, CONFIG.settings.dedupe_window_ms)
    shard.receive(engine, list(FIRST), ShardOutput(), NEVER)
    shard.receive(engine, [SECOND[0]], ShardOutput(), WATERMARK)
    again = pickle.loads(pickle.dumps(shard))
    assert Late(SECOND[0], WATERMARK + 1) in [item[4] for item in again.buffer.entries()]
    out = ShardOutput()
    again.advance(engine, T0 + 10 * MINUTE, out)
    assert [e.message_id for _, e in out.applied] == ["m1", "m3", "m2"]
    assert out.counts["accepted"] == 3


def _applied_copies(events: list[Event], shards: int = 1) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    """Feed ``events`` in one packet to ``shards`` shards by device; what was applied, and the counts."""
    from engine.ids import shard_of

    engine = Engine(CONFIG)
    all_shards = [IdentityShard(i, CONFIG.settings.dedupe_window_ms) for i in range(shards)]
    out = ShardOutput()
    by_shard: dict[int, list[Event]] = {}
    for e in events:
        by_shard.setdefault(shard_of(e.device_id, shards), []).append(e)
    for i, evs in by_shard.items():
        all_shards[i].receive(engine, evs, out, NEVER)
    for s in all_shards:
        s.advance(engine, T0 + 60 * MINUTE, out)
    return sorted((e.message_id, e.device_id, e.ts) for _, e in out.applied), out.counts


def test_of_two_differing_copies_the_first_in_time_wins_whatever_the_arrival_order() -> None:
    """Repeats are judged as events leave the buffer: a retried copy with another time loses either way."""
    first, retry = page("m1", "d1", T0, "/pricing"), page("m1", "d1", T0 + 2_000, "/blog")
    for order in ([first, retry], [retry, first]):
        applied, counts = _applied_copies(order)
        assert applied == [("m1", "d1", T0)]
        assert counts == {"accepted": 1, "duplicates": 1}


def test_a_repeat_of_an_applied_event_is_dropped_on_arrival() -> None:
    """Once the first copy was applied, a later copy is counted at once and never buffered."""
    engine = Engine(CONFIG)
    shard = IdentityShard(0, CONFIG.settings.dedupe_window_ms)
    out = ShardOutput()
    shard.receive(engine, [page("m1", "d1", T0)], out, NEVER)
    shard.advance(engine, T0, out)
    shard.receive(engine, [page("m1", "d1", T0 + MINUTE)], out, T0)
    assert out.counts == {"accepted": 1, "duplicates": 1} and len(shard.buffer) == 0


@pytest.mark.parametrize("shards", [1, 2, 3, 16])
def test_a_message_id_shared_by_two_devices_is_two_events_whatever_the_shards(shards: int) -> None:
    """The same messageId from other devices is not a repeat, so the shard count cannot decide it."""
    events = [page("shared", f"d{n}", T0 + n) for n in range(6)] + [page("shared", "d0", T0 + 10)]
    applied, counts = _applied_copies(events, shards)
    assert applied == [("shared", f"d{n}", T0 + n) for n in range(6)]
    assert counts == {"accepted": 6, "duplicates": 1}


def test_of_two_differing_copies_of_one_time_the_winner_does_not_depend_on_arrival() -> None:
    """Copies with the same time and messageId but other contents: the buffer kept them by arrival,
    so they are ordered by content, and the same one is applied whichever came first."""
    first, other = page("m1", "d1", T0, "/pricing"), page("m1", "d1", T0, "/blog")
    outcomes = []
    for order in ([first, other], [other, first]):
        engine = Engine(CONFIG)
        shard = IdentityShard(0, CONFIG.settings.dedupe_window_ms)
        out = ShardOutput()
        shard.receive(engine, order, out, NEVER)
        shard.advance(engine, T0 + 60 * MINUTE, out)
        assert out.counts == {"accepted": 1, "duplicates": 1}
        outcomes.append([e.properties for _, e in out.applied])
    assert outcomes[0] == outcomes[1] == [{"path": "/blog"}]  # "/blog" sorts before "/pricing"


def test_one_message_id_of_one_time_on_two_devices_is_applied_in_device_order() -> None:
    """Two devices' events that share a time and messageId are both applied, in the same order either way."""
    a, b = page("m1", "d2", T0), page("m1", "d1", T0)
    for order in ([a, b], [b, a]):
        applied, counts = _applied_copies(order)
        assert applied == [("m1", "d1", T0), ("m1", "d2", T0)] and counts == {"accepted": 2}
