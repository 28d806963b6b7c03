"""Erasure on disk: once a snapshot applies an erasure, no Parquet part holds the erased person's data."""

from __future__ import annotations

import pickle
from pathlib import Path

import duckdb
import pytest

from engine.events import Event
from flows import purge, warehouse

from .test_warehouse_builds import _exports, _read

ERASE_AT_CHUNK = 5  # of 12 (the erasures land in the fifth): after several cuts' parts hold their rows
CHUNKS = 12


def _with_erasures(events: list[Event]) -> list[Event]:
    """The generated events with three known contacts erased in the middle of the stream."""
    at = len(events) * ERASE_AT_CHUNK // CHUNKS
    before = events[:at]
    known = sorted({e.user_id for e in before if e.user_id and e.type == "identify" and e.traits.get("email")})
    chosen = known[:3]
    now = max(e.ts for e in before) + 1
    erasures = [Event(f"erase-{uid}", "track", now, user_id=uid, name="Contact Deleted") for uid in chosen]
    return before + erasures + events[at:]


@pytest.fixture(scope="module")
def exports() -> list:
    """Twelve cuts' exports of the generated stream with the erasures, as one shard exports them."""
    return _exports(chunks=CHUNKS, edit=_with_erasures)


@pytest.fixture
def purges(monkeypatch: pytest.MonkeyPatch) -> list[purge.Purge]:
    """What every snapshot build's purge did, in build order."""
    done: list[purge.Purge] = []

    def recording(*args: object) -> purge.Purge:
        done.append(purge.purge_erased(*args))  # type: ignore[arg-type]
        return done[-1]

    monkeypatch.setattr(warehouse, "purge_erased", recording)
    return done


def _all_rows(files: list[Path]) -> list[tuple]:
    con = duckdb.connect()
    try:
        out: list[tuple] = []
        for f in files:
            out += con.execute(f"SELECT * FROM read_parquet('{f}')").fetchall()
        return out
    finally:
        con.close()


def _erased_ids(path: Path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute(purge.ERASED_IDENTIFIERS).fetchall()}
    finally:
        con.close()


def _assert_no_erased_data_on_disk(parts_dir: Path, ids: set[str]) -> None:
    """Every Parquet file left under the parts folder: events of ``ids`` gone, triggers blanked,
    contact rows only the erased row and merge tombstones."""
    files = {t: sorted((parts_dir / t).glob("*.parquet")) for t in ("events", "triggers", "contacts")}
    events = [r for r in _all_rows(files["events"]) if r[3] in ids]
    assert events == []
    triggers = [r for r in _all_rows(files["triggers"]) if r[3] in ids]
    assert triggers, "the erased contacts had triggers: they stay, blanked"
    assert all(r[7:] == (None, None) and r[5] is None for r in triggers if r[1] != "contact_deleted"), triggers[:3]
    # The erasure's own trigger keeps its reason, not the address and devices it gave actioners.
    erasures = [r for r in triggers if r[1] == "contact_deleted"]
    assert erasures and all(r[5] is None and r[7] is None and r[8] is not None for r in erasures), erasures[:3]
    contacts = [r for r in _all_rows(files["contacts"]) if r[0] in ids]
    assert contacts and all(r[1] or r[22] for r in contacts), "only erased rows and merge tombstones remain"


def test_an_erasure_rewrites_every_part_that_held_the_person(tmp_path: Path, exports: list,
                                                             purges: list[purge.Purge],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots per cut with compactions between: the build that applies the erasures rewrites
    the parts holding the erased rows (merged ones too), a finished run deletes the originals, and
    the tables equal one build from scratch."""
    monkeypatch.setattr(warehouse, "COMPACT_AFTER", 2)
    often = warehouse.WarehouseLogic(tmp_path / "often.duckdb", 1, 0.0, "test", None)
    for export in exports:
        often.on_batch([export])
        often.on_eof()
    once = warehouse.WarehouseLogic(tmp_path / "once.duckdb", 1, 1e9, "test", None)
    once.on_batch(exports)
    once.on_eof()
    assert warehouse.delete_after_run() > 0  # as the CLI does once the dataflow has returned
    ids = _erased_ids(tmp_path / "often.duckdb")
    assert len([i for i in ids if not i.startswith("anon")]) == 3 and often.state.purged == ids == once.state.purged
    # One build per run rewrote parts: the first to see the erasures. (Contacts parts here are
    # compacted whole at every build, which keeps only the erased rows: nothing to rewrite.)
    done = [p for p in purges if p]
    assert len(done) == 2 and all({"events", "triggers"} <= set(p.replaced) for p in done)
    for name in ("often", "once"):
        _assert_no_erased_data_on_disk(tmp_path / f"{name}.duckdb.parts", ids)
    assert _read(tmp_path / "often.duckdb") == _read(tmp_path / "once.duckdb")


def test_a_run_resumed_from_before_the_erasure_purges_again(tmp_path: Path, exports: list,
                                                          purges: list[purge.Purge]) -> None:
    """Recovery state from before an erasure: the resumed run purges what it names, and ends with
    the tables of the uninterrupted run and no erased rows on disk."""
    first = warehouse.WarehouseLogic(tmp_path / "w.duckdb", 1, 0.0, "test", None)
    for export in exports[:ERASE_AT_CHUNK - 1]:
        first.on_batch([export])
        first.on_eof()
    saved = pickle.dumps(first.snapshot())
    for export in exports[ERASE_AT_CHUNK - 1:]:
        first.on_batch([export])
        first.on_eof()
    expected = _read(tmp_path / "w.duckdb")
    # Without compaction, contacts parts still held older rows of the erased contacts.
    assert [set(p.replaced) for p in purges if p] == [{"events", "triggers", "contacts"}]
    resumed = warehouse.WarehouseLogic(tmp_path / "w.duckdb", 1, 0.0, "test", pickle.loads(saved))
    assert not resumed.state.purged
    for export in exports[ERASE_AT_CHUNK - 1:]:
        resumed.on_batch([export])
        resumed.on_eof()
    warehouse.delete_after_run()
    assert _read(tmp_path / "w.duckdb") == expected
    assert len([p for p in purges if p]) == 2 and resumed.state.purged == first.state.purged
    # The first run's parts from after the recovery snapshot are orphans now, left to the
    # grace period; the ones the resumed run names hold nothing of the erased people.
    named = {Path(p) for parts in resumed.state.parts.values() for p in parts}
    ids = _erased_ids(tmp_path / "w.duckdb")
    events = [r for r in _all_rows(sorted(p for p in named if p.parent.name == "events")) if r[3] in ids]
    assert events == []


@pytest.mark.parametrize(
    ("part", "build", "expected"),
    [
        ("p/00000042-ab12cd34.parquet", 7, "p/00000042-ab12cd34.e7.parquet"),
        ("p/00000042-ab12cd34.e7.parquet", 9, "p/00000042-ab12cd34.e9.parquet"),
    ],
    ids=["first_rewrite", "rewrite_of_a_rewrite"],
)
def test_rewritten_names_keep_the_sequence_prefix(part: str, build: int, expected: str) -> None:
    assert purge.rewritten_name(part, build) == expected
    # Contacts parts sort by name for "the newest row wins": a rewrite sorts where its original did.
    assert sorted([expected, "p/00000041-ab12cd34.parquet", "p/00000043-ab12cd34.parquet"])[1] == expected


def test_an_erasure_blanks_the_dead_letters_that_name_the_person(tmp_path: Path) -> None:
    """Rejected lines carrying the erased person's userId or one of their devices' anonymousIds
    lose their raw text, in the published view and in the Parquet parts; other dead letters keep it."""
    import orjson

    from .conftest import run_into

    ts = "2026-01-05T08:00:0{}Z"

    def line(n: int, **fields: object) -> bytes:
        return orjson.dumps({"messageId": f"m{n}", "timestamp": ts.format(n), **fields})

    lines = [
        line(1, type="identify", userId="u-erase", anonymousId="a-erase", traits={"email": "e@x.example"}),
        line(2, type="track", event="Viewed", userId="u-erase", timestamp="yesterday"),  # bad_timestamp
        b'{"type":"page","anonymousId" : "a-erase","properties":{"path":"/x"',  # invalid_json, still naming the device
        line(4, type="track", event="Viewed", userId="u-keep", timestamp="yesterday"),  # someone else's
        line(5, type="track", event="Contact Deleted", userId="u-erase"),
        line(6, type="track", event="Viewed", userId="u-erase", timestamp="later"),  # rejected after the erasure
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    run_into(tmp_path / "out", [path])
    warehouse = tmp_path / "out" / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        view = dict(con.execute("SELECT source, raw FROM dead_letters").fetchall())
    finally:
        con.close()
    by_line = {int(src.rpartition(":")[2]): raw for src, raw in view.items()}
    assert by_line == {2: "", 3: "", 4: lines[3].decode(), 6: ""}
    files = sorted((tmp_path / "out" / "warehouse.duckdb.parts" / "dead_letters").glob("*.parquet"))
    on_disk = {int(r[3].rpartition(":")[2]): r[2] for r in _all_rows(files)}
    assert on_disk == by_line  # the build that applied the erasure rewrote the part
    assert b"u-erase" in (tmp_path / "out" / "dead_letters.jsonl").read_bytes()  # a stream, like the triggers file


@pytest.mark.parametrize(("raw", "named"), [
    ('{"userId":"u-1","timestamp":"x"}', True),
    ('{"type":"page", "anonymousId" : "d-1"', True),  # not valid JSON, spaces around the colon
    ('{"type":"alias","previousId":"d-1","userId":"u-9"}', True),
    ('{"userId":"u-10"}', False),  # a longer id is another person
    ('{"properties":{"note":"u-1"}}', False),  # the id outside an identity key
    ('not json at all', False),
], ids=["user_id", "device_broken_json", "previous_id", "longer_id", "other_key", "junk"])
def test_which_dead_letters_name_a_person(raw: str, named: bool) -> None:
    """A dead letter names a person when an identity key of its raw text holds one of their ids, exactly."""
    con = duckdb.connect()
    try:
        ids = "SELECT unnest(['u-1', 'd-1']) AS id"
        got = con.execute("SELECT " + purge.names_any(ids, "?"), [raw]).fetchone()
    finally:
        con.close()
    assert got == (named,)


def test_a_dead_letter_naming_a_person_erased_builds_ago_is_blanked_on_disk_too(tmp_path: Path,
                                                                                 exports: list) -> None:
    """A line rejected long after the erasure lands in a part written after the purge: a later
    build looks at every new dead-letter part for every erased person, so no part keeps it."""
    import orjson

    from engine.events import Rejection
    from flows import rows
    from flows.packets import Export

    logic = warehouse.WarehouseLogic(tmp_path / "w.duckdb", 1, 0.0, "test", None)
    for export in exports[:ERASE_AT_CHUNK + 1]:
        logic.on_batch([export])
        logic.on_eof()
    erased = sorted(i for i in _erased_ids(tmp_path / "w.duckdb") if not i.startswith("anon"))
    assert erased and set(erased) <= logic.state.purged  # purged, builds ago
    late = Rejection("bad_timestamp", "d", orjson.dumps({"userId": erased[0], "timestamp": "x"}).decode(), "f:1")
    other = Rejection("bad_timestamp", "d", '{"userId":"someone-else","timestamp":"x"}', "f:2")
    for i, export in enumerate(exports[ERASE_AT_CHUNK + 1:]):
        if i == 1:
            dead = rows.to_table("dead_letters", [rows.dead_letter_row(late), rows.dead_letter_row(other)])
            export = Export(cut=export.cut, stage=export.stage, shard=export.shard,
                            tables={**export.tables, "dead_letters": dead}, counts=export.counts, final=export.final)
        logic.on_batch([export])
        logic.on_eof()
    warehouse.delete_after_run()
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        assert dict(con.execute("SELECT source, raw FROM dead_letters").fetchall()) == {"f:1": "", "f:2": other.raw}
    finally:
        con.close()
    files = sorted((tmp_path / "w.duckdb.parts" / "dead_letters").glob("*.parquet"))
    assert {r[3]: r[2] for r in _all_rows(files)} == {"f:1": "", "f:2": other.raw}
