"""The commands that run the flow or read the warehouse: run, segment, demo."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from engine.config import Config, load_config

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "marketing.toml"


class UsageError(Exception):
    """A mistake in the command line; the message says what to do instead."""


# ---------------------------------------------------------------- run


def add_run(sub: argparse._SubParsersAction) -> None:
    """Register `leadstream run`."""
    run = sub.add_parser(
        "run",
        help="run the flow: events in, triggers and a DuckDB warehouse out",
        description="Run the dataflow over JSONL inputs (files, gzip'd files, directories of them, or '-' for "
        "stdin). Triggers go to a JSONL file, rejected lines to a dead-letter JSONL file, and consistent "
        "snapshots to a DuckDB warehouse that analysts can open read-only while the run goes on. Finite input "
        "ends with a final snapshot and a summary; --follow keeps tailing the inputs until interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  leadstream run --config examples/marketing.toml --input events.jsonl \\\n"
        "      --warehouse out/warehouse.duckdb --triggers out/triggers.jsonl",
    )
    run.add_argument("--config", required=True, metavar="FILE", help="the TOML rules file")
    run.add_argument("--input", required=True, nargs="+", metavar="PATH",
                     help="JSONL inputs: files (.jsonl or .jsonl.gz), directories (one partition per file), '-' for stdin")
    run.add_argument("--warehouse", required=True, metavar="FILE", help="DuckDB file to publish snapshots to")
    run.add_argument("--triggers", required=True, metavar="FILE", help="JSONL file for the triggers")
    run.add_argument("--dead-letter", metavar="FILE",
                     help="JSONL file for rejected lines (default: dead_letters.jsonl next to --triggers)")
    run.add_argument("--follow", action="store_true",
                     help="keep tailing the inputs for new lines and new files (live operation; stop with Ctrl-C)")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="worker threads in this process (default 1; scale with processes, see the README)")
    run.add_argument("--snapshot-interval", type=float, default=10.0, metavar="SECONDS",
                     help="publish a warehouse snapshot at least this often (default 10)")
    run.add_argument("--shards", type=int, metavar="N", help="override [settings] shards of the config")
    run.add_argument("--recovery", metavar="DIR",
                     help="Bytewax recovery directory (created and initialised when empty): after a crash, run "
                     "the same command again to resume with no lost events and no doubled effects; a later run "
                     "with the same directory continues from the saved state")
    run.add_argument("--epoch-interval", type=float, default=10.0, metavar="SECONDS",
                     help="how often state is snapshotted for recovery (default 10)")
    run.add_argument("--quiet", action="store_true", help="no progress line and no summary")
    run.set_defaults(func=cmd_run)


def _recovery(args: argparse.Namespace) -> tuple[Any, bool]:
    """Return (RecoveryConfig or None, whether a previous run's state is there to resume)."""
    if not getattr(args, "recovery", None):
        return None, False
    from bytewax.recovery import RecoveryConfig, init_db_dir

    folder = Path(args.recovery)
    folder.mkdir(parents=True, exist_ok=True)
    resuming = any(folder.iterdir())
    if not resuming:
        init_db_dir(folder, max(1, args.workers))
    return RecoveryConfig(folder), resuming


def _prepare_outputs(args: argparse.Namespace, resuming: bool) -> tuple[Path, Path, Path]:
    warehouse = Path(args.warehouse)
    triggers = Path(args.triggers)
    dead = Path(args.dead_letter) if args.dead_letter else triggers.with_name("dead_letters.jsonl")
    if len({warehouse.resolve(), triggers.resolve(), dead.resolve()}) < 3:
        raise UsageError("--warehouse, --triggers and --dead-letter must be three different files")
    for path in (warehouse, triggers, dead):
        path.parent.mkdir(parents=True, exist_ok=True)
    if not resuming:
        # A fresh run publishes a new warehouse: parts of an earlier run would be orphans.
        shutil.rmtree(Path(str(warehouse) + ".parts"), ignore_errors=True)
    return warehouse, triggers, dead


def run_flow(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Build and run the flow for parsed `run` arguments; return the summary."""
    from bytewax._bytewax import cli_main
    from bytewax.testing import run_main

    from flows.dataflow import FlowOptions, build_flow
    from flows.progress import ProgressDisplay
    from flows.sources import STOP, expand_inputs

    try:
        parts = tuple(expand_inputs(args.input, args.follow))
    except (FileNotFoundError, ValueError) as ex:
        raise UsageError(str(ex)) from None
    if not parts:
        raise UsageError("--input names no JSONL files (a directory must hold .jsonl or .jsonl.gz files)")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    recovery, resuming = _recovery(args)
    warehouse, triggers, dead = _prepare_outputs(args, resuming)
    opts = FlowOptions(parts, warehouse, triggers, dead, args.follow, args.snapshot_interval, args.shards)
    flow = build_flow(config, opts)
    epoch = timedelta(seconds=getattr(args, "epoch_interval", 10.0))
    started = time.monotonic()
    STOP.clear()
    previous = {sig: signal.signal(sig, _stop_reading) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ProgressDisplay() if not args.quiet else _Nothing():
            if args.workers == 1:
                run_main(flow, epoch_interval=epoch, recovery_config=recovery)
            else:
                cli_main(flow, workers_per_process=args.workers, epoch_interval=epoch, recovery_config=recovery)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    elapsed = time.monotonic() - started
    return summarize(warehouse, triggers, dead, elapsed)


def _stop_reading(signum: int, _frame: Any) -> None:
    """Ctrl-C or SIGTERM: stop reading; the flow applies what it read and publishes a final snapshot."""
    from flows.sources import STOP

    if STOP.is_set():
        raise KeyboardInterrupt  # a second Ctrl-C: give up at once
    STOP.set()
    print(f"\n{signal.Signals(signum).name}: finishing what was read (again to abort)", file=sys.stderr)


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def summarize(warehouse: Path, triggers: Path, dead: Path, elapsed: float) -> dict[str, Any]:
    """Read the published warehouse (as any analyst would) and summarise the run."""
    if not warehouse.exists():
        return {"warehouse": str(warehouse), "published": False, "elapsed_s": elapsed}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cols = [d[0] for d in con.execute("SELECT * FROM snapshots ORDER BY snapshot_id DESC LIMIT 1").description]
        last = dict(zip(cols, con.execute("SELECT * FROM snapshots ORDER BY snapshot_id DESC LIMIT 1").fetchone()))
        by_action = dict(con.execute("SELECT action, count(*) FROM triggers GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
        known = con.execute("SELECT count(*) FROM contacts WHERE user_id IS NOT NULL").fetchone()[0]
    finally:
        con.close()
    return {
        "warehouse": str(warehouse),
        "triggers_file": str(triggers),
        "dead_letter_file": str(dead),
        "published": True,
        "snapshots": last["snapshot_id"],
        "lines_read": last["lines_read"],
        "accepted": last["accepted"],
        "dead_lettered": last["dead_lettered"],
        "duplicates": last["duplicates"],
        "late": last["late"],
        "buffered": last["buffered"],
        "contacts": last["contacts"],
        "known_contacts": known,
        "triggers": last["triggers"],
        "triggers_by_action": by_action,
        "elapsed_s": elapsed,
        "lines_per_s": last["lines_read"] / elapsed if elapsed > 0 else 0.0,
    }


def print_summary(s: dict[str, Any], out=sys.stdout) -> None:
    """Print the end-of-run summary."""
    if not s.get("published"):
        print(f"no snapshot was published to {s['warehouse']} (no input was read)", file=out)
        return
    reconciles = s["lines_read"] == s["accepted"] + s["dead_lettered"] + s["duplicates"] + s["buffered"]
    print(f"lines read     {s['lines_read']:>12,}   ({'reconciles' if reconciles else 'DOES NOT RECONCILE'}: "
          "accepted + dead-lettered + duplicates)", file=out)
    print(f"accepted       {s['accepted']:>12,}", file=out)
    print(f"dead-lettered  {s['dead_lettered']:>12,}   -> {s['dead_letter_file']}", file=out)
    print(f"duplicates     {s['duplicates']:>12,}", file=out)
    print(f"late           {s['late']:>12,}   (beyond the allowed lateness, applied on arrival)", file=out)
    print(f"contacts       {s['contacts']:>12,}   ({s['known_contacts']:,} known)", file=out)
    print(f"triggers       {s['triggers']:>12,}   -> {s['triggers_file']}", file=out)
    for action, n in s["triggers_by_action"].items():
        print(f"  {action:<20} {n:>8,}", file=out)
    print(f"throughput     {s['lines_per_s']:>12,.0f} lines/s over {s['elapsed_s']:.1f} s", file=out)
    n = s["snapshots"]
    print(f"warehouse      {s['warehouse']}   ({n} snapshot{'s' * (n != 1)} published)", file=out)


def cmd_run(args: argparse.Namespace) -> int:
    """`leadstream run`."""
    config = load_config(args.config)
    summary = run_flow(config, args)
    if not args.quiet:
        print_summary(summary)
    return 0


# ---------------------------------------------------------------- segment


def add_segment(sub: argparse._SubParsersAction) -> None:
    """Register `leadstream segment`."""
    seg = sub.add_parser(
        "segment",
        help="one-time segmentation: run a segment's conditions as SQL over the warehouse",
        description="Pardot-style segmentation rule: evaluate a segment (or automation rule) of the config as "
        "one SQL query over the published warehouse and print or export the matching contacts. Windows "
        "('within 7d') end at --at, by default the newest event time in the warehouse.",
    )
    seg.add_argument("name", help="segment name (or automation rule name) from the config")
    seg.add_argument("--config", required=True, metavar="FILE", help="the TOML rules file")
    seg.add_argument("--warehouse", required=True, metavar="FILE", help="the DuckDB warehouse")
    seg.add_argument("--at", metavar="ISO", help="evaluate windows as of this instant (default: newest event)")
    seg.add_argument("--out", metavar="FILE", help="export to a .csv or .parquet file instead of printing")
    seg.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    seg.set_defaults(func=cmd_segment)


def cmd_segment(args: argparse.Namespace) -> int:
    """`leadstream segment`."""
    from engine.sql import SqlUnsupported, segment_query
    from engine.timeutil import parse_iso_ms

    config = load_config(args.config)
    found = {s.name: s.condition for s in config.segments} | {r.name: r.condition for r in config.automation_rules}
    if args.name not in found:
        raise UsageError(f"{args.config}: no segment or automation rule named {args.name!r} "
                         f"(have: {', '.join(found) or 'none'})")
    path = Path(args.warehouse)
    if not path.exists():
        raise UsageError(f"{path}: no warehouse here; create one with `leadstream run ... --warehouse {path}`")
    con = duckdb.connect(str(path), read_only=True)
    try:
        if args.at:
            now = parse_iso_ms(args.at)
        else:
            now = con.execute("SELECT epoch_ms(max(timestamp)) FROM events").fetchone()[0] or 0
        try:
            query = segment_query(found[args.name].node, now)
        except SqlUnsupported as ex:
            raise UsageError(f"{args.name}: {ex}") from None
        if args.sql:
            print(query)
            return 0
        if args.out:
            fmt = "parquet" if args.out.endswith(".parquet") else "csv, header true"
            con.execute(f"COPY ({query}) TO '{args.out}' (FORMAT {fmt})")
            n = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
            print(f"{n} contacts in {args.name} -> {args.out}", file=sys.stderr)
        else:
            rel = con.execute(query)
            cols = [d[0] for d in rel.description]
            rows = rel.fetchall()
            print("\t".join(cols))
            for row in rows:
                print("\t".join("" if v is None else str(v) for v in row))
            print(f"{len(rows)} contacts in {args.name}", file=sys.stderr)
    finally:
        con.close()
    return 0


# ---------------------------------------------------------------- demo

DEMO_QUERIES = (
    ("Contacts per lifecycle stage", "SELECT * FROM contacts_per_stage"),
    ("E-mails sent per day (first 5 days)",
     "SELECT day, triggers AS emails FROM triggers_per_action_per_day WHERE action = 'send_email' ORDER BY day LIMIT 5"),
    ("Hottest known leads",
     "SELECT c.contact_id, c.email, s.score, c.stage, c.grade FROM contacts c JOIN contact_scores s USING (contact_id) "
     "WHERE s.profile = 'default' AND c.user_id IS NOT NULL ORDER BY s.score DESC LIMIT 5"),
)


def add_demo(sub: argparse._SubParsersAction) -> None:
    """Register `leadstream demo`."""
    demo = sub.add_parser(
        "demo",
        help="generate a sample clickstream and run the example config end to end into ./demo/",
        description="Generate a synthetic clickstream, run examples/marketing.toml over it, and print where the "
        "warehouse is with three example queries.",
    )
    demo.add_argument("--dir", default="demo", metavar="DIR", help="output folder (default ./demo)")
    demo.add_argument("--events", type=int, default=200_000, metavar="N", help="events to generate (200000)")
    demo.add_argument("--contacts", type=int, default=10_000, metavar="M", help="people to simulate (10000)")
    demo.add_argument("--seed", type=int, default=42, metavar="S", help="random seed (42)")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """`leadstream demo`."""
    from .generate import GenerateOptions, write_events

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    events = folder / "events.jsonl.gz"
    print(f"generating {args.events:,} events for {args.contacts:,} people -> {events}", file=sys.stderr)
    import gzip

    with gzip.open(events, "wb", compresslevel=3) as fh:
        write_events(GenerateOptions(events=args.events, contacts=args.contacts, seed=args.seed), fh)
    run_args = argparse.Namespace(
        input=[str(events)], warehouse=str(folder / "warehouse.duckdb"), triggers=str(folder / "triggers.jsonl"),
        dead_letter=str(folder / "dead_letters.jsonl"), follow=False, workers=1, snapshot_interval=10.0,
        shards=None, quiet=False, recovery=None, epoch_interval=10.0,
    )
    print(f"running {EXAMPLE_CONFIG.name} over it", file=sys.stderr)
    summary = run_flow(load_config(EXAMPLE_CONFIG), run_args)
    print_summary(summary)
    wh = run_args.warehouse
    print(f"\nThe warehouse is {wh}. Open it read-only, e.g. in Python:\n"
          f"  import duckdb; con = duckdb.connect('{wh}', read_only=True)\n")
    con = duckdb.connect(wh, read_only=True)
    try:
        for title, sql in DEMO_QUERIES:
            print(f"-- {title}\n{sql};")
            print(con.sql(sql))
    finally:
        con.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add run, segment and demo to the CLI."""
    add_run(sub)
    add_segment(sub)
    add_demo(sub)
