"""Snapshot builds: each one on top of the previous file, with compactions between, ends where one build from scratch does."""

from __future__ import annotations

import dataclasses
import pickle
import threading
import time
from pathlib import Path
from typing import Any, Callable

import duckdb
import pyarrow.parquet as pq
import pytest

from engine.config import load_config
from engine.decode import decode_line
from engine.events import Event
from engine.pipeline import LocalPipeline
from flows import rows, warehouse
from flows.packets import Export
from leadstream.generate import GenerateOptions, generate_lines

from .conftest import CONFIG, TABLES

CURRENT_STATE = ("contacts", "contact_scores", "identities", "merges", "segment_members", "workflow_members")


def _exports(chunks: int, edit: Callable[[list[Event]], list[Event]] | None = None) -> list[Export]:
    """Run the engine over generated events in chunks; export what changed after each, as shards do.

    ``edit`` may change the generated events first (tests/flows/test_purge.py adds erasures).
    """
    config = load_config(CONFIG)
    steps = {wf.name: [step.name for step in wf.program] for wf in config.workflows}
    events = [e for e in (decode_line(line, "gen") for line in generate_lines(
        GenerateOptions(events=12_000, contacts=900, seed=5))) if isinstance(e, Event)]
    if edit is not None:
        events = edit(events)
    pipe = LocalPipeline(config, shards=4)
    size = len(events) // chunks + 1
    out: list[Export] = []
    for cut in range(chunks):
        applied, fired = len(pipe.applied), len(pipe.triggers)
        pipe.feed(events[cut * size:(cut + 1) * size], batch=500)
        if cut == chunks - 1:
            pipe.finish()
        contacts: list[Any] = []
        merged: list[tuple[str, str, int]] = []
        links: list[Any] = []
        for shard in pipe.identity:
            changed_links, profiles, removed = shard.take_changes()
            contacts += [rows.contact_row(c, steps) for c in profiles.values()]
            merged += [(anon, into, at) for anon, (into, at) in sorted(removed.items())]
            links += [rows.identity_row(d, cid, at) for d, (cid, at) in changed_links.items()]
        for shard in pipe.contact_shards:
            contacts += [rows.contact_row(c, steps) for c in shard.take_changes().values()]
        tables = rows.export_tables(contacts=contacts, merged=merged, identities=links,
                                    events=pipe.applied[applied:], triggers=pipe.triggers[fired:])
        out.append(Export(cut=cut, stage="contacts", shard=0, tables=tables,
                          counts={"accepted": len(pipe.applied) - applied}, final=cut == chunks - 1))
    return out


def _read(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in sorted(set(TABLES) | set(CURRENT_STATE))}
    finally:
        con.close()


def test_incremental_snapshots_equal_one_from_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot per cut (each built on the previous file, parts compacted every few cuts) ends
    with the same tables as a single snapshot built from every part at the end."""
    monkeypatch.setattr(warehouse, "COMPACT_AFTER", 2)
    monkeypatch.setattr(warehouse, "MERGED_ROW_GROUP", 2048)  # DuckDB rounds up to 2048
    exports = _exports(chunks=12)
    often = warehouse.WarehouseLogic(tmp_path / "often.duckdb", 1, 0.0, "test", None)
    for export in exports:
        often.on_batch([export])
        often.on_eof()  # waits for the build under way, publishes what is not published yet
    once = warehouse.WarehouseLogic(tmp_path / "once.duckdb", 1, 1e9, "test", None)
    once.on_batch(exports)
    once.on_eof()
    snapshots = often.state.snapshots
    assert len(snapshots) >= 10, f"{len(snapshots)} snapshots: too few to exercise incremental builds"
    assert len(once.state.snapshots) == 1
    # Compaction ran: part lists were merged down while snapshots went on, append-only
    # ones by levels (merged parts merged again), current-state ones whole.
    st = often.state
    assert len(st.retired) > 0 and max(st.levels.values()) == 2
    for table, parts in st.parts.items():
        levels = [st.levels.get(p, 0) for p in parts]
        assert levels == sorted(levels, reverse=True), f"{table}: levels out of order"
        assert all(levels.count(level) <= 3 for level in set(levels)), f"{table}: {levels}"
    # Merged parts are written in small row groups (DuckDB's writer holds one in memory);
    # DuckDB takes the size as a target, in whole vectors of 2048 rows.
    merged = [pq.ParquetFile(p).metadata for p in st.levels]
    groups = [[m.row_group(i).num_rows for i in range(m.num_row_groups)] for m in merged]
    assert any(len(g) > 1 for g in groups) and max(map(max, groups)) <= 2 * 2048, groups
    built, scratch = _read(tmp_path / "often.duckdb"), _read(tmp_path / "once.duckdb")
    assert {t: len(v) for t, v in built.items()} == {t: len(v) for t, v in scratch.items()}
    assert built == scratch
    assert len(built["merges"]) > 0 and len(built["contacts"]) > 100


FINAL = warehouse.COMPACT_AFTER * warehouse.FINAL_SLACK


@pytest.mark.parametrize(
    ("title", "table", "levels", "after", "expected"),
    [
        ("few parts: nothing to merge", "events", [0] * 32, warehouse.COMPACT_AFTER, None),
        ("one part too many: level 0 merges into a level-1 part", "events", [1, 1] + [0] * 33,
         warehouse.COMPACT_AFTER, (2, 35, 1)),
        ("a full level 1 merges before level 0 fills up", "triggers", [2] + [1] * 33 + [0] * 5,
         warehouse.COMPACT_AFTER, (1, 34, 2)),
        ("levels interleaved (never written so): left alone", "events", [1, 0] * 40, warehouse.COMPACT_AFTER, None),
        ("current-state tables merge whole, whatever the levels", "contacts", [0] * 33,
         warehouse.COMPACT_AFTER, (0, 33, 0)),
        ("the final snapshot leaves 40 parts to the next run", "events", [0] * 40,
         FINAL, None),
        ("the final snapshot leaves 40 contact parts too", "contacts", [0] * 40, FINAL, None),
        ("the final snapshot merges past twice the bound", "events", [1] + [0] * 65,
         FINAL, (1, 66, 1)),
    ],
)
def test_compaction_picks_one_level_of_parts(title: str, table: str, levels: list[int], after: int,
                                              expected: tuple[int, int, int] | None) -> None:
    st = warehouse.WarehouseState()
    st.parts[table] = [f"p{i:03d}" for i in range(len(levels))]
    st.levels = {p: level for p, level in zip(st.parts[table], levels) if level}
    assert st.compaction(table, after) == expected, title


def test_the_final_snapshot_leaves_merging_to_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end of input waits for its snapshot: a level just past COMPACT_AFTER stays unmerged
    there, and the first build of a resumed run merges it."""
    monkeypatch.setattr(warehouse, "COMPACT_AFTER", 2)
    exports = _exports(chunks=6)
    path = tmp_path / "w.duckdb"
    first = warehouse.WarehouseLogic(path, 1, 0.0, "test", None)
    for export in exports:
        first.on_batch([export])
        first.on_eof()
    st = first.state
    assert st.final and len(st.snapshots) == 6

    def level_zero(state: warehouse.WarehouseState) -> int:
        return sum(1 for p in state.parts["events"] if state.levels.get(p, 0) == 0)

    # Three parts at level 0: one past the bound, which any other build would have merged.
    assert level_zero(st) == 3, st.parts["events"]
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == sum(
            ex.tables["events"].num_rows for ex in exports)
    finally:
        con.close()
    resumed = warehouse.WarehouseLogic(path, 1, 0.0, "test", pickle.loads(pickle.dumps(st)))
    resumed.on_batch([dataclasses.replace(exports[-1], cut=len(exports), final=False)])
    resumed.on_eof()
    assert level_zero(resumed.state) == 0 and set(st.parts["events"][-3:]) <= set(resumed.state.retired)


@pytest.mark.parametrize("where", ["between statements", "during a statement"])
def test_the_end_of_input_gives_up_the_build_under_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       where: str) -> None:
    """Every worker waits for the final snapshot: a build still running when the last cut comes
    is given up (what it merged deleted), and the final one publishes everything."""
    monkeypatch.setattr(warehouse, "COMPACT_AFTER", 2)
    exports = _exports(chunks=6)
    real_build = warehouse._build
    started, blocked, interrupted = threading.Event(), [], []

    def build(con: Any, plan: Any, parts: dict[str, list[str]]) -> tuple[Any, ...]:
        if plan.last_cut != 2:
            return real_build(con, plan, parts)
        blocked.append(plan)
        if where == "during a statement":
            # Started is told only once DuckDB runs the statement (its progress is known then):
            # told before, a loaded machine let the end of input give the build up before the
            # statement began, and the build stopped at it rather than inside it.
            con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
            raw = con._con

            def tell_when_running() -> None:
                while raw.query_progress() == -1:
                    time.sleep(0.005)
                started.set()

            threading.Thread(target=tell_when_running, daemon=True).start()
        else:
            started.set()
        if where == "during a statement":
            try:
                con.execute("SELECT count(*) FROM range(1000000000000) AS a")  # a minute or more
            except duckdb.InterruptException:
                interrupted.append(plan)
                raise
        deadline = time.monotonic() + 120  # a failure, not a hung test, if nothing gives the build up
        while time.monotonic() < deadline:
            con.execute("SELECT 1")
            time.sleep(0.01)
        raise AssertionError("the build was never given up")

    monkeypatch.setattr(warehouse, "_build", build)
    path = tmp_path / "w.duckdb"
    logic = warehouse.WarehouseLogic(path, 1, 0.0, "test", None)
    for export in exports[:2]:
        logic.on_batch([export])
        logic.on_eof()
    logic.on_batch([exports[2]])  # starts the build that hangs, merging three parts per table
    assert started.wait(30)
    logic.on_batch([exports[3]])  # written while it hangs
    logic.on_batch([exports[4]])
    plan = blocked[0]
    assert plan.compactions, "the given-up build should have had parts to merge"
    out, _ = logic.on_batch([exports[5]])  # the end of input
    assert plan.cancelled and [row["snapshot_id"] for row in out] == [3]
    assert interrupted == ([plan] if where == "during a statement" else [])
    for merged, *_ in plan.compactions.values():
        assert not Path(merged).exists(), merged
    once = warehouse.WarehouseLogic(tmp_path / "once.duckdb", 1, 1e9, "test", None)
    once.on_batch(exports)
    once.on_eof()
    assert _read(path) == _read(tmp_path / "once.duckdb")
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert [r[0] for r in con.execute("SELECT snapshot_id FROM snapshots ORDER BY 1").fetchall()] == [1, 2, 3]
    finally:
        con.close()


def test_recovery_state_from_before_compaction_levels_still_loads() -> None:
    st = warehouse.WarehouseState()
    st.parts["events"] = [f"p{i:03d}" for i in range(40)]
    old = dict(st.__dict__)
    del old["levels"]
    restored = warehouse.WarehouseState.__new__(warehouse.WarehouseState)
    restored.__setstate__(old)
    # Its one merged part counts as level 0 and merges again once, with the parts after it.
    assert restored.levels == {} and restored.compaction("events") == (0, 40, 1)


def test_a_build_beyond_its_memory_bound_retries_unbounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB out of memory under BUILD_MEMORY is not a failed run: the build retries without the
    bound and publishes the same tables, and its spill folder is gone afterwards."""
    exports = _exports(chunks=2)
    bounded = warehouse.WarehouseLogic(tmp_path / "bounded.duckdb", 1, 1e9, "test", None)
    bounded.on_batch(exports)
    bounded.on_eof()
    monkeypatch.setattr(warehouse, "BUILD_MEMORY", "1MB")
    limits: list[str | None] = []
    build_file = warehouse._build_file

    def recording(plan: Any, bounds: dict[str, str]) -> Any:
        limits.append(bounds.get("memory_limit"))
        return build_file(plan, bounds)

    monkeypatch.setattr(warehouse, "_build_file", recording)
    tight = warehouse.WarehouseLogic(tmp_path / "tight.duckdb", 1, 1e9, "test", None)
    tight.on_batch(exports)
    tight.on_eof()
    assert limits == ["1MB", None], "the bounded attempt should run out of memory, the retry succeed"
    assert len(tight.state.snapshots) == 1
    assert _read(tmp_path / "tight.duckdb") == _read(tmp_path / "bounded.duckdb")
    assert not [p for p in tmp_path.rglob("*.spill")]


def test_snapshot_rows_from_before_the_suppressed_column_still_publish(tmp_path: Path) -> None:
    """Recovery state whose snapshot rows have no suppressed count publishes them with NULL there."""
    exports = _exports(chunks=2)
    logic = warehouse.WarehouseLogic(tmp_path / "w.duckdb", 1, 1e9, "test", None)
    logic.on_batch(exports[:1])
    logic.on_eof()
    logic.state.snapshots = [row[:12] for row in logic.state.snapshots]  # as older state held them
    logic.on_batch(exports[1:])
    logic.on_eof()
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT snapshot_id, suppressed FROM snapshots ORDER BY 1").fetchall() == [(1, None), (2, 0)]
    finally:
        con.close()


def test_a_build_file_left_by_a_killed_run_is_removed(tmp_path: Path) -> None:
    """A run killed while it built a snapshot leaves its build file, a whole copy of the warehouse, named by that
    run; the next writer removes it, and leaves other files alone."""
    path = tmp_path / "w.duckdb"
    stale = [tmp_path / ".w.duckdb.f5f241bc.tmp", tmp_path / ".w.duckdb.f5f241bc.tmp.wal",
             tmp_path / ".w.duckdb.0a1b2c3d.tmp.spill"]
    kept = [tmp_path / "w.duckdb.keep", tmp_path / ".other.duckdb.f5f241bc.tmp"]
    for f in stale + kept:
        f.write_bytes(b"x")
    spill = tmp_path / ".w.duckdb.cafef00d.tmp.spill"  # a build's DuckDB temp_directory
    spill.mkdir()
    (spill / "block").write_bytes(b"x")
    warehouse.WarehouseLogic(path, 1, 0.0, "test", None)
    assert [f.exists() for f in stale] == [False] * 3 and all(f.exists() for f in kept)
    assert not spill.exists()
