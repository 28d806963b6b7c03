"""The warehouse writer: gathers every shard's export for a cut, then publishes a DuckDB snapshot.

Layout next to the warehouse file ``W`` (e.g. ``demo/warehouse.duckdb``):
- ``W.parts/<table>/<seq>-<run>.parquet``: immutable Parquet parts, one per table per cut
  (``<seq>-<run>.e<build>.parquet``: one rewritten without erased people's rows, see purge);
- ``W``: a DuckDB file built fresh for every snapshot and swapped in with an atomic
  rename. Current-state tables are materialized from the parts; append-only tables
  (events, triggers, dead_letters) are views over an explicit list of parts.

DuckDB lets one process write a file and locks other processes out meanwhile, so the
flow never opens ``W`` itself: readers open it read-only at any time and always see
one whole snapshot. The writer's state (which parts make up the warehouse) is part
of the Bytewax snapshot, so after a crash the warehouse resumes without duplicates:
parts written after the last recovery snapshot are simply never referenced.

The file work runs on two background threads, so the worker keeps processing events
meanwhile: Parquet encoding and DuckDB both release the GIL. One thread writes parts
in order; the other builds snapshots, one at a time, from a frozen copy of the part
lists. The worker owns the state: a finished build's outcome (its snapshot row, the
parts compaction merged) is folded in on the worker, and a recovery snapshot first
waits for the part writes, so it never names a part that is not on disk.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from bytewax.operators import StatefulBatchLogic

import schemas

from . import rows
from .packets import Export, unseal
from .progress import PROGRESS, timed
from .purge import ERASED_IDENTIFIERS, ERASED_IDS, Purge, names_any, purge_erased, rewritten_name
from .sqltext import scalar
from .sqltext import sql_list as _list
from .sqltext import sql_path as _sql_path

DDL_PATH = Path(schemas.__file__).with_name("warehouse.sql")
APPEND_ONLY = ("events", "triggers", "dead_letters")
# A trigger of an erased contact keeps what the reports count (action, rule, time, ids),
# but not the e-mail address, nor its parameters and reasons, which quote traits and event
# properties. The contact_deleted trigger keeps its reason (the deletion event), the record
# of the erasure; its address and devices were for the actioners.
_ERASED_TRIGGER = f"p.contact_id IN ({ERASED_IDS})"
# Anonymous and known ids share contact_id. When one person's anonymousId is another's userId,
# the anonymous profile's rows (and its merge tombstone) must not stand in for the known
# contact's: a known contact never becomes anonymous, so its rows rank first.
_KNOWN_FIRST = "(user_id IS NOT NULL OR erased IS TRUE) DESC, "
# Columns of append-only views that are computed rather than read as stored.
DERIVED = {
    # An anonymous profile's events belong to the contact it merged into.
    "events": {"contact_id": "COALESCE((SELECT m.contact_id FROM merges m WHERE m.anonymous_id = p.contact_id), p.contact_id)"},
    "triggers": {
        "email": f"CASE WHEN {_ERASED_TRIGGER} THEN NULL ELSE p.email END",
        "params": f"CASE WHEN {_ERASED_TRIGGER} THEN NULL ELSE p.params END",
        "reason": f"CASE WHEN p.action <> 'contact_deleted' AND {_ERASED_TRIGGER} THEN NULL ELSE p.reason END",
    },
    # A rejected line that names an erased person keeps its reason, detail and source, not its
    # text: at once here, and on disk from the purge (of a later build, for lines rejected after).
    "dead_letters": {"raw": f"CASE WHEN {names_any(ERASED_IDENTIFIERS, 'p.raw')} THEN '' ELSE p.raw END"},
}
# Rows of append-only views that are hidden: the events of contacts erased on request.
FILTERS = {"events": "contact_id NOT IN (SELECT contact_id FROM contacts WHERE deleted)"}
# Parts of one compaction level before they are merged into one part of the next level.
# Append-only tables grow for as long as the flow runs, so merging all their parts into
# one rewrote the whole history every 32 cuts (a 1M-event replay's last builds took 9-13 s);
# by levels, each row is rewritten once per level, and a table keeps at most 33 parts
# per level. Current-state tables merge whole: newest-row-wins keeps them at one row per key.
COMPACT_AFTER = 32
# The end of input waits for its snapshot, so that build leaves merging to the next run
# unless a level holds more than this many times COMPACT_AFTER parts. A 1M-line replay
# (40 cuts) passed 32 parts just before its end: its final build merged all five tables
# in 3 of its 4.9 s, which the run then waited for. Merging changes no row, only how
# many files hold them.
FINAL_SLACK = 2
MAX_QUEUED_WRITES = 64  # part writes the worker may run ahead of the disk before it waits
BUILD_THREADS = 1  # DuckDB threads for building a snapshot while the flow runs
# The end of input's snapshot: every worker waits for it, so its build takes every core.
FINAL_BUILD_THREADS = max(1, os.cpu_count() or 1)
# DuckDB's memory for one build. Without a limit a from-scratch build of 250k contacts
# adds about 390 MB to the RSS; at 128 MB it spills its sorts and window to disk, adds
# about 170 MB and takes about as long. A build that still runs out retries unbounded.
BUILD_MEMORY = "128MB"
# Rows per row group of a merged part. DuckDB's Parquet writer holds a whole row group
# before it writes one: at its default (122,880) merging 280k contacts added 157 MB to
# the RSS, outside the memory limit above, and the build's peak was the run's peak. At
# 16,384 the merge adds 81 MB and takes 2.1 s instead of 4.7 s.
MERGED_ROW_GROUP = 16_384
BUILD_POLL_S = 0.05  # how soon the step looks again for a snapshot build that has finished
# Retired parts to delete once the run has ended, without the grace period for open readers:
# a run that erased someone leaves no part behind that still holds their rows.
AFTER_RUN: set[str] = set()


def delete_after_run() -> int:
    """Delete the parts a finished run left for deletion (see AFTER_RUN); return how many.

    The CLI calls it once the dataflow has returned, so its last recovery snapshot, which
    no longer names them, has been written: a resume cannot ask for them.
    """
    n = 0
    for part in sorted(AFTER_RUN):
        path = Path(part)
        if path.exists():
            path.unlink()
            n += 1
    AFTER_RUN.clear()
    return n


def ddl_sections() -> list[tuple[str, str, str]]:
    """The warehouse DDL as (kind, name, sql) sections, in file order."""
    sections: list[tuple[str, str, str]] = []
    kind = name = ""
    lines: list[str] = []
    for line in DDL_PATH.read_text(encoding="utf-8").splitlines():
        if line.startswith(("-- table: ", "-- view: ")):
            if name:
                sections.append((kind, name, "\n".join(lines)))
            kind, name = line[3:].split(": ", 1)
            lines = []
        elif name:
            lines.append(line)
    if name:
        sections.append((kind, name, "\n".join(lines)))
    return sections


@dataclass
class WarehouseState:
    """Which parts make up the warehouse, the snapshot history, and exports still incomplete."""

    parts: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in rows.PART_SCHEMAS})
    snapshots: list[tuple[Any, ...]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    # (cut, final) -> (stage, shard) -> exports. A shard exports each key once: a cut it
    # passed and the end of input at the same instant are two exports, two keys.
    pending: dict[tuple[int, bool], dict[tuple[str, int], list[Export]]] = field(default_factory=dict)
    seq: int = 0
    last_cut: int | None = None
    dirty: bool = False
    final: bool = False  # the last applied cut was the end of input
    retired: dict[str, float] = field(default_factory=dict)  # part -> wall time it left the warehouse
    levels: dict[str, int] = field(default_factory=dict)  # merged append-only part -> its level (others: 0)
    purged: set[str] = field(default_factory=set)  # erased ids whose rows no part holds any more (see purge)
    checked: set[str] = field(default_factory=set)  # dead-letter parts known to name no erased person

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Recovery state written before compaction levels (or purges) has no ``levels`` (``purged``).
        self.__dict__.update({"levels": {}, "purged": set(), "checked": set(), **state})

    def compaction(self, table: str, after: int = COMPACT_AFTER) -> tuple[int, int, int] | None:
        """The parts of ``table`` to merge now, as (start, end, level of the merged part), if any.

        A level merges once it holds more than ``after`` parts.
        """
        parts = self.parts[table]
        if table not in APPEND_ONLY:
            return (0, len(parts), 0) if len(parts) > after else None
        levels = [self.levels.get(p, 0) for p in parts]
        for level in sorted(set(levels)):
            at = [i for i, have in enumerate(levels) if have == level]
            # Merged parts take the place of what they merged, so each level is one run.
            if len(at) > after and at[-1] - at[0] + 1 == len(at):
                return at[0], at[-1] + 1, level + 1
        return None


class WarehouseLogic(StatefulBatchLogic):
    """One key, one writer: completes cuts, writes parts, publishes snapshots on an interval."""

    def __init__(self, path: Path, exporters: int, interval_s: float, config_fingerprint: str,
                 resume: WarehouseState | None,
                 profiles: tuple[tuple[str, int | None, int | None, float | None], ...] = ()) -> None:
        self.path = Path(path)
        # (profile, half_life_ms, inactive_after_ms, factor) of the config: the scoring_profiles table.
        self.profiles = profiles
        self.parts_dir = Path(str(self.path) + ".parts")
        self.exporters = exporters
        self.interval_s = interval_s
        self.fingerprint = config_fingerprint
        self.state = resume or WarehouseState()
        self.run_id = uuid.uuid4().hex[:8]  # keeps part names of a resumed run apart from orphans
        # A run killed while it built a snapshot left its build file (named by that run) beside
        # the warehouse, a whole copy of it, and no later run looked at another run's.
        for stale in self.path.parent.glob(f".{glob_escape(self.path.name)}.*.tmp*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)  # a build's DuckDB spill folder
            else:
                stale.unlink(missing_ok=True)
        self.last_publish = float("-inf")  # the first complete cut publishes at once
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="leadstream-parts")
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="leadstream-publish")
        self._writes: list[Future] = []  # part writes not yet known to be on disk
        self._build_job: Future | None = None  # the snapshot being built, at most one
        self._build_plan: _BuildPlan | None = None  # what that build was given
        # What the published file holds; None until this run published once, so the
        # first snapshot of every run (a resumed one too) is built from scratch.
        self._applied: _Applied | None = None
        self._purged = False  # this run rewrote parts for an erasure (see on_eof)

    @timed("warehouse")
    def on_batch(self, values: list[Export]) -> tuple[list[Any], bool]:
        """Collect exports; apply every complete cut; publish when the interval has passed."""
        st = self.state
        for sealed in values:
            export: Export = unseal(sealed)
            st.pending.setdefault((export.cut, export.final), {}).setdefault((export.stage, export.shard), []).append(export)
        # Complete: every shard of both stages has exported the key.
        complete = [key for key in sorted(st.pending) if len(st.pending[key]) >= self.exporters]
        if complete:
            # A later complete cut also settles any earlier one still missing exports
            # (shards resumed from different snapshots may skip a cut): merge them in.
            last = complete[-1]
            for key in sorted(k for k in st.pending if k <= last):
                exports = [ex for per_shard in st.pending.pop(key).values() for ex in per_shard]
                self._apply(key[0], exports)
        return self._publish_if_due(), self.RETAIN

    @timed("warehouse")
    def on_notify(self) -> tuple[list[Any], bool]:
        """Collect a finished build; start the next once the interval has passed."""
        return self._publish_if_due(), self.RETAIN

    def notify_at(self) -> datetime | None:
        """Wake up to collect a build, or to publish at the end of the interval without new exports."""
        if self._build_job is not None:
            return datetime.now(timezone.utc) + timedelta(seconds=BUILD_POLL_S)
        if not self.state.dirty:
            return None
        wait = min(self.interval_s, max(0.0, self.interval_s - (time.monotonic() - self.last_publish)))
        return datetime.now(timezone.utc) + timedelta(seconds=wait)

    @timed("warehouse")
    def on_eof(self) -> tuple[list[Any], bool]:
        """End of input: finish the build under way, then publish whatever is complete."""
        out = self._collect(wait=True)
        if self.state.dirty:
            out.append(self.publish())
        if self._purged:
            # A finished run does not come back to collect garbage, and retired parts may
            # still hold erased people's rows (the originals of a purge, and what compaction
            # merged before it): they go once the run has ended (see delete_after_run).
            AFTER_RUN.update(self.state.retired)
        return out, self.RETAIN

    @timed("warehouse")
    def snapshot(self) -> WarehouseState:
        """The part lists and history: enough to publish the same warehouse after a resume."""
        self._drain_writes()  # the state must not name a part that is not on disk yet
        return self.state

    def _publish_if_due(self) -> list[Any]:
        st = self.state
        out = self._collect(wait=False)
        if st.final and st.dirty and self._build_job is not None:
            # Everything is in: the snapshot under way would be replaced at once, and
            # every worker waits for the final one. Waiting for it first took 3-5 s
            # at the end of a 1M-line replay when it was merging parts.
            out.extend(self._cancel_build())
        if st.dirty and self._build_job is None and (
                st.final or time.monotonic() - self.last_publish >= self.interval_s):
            self._start_build()
            if st.final:  # the end of input: publish before the step reports its summary
                out.extend(self._collect(wait=True))
        return out

    # ------------------------------------------------------------ parts

    def _write_part(self, table: str, data: list[Any]) -> None:
        st = self.state
        st.seq += 1
        folder = self.parts_dir / table
        folder.mkdir(parents=True, exist_ok=True)
        path = (folder / f"{st.seq:08d}-{self.run_id}.parquet").resolve()
        # Named in the state now, on disk once the writer thread gets to it (see snapshot).
        self._writes.append(self._writer.submit(_write_parquet, data, path))
        st.parts[table].append(str(path))
        if len(self._writes) > MAX_QUEUED_WRITES:
            self._drain_writes(keep=MAX_QUEUED_WRITES // 2)

    def _drain_writes(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` part writes are still queued; raise a failed one's error."""
        while len(self._writes) > keep:
            job = self._writes.pop(0)
            try:
                job.result()
            except Exception as ex:
                msg = f"step 'warehouse': writing a Parquet part under {self.parts_dir} failed: {ex}"
                raise RuntimeError(msg) from ex

    def _apply(self, cut: int, exports: list[Export]) -> None:
        st = self.state
        gather: dict[str, list[Any]] = {name: [] for name in rows.PART_SCHEMAS}  # tables or PendingRows
        buffered = 0
        # Shards export in any order; sort so part contents do not depend on arrival.
        for ex in sorted(exports, key=lambda e: (e.stage, e.shard)):
            for name, table in ex.tables.items():
                gather[name].append(table)
            for k, v in ex.counts.items():
                st.totals[k] = st.totals.get(k, 0) + v
            buffered += ex.buffered
        st.totals["buffered"] = buffered
        for name, tables in gather.items():
            if tables:
                self._write_part(name, tables)
        st.last_cut = cut
        st.final = any(ex.final for ex in exports)
        st.dirty = True

    # ------------------------------------------------------------ publishing

    def publish(self) -> dict[str, Any]:
        """Build a snapshot of everything applied so far, wait for it, and return its summary row."""
        self._collect(wait=True)
        self._start_build()
        return self._collect(wait=True)[0]

    def _start_build(self) -> None:
        """Hand a frozen copy of the part lists to the builder thread."""
        st = self.state
        plan = _BuildPlan(
            path=self.path,
            tmp=self.path.with_name(f".{self.path.name}.{self.run_id}.tmp"),
            parts={t: list(p) for t, p in st.parts.items()},
            compactions={},
            snapshots=list(st.snapshots),
            totals=dict(st.totals),
            last_cut=st.last_cut,
            fingerprint=self.fingerprint,
            profiles=self.profiles,
            writes=list(self._writes),
            previous=self._applied,
            purged=frozenset(st.purged),
            checked=frozenset(st.checked),
            threads=FINAL_BUILD_THREADS if st.final else BUILD_THREADS,
        )
        after = COMPACT_AFTER * FINAL_SLACK if st.final else COMPACT_AFTER
        for table in (*APPEND_ONLY, "identities", "contacts"):
            segment = st.compaction(table, after)
            if segment is not None:
                # Numbered now, so the merged part sorts after the ones it replaces and
                # before any written meanwhile: "the newest part wins" keeps holding.
                st.seq += 1
                target = (self.parts_dir / table / f"{st.seq:08d}-{self.run_id}.parquet").resolve()
                plan.compactions[table] = (str(target), *segment)
        st.dirty = False
        self.last_publish = time.monotonic()
        self._build_job = self._builder.submit(_build_snapshot, plan)
        self._build_plan = plan

    def _collect(self, wait: bool) -> list[dict[str, Any]]:
        """Fold a finished build into the state and return its summary (none if still running)."""
        job = self._build_job
        if job is None or (not wait and not job.done()):
            return []
        self._build_job = None
        plan = self._build_plan
        assert plan is not None  # set with every build job
        try:
            row, elapsed, self._applied, purge = job.result()
        except Exception as ex:
            self._applied = None  # the file may be half-built: the next build starts from scratch
            msg = f"step 'warehouse': publishing a snapshot to {self.path} failed: {ex}"
            raise RuntimeError(msg) from ex
        st = self.state
        st.snapshots.append(row)
        now = time.time()
        for table, (merged, start, end, level) in plan.compactions.items():
            replaced = plan.parts[table][start:end]
            # Only appends happened meanwhile: parts written while the build ran stay last.
            st.parts[table] = st.parts[table][:start] + [merged] + st.parts[table][end:]
            st.retired.update((p, now) for p in replaced)
            for p in replaced:
                st.levels.pop(p, None)
            if level:
                st.levels[merged] = level
        self._fold_purge(purge, now)
        PROGRESS.published(f"snapshot {row[0]}")
        self._collect_garbage()
        return [self._summary(row, elapsed)]

    def _cancel_build(self) -> list[dict[str, Any]]:
        """Give up the build under way; a build that finished first is collected as usual.

        The state is as if it never started: its parts are published by the next build,
        which removes the half-built file. What it merged is deleted.
        """
        job, plan = self._build_job, self._build_plan
        assert job is not None and plan is not None
        plan.cancel()
        try:
            job.result()
        except (_Cancelled, duckdb.InterruptException):
            self._build_job = None
            self.state.dirty = True
            build = len(plan.snapshots) + 1
            for merged, *_ in plan.compactions.values():
                for path in (merged, rewritten_name(merged, build)):
                    for leftover in (Path(path), Path(path).with_suffix(".tmp")):
                        leftover.unlink(missing_ok=True)
            return []
        except Exception:  # noqa: BLE001 - a real failure: _collect reports it
            pass
        return self._collect(wait=True)

    def _fold_purge(self, purge: Purge, now: float) -> None:
        """Swap in the parts a build rewrote without erased people's rows; retire the originals."""
        st = self.state
        for table, swaps in purge.replaced.items():
            # Compaction above already swapped in what it merged, which the build purged after it.
            st.parts[table] = [swaps.get(p, p) for p in st.parts[table]]
            for old, new in swaps.items():
                st.retired[old] = now
                self._purged = True
                level = st.levels.pop(old, None)
                if level:
                    st.levels[new] = level
        st.purged.update(purge.ids)
        if purge.checked is not None:
            st.checked = set(purge.checked)

    @staticmethod
    def _summary(row: tuple[Any, ...], elapsed: float) -> dict[str, Any]:
        """The snapshot row as the step's output, with the time its build took."""
        return dict(zip(_SNAPSHOT_COLUMNS, row), publish_seconds=round(elapsed, 3))

    def _collect_garbage(self) -> None:
        """Delete parts no snapshot refers to any more, after a grace period for open readers.

        Retired parts (merged by compaction) and orphans (written after the last recovery
        snapshot of a crashed run) go once they have been out of use for two minutes.
        """
        st = self.state
        keep = {p for parts in st.parts.values() for p in parts}
        for gone in [p for p in st.retired if not Path(p).exists()]:  # deleted after a finished run
            del st.retired[gone]
        cutoff = time.time() - 120
        for folder in self.parts_dir.glob("*"):
            for part in folder.glob("*.parquet"):
                resolved = str(part.resolve())
                if resolved in keep:
                    continue
                since = st.retired.get(resolved, part.stat().st_mtime)
                if since < cutoff:
                    part.unlink(missing_ok=True)
                    st.retired.pop(resolved, None)


@dataclass
class _BuildPlan:
    """What the builder thread needs, copied from the state when the build starts."""

    path: Path
    tmp: Path
    parts: dict[str, list[str]]
    compactions: dict[str, tuple[str, int, int, int]]  # table -> (merged part to write, start, end, its level)
    snapshots: list[tuple[Any, ...]]
    totals: dict[str, int]
    last_cut: int | None
    fingerprint: str
    writes: list[Future]  # part writes the snapshot refers to
    previous: _Applied | None = None  # what the published file holds, to build on; None: from scratch
    purged: frozenset[str] = frozenset()  # erased ids no part holds rows of any more
    checked: frozenset[str] = frozenset()  # dead-letter parts known to name no erased person
    threads: int = BUILD_THREADS
    profiles: tuple[tuple[str, int | None, int | None, float | None], ...] = ()  # see WarehouseLogic
    # Set by the worker to give the build up (see WarehouseLogic._cancel_build); the
    # builder thread registers its connection, so a statement under way stops too.
    cancelled: bool = False
    connection: Any = None

    def cancel(self) -> None:
        """Give the build up: the statement under way is interrupted, the next one is not run."""
        self.cancelled = True
        con = self.connection
        if con is not None:
            try:
                con.interrupt()
            except duckdb.Error:
                pass  # closed meanwhile: the build got past its last statement


class _Cancelled(Exception):
    """The build was given up (``_BuildPlan.cancel``)."""


class _Statements:
    """A build's DuckDB connection that stops before each statement once the build is given up."""

    __slots__ = ("_con", "_plan")

    def __init__(self, con: duckdb.DuckDBPyConnection, plan: _BuildPlan) -> None:
        self._con, self._plan = con, plan

    def execute(self, *args: Any) -> Any:
        """``DuckDBPyConnection.execute``, unless the build was given up."""
        if self._plan.cancelled:
            raise _Cancelled
        return self._con.execute(*args)

    def executemany(self, *args: Any) -> Any:
        """``DuckDBPyConnection.executemany``, unless the build was given up."""
        if self._plan.cancelled:
            raise _Cancelled
        return self._con.executemany(*args)


@dataclass(frozen=True)
class _Applied:
    """The contact and link parts a published snapshot file has applied."""

    contacts: frozenset[str]
    identities: frozenset[str]


def _write_parquet(data: list[Any], path: Path) -> None:
    """Assemble and write one part (on the part-writer thread); a tmp name keeps readers off half a file."""
    data = rows.assemble(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(data, tmp, compression="zstd")
    os.replace(tmp, path)


def _build_snapshot(plan: _BuildPlan) -> tuple[tuple[Any, ...], float, _Applied, Purge]:
    """Build a fresh DuckDB file from the parts and swap it in atomically (builder thread)."""
    for job in plan.writes:
        job.result()  # the parts this snapshot names are on disk
    started = time.monotonic()
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    if plan.previous is not None and not plan.path.exists():
        plan.previous = None  # someone removed it: build from scratch
    spill = plan.tmp.with_name(plan.tmp.name + ".spill")
    try:
        try:
            parts, row, purge = _build_file(plan, {"memory_limit": BUILD_MEMORY, "temp_directory": str(spill)})
        except duckdb.OutOfMemoryException:
            parts, row, purge = _build_file(plan, {})  # more than the bound: memory over failing the run
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    os.replace(plan.tmp, plan.path)
    # Rewritten contact parts count as applied: their rows are the originals' (see purge).
    applied = _Applied(frozenset(parts["contacts"]), frozenset(parts["identities"]))
    return row, time.monotonic() - started, applied, purge


def _build_file(plan: _BuildPlan, limits: dict[str, str]) -> tuple[dict[str, list[str]], tuple[Any, ...], Purge]:
    """Build the snapshot into ``plan.tmp`` with one DuckDB connection; return the part lists, its row, its purge."""
    for stale in (plan.tmp, Path(str(plan.tmp) + ".wal")):
        stale.unlink(missing_ok=True)
    if plan.previous is not None:
        # Start from the last snapshot: a file copy, then only what changed since.
        shutil.copyfile(plan.path, plan.tmp)
    # One thread while the flow runs: its worker needs the other core meanwhile, and a
    # snapshot that takes a little longer to build costs nobody a stall.
    raw = duckdb.connect(config={"threads": plan.threads, **limits})
    plan.connection = raw
    con: Any = _Statements(raw, plan)
    try:
        con.execute(f"ATTACH '{_sql_path(plan.tmp)}' AS snap")
        parts = _compact(con, plan)
        row = _build(con, plan, parts)
        purge = purge_erased(con, parts, plan.purged, len(plan.snapshots) + 1, MERGED_ROW_GROUP, plan.checked)
        for name, sql in _append_only_ddl():
            if name in purge.replaced:
                con.execute(f"DROP VIEW {name}")
                _create_view(con, name, sql, parts[name])
        con.execute("USE memory")
        con.execute("DETACH snap")
    finally:
        plan.connection = None
        raw.close()
    return parts, row, purge


def _compact(con: duckdb.DuckDBPyConnection, plan: _BuildPlan) -> dict[str, list[str]]:
    """Merge many small parts into one, so snapshots stay quick to build and read; return the part lists."""
    parts = dict(plan.parts)
    for table, (merged, start, end, _) in plan.compactions.items():
        old = parts[table][start:end]
        path = Path(merged)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        if table in ("contacts", "identities"):
            key = "contact_id" if table == "contacts" else "identifier"
            order = f"{_KNOWN_FIRST}filename DESC" if table == "contacts" else "filename DESC"
            query = f"""SELECT * EXCLUDE (rn, filename) FROM (
                SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS rn
                FROM read_parquet({_list(old)}, filename = true)) WHERE rn = 1"""
        else:
            query = f"SELECT * FROM read_parquet({_list(old)})"
        con.execute(f"COPY ({query}) TO '{_sql_path(tmp)}' "
                    f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {MERGED_ROW_GROUP})")
        os.replace(tmp, path)
        parts[table] = parts[table][:start] + [merged] + parts[table][end:]
    return parts


def _build(con: duckdb.DuckDBPyConnection, plan: _BuildPlan, parts: dict[str, list[str]]) -> tuple[Any, ...]:
    """Fill the snapshot's tables and views from the parts; return its row in ``snapshots``.

    From scratch, every current-state table is materialized from every part. On top of
    a copy of the previous snapshot (``plan.previous``), only the contacts and links in
    parts written since are replaced: the newest row per key wins either way, and every
    new part is newer than every part the previous snapshot applied. Append-only tables
    are views over the current part lists in both cases.
    """
    con.execute("USE snap")
    prev = plan.previous
    for kind, name, sql in ddl_sections():
        if kind == "table" and name in APPEND_ONLY:
            if prev is not None:
                # The previous snapshot has it as a view over fewer parts, or as an empty table.
                is_view = scalar(con, "SELECT count(*) FROM duckdb_views() WHERE database_name = 'snap' "
                                 "AND view_name = ?", [name])
                con.execute(f"DROP {'VIEW' if is_view else 'TABLE'} {name}")
            if not parts[name]:
                con.execute(sql)
                continue
            _create_view(con, name, sql, parts[name])
        elif prev is None:
            con.execute(sql)
    # The config's profiles, for the contact_scores view: the run's config, resumed or not.
    con.execute("DELETE FROM scoring_profiles")
    if plan.profiles:
        con.executemany("INSERT INTO scoring_profiles VALUES (?, ?, ?, ?)", list(plan.profiles))
    if prev is None:
        contact_parts, link_parts = parts["contacts"], parts["identities"]
    else:
        # Which parts are new is judged on the lists before compaction merged them.
        contact_parts = [p for p in plan.parts["contacts"] if p not in prev.contacts]
        link_parts = [p for p in plan.parts["identities"] if p not in prev.identities]
        con.execute("DELETE FROM snapshots")  # re-inserted below, with the new row
    if contact_parts:
        # The newest row per contact wins; a tombstone removes it. A known contact's row wins
        # over an anonymous profile's or a tombstone of the same id (see _KNOWN_FIRST).
        con.execute(f"""
            CREATE TEMP TABLE current_contacts AS
            SELECT * EXCLUDE (rn) FROM (
                SELECT *, row_number() OVER (PARTITION BY contact_id ORDER BY {_KNOWN_FIRST}filename DESC) AS rn
                FROM read_parquet({_list(contact_parts)}, filename = true, union_by_name = true)
            ) WHERE rn = 1""")
        if prev is not None:
            con.execute("""DELETE FROM temp.main.current_contacts WHERE user_id IS NULL AND erased IS NOT TRUE
                           AND contact_id IN (SELECT contact_id FROM contacts WHERE user_id IS NOT NULL)""")
            changed = "(SELECT contact_id FROM temp.main.current_contacts)"
            for table, key in (("contacts", "contact_id"), ("contact_score_values", "contact_id"),
                               ("segment_members", "contact_id"), ("workflow_members", "contact_id"),
                               ("merges", "anonymous_id")):
                con.execute(f"DELETE FROM {table} WHERE {key} IN {changed}")
            con.execute(f"DELETE FROM identities WHERE kind = 'user_id' AND contact_id IN {changed}")
        con.execute("""
            INSERT INTO merges SELECT contact_id, merged_into, merged_at
            FROM temp.main.current_contacts WHERE deleted ORDER BY 1""")
        con.execute("DELETE FROM temp.main.current_contacts WHERE deleted")
        con.execute("""
            INSERT INTO contacts SELECT contact_id, user_id, email, anonymous_ids, traits::JSON, grade, fit, stage,
                stage_since, [s.segment FOR s IN segments], first_seen, last_seen,
                first_campaign::JSON, visits, counts::JSON, lists, events, updated_at, erased
            FROM temp.main.current_contacts ORDER BY contact_id""")
        con.execute("""
            INSERT INTO contact_score_values SELECT contact_id, s.profile, s.score, s.settled_at
            FROM (SELECT contact_id, unnest(scores) AS s FROM temp.main.current_contacts) ORDER BY 1, 2""")
        con.execute("""
            INSERT INTO segment_members SELECT s.segment, contact_id, s.since
            FROM (SELECT contact_id, unnest(segments) AS s FROM temp.main.current_contacts) ORDER BY 1, 2""")
        con.execute("""
            INSERT INTO identities SELECT user_id, 'user_id', contact_id, first_seen
            FROM temp.main.current_contacts WHERE user_id IS NOT NULL""")
        con.execute("""
            INSERT INTO workflow_members SELECT r.workflow, r.step, contact_id, r.since, r.due_at, r.entered_at
            FROM (SELECT contact_id, unnest(runs) AS r FROM temp.main.current_contacts) ORDER BY 1, 3, 2""")
    if link_parts:
        con.execute(f"""
            CREATE TEMP TABLE new_links AS SELECT identifier, kind, contact_id, linked_at FROM (
                SELECT *, row_number() OVER (PARTITION BY identifier ORDER BY filename DESC) AS rn
                FROM read_parquet({_list(link_parts)}, filename = true)
            ) WHERE rn = 1""")
        if prev is not None:
            con.execute("""DELETE FROM identities WHERE kind <> 'user_id'
                           AND identifier IN (SELECT identifier FROM temp.main.new_links)""")
        con.execute("INSERT INTO identities SELECT * FROM temp.main.new_links ORDER BY identifier")
    n_contacts = scalar(con, "SELECT count(*) FROM contacts")
    n_triggers = scalar(con, "SELECT count(*) FROM triggers")
    t = plan.totals
    accepted, dead, dups = t.get("accepted", 0), t.get("dead_lettered", 0), t.get("duplicates", 0)
    buffered = t.get("buffered", 0)
    row = (
        len(plan.snapshots) + 1,
        datetime.now(timezone.utc).replace(tzinfo=None),
        None if plan.last_cut is None or plan.last_cut < 0 else datetime.fromtimestamp(
            plan.last_cut / 1000, tz=timezone.utc).replace(tzinfo=None),
        accepted + dead + dups + buffered,
        accepted,
        dead,
        dups,
        t.get("late", 0),
        buffered,
        n_contacts,
        n_triggers,
        plan.fingerprint,
        t.get("suppressed", 0),
    )
    # Rows kept from before the suppressed column (older recovery state) have none: NULL.
    rows = [old + (None,) * (len(row) - len(old)) for old in plan.snapshots]
    con.executemany(f"INSERT INTO snapshots VALUES ({', '.join('?' * len(row))})", [*rows, row])
    return row


def _append_only_ddl() -> list[tuple[str, str]]:
    """(name, CREATE TABLE statement) of the append-only tables, in DDL order."""
    return [(name, sql) for kind, name, sql in ddl_sections() if kind == "table" and name in APPEND_ONLY]


def _create_view(con: duckdb.DuckDBPyConnection, name: str, sql: str, parts: list[str]) -> None:
    """Create append-only table ``name`` as a view over ``parts``, with the columns its DDL ``sql`` gives."""
    con.execute(sql.replace(f"CREATE TABLE {name} (", f"CREATE OR REPLACE TEMP TABLE _shape_{name} (", 1))
    cols = con.execute(f"DESCRIBE temp.main._shape_{name}").fetchall()
    derived = DERIVED.get(name, {})
    select = ", ".join(f"CAST({derived.get(c[0], 'p.' + c[0])} AS {c[1]}) AS {c[0]}" for c in cols)
    view = f"SELECT {select} FROM read_parquet({_list(parts)}) AS p"
    if name in FILTERS:
        view = f"SELECT * FROM ({view}) WHERE {FILTERS[name]}"
    con.execute(f"CREATE VIEW {name} AS {view}")


_SNAPSHOT_COLUMNS = ("snapshot_id", "taken_at", "watermark", "lines_read", "accepted", "dead_lettered",
                     "duplicates", "late", "buffered", "contacts", "triggers", "config", "suppressed")

