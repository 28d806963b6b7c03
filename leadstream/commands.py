"""The commands that run the flow or read the warehouse: run, segment, demo."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import duckdb

from engine.config import MAX_SHARDS, Config, load_config
from flows.sqltext import scalar

from . import native
from .cluster import wait_for_peers

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "marketing.toml"


class UsageError(Exception):
    """A mistake in the command line; the message says what to do instead."""


# ---------------------------------------------------------------- run


def add_run(sub: argparse._SubParsersAction) -> None:
    """Register `leadstream run`."""
    from flows.router import CUT_EVERY_LINES

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
                     help="JSONL inputs: files (.jsonl or .jsonl.gz), directories (one partition per file), '-' for "
                     "stdin; or one Kafka topic, kafka://host:port[,host:port]/topic (one partition per Kafka "
                     "partition, each message one JSONL line; runs until stopped unless --kafka-eof)")
    run.add_argument("--warehouse", required=True, metavar="FILE", help="DuckDB file to publish snapshots to")
    run.add_argument("--triggers", required=True, metavar="FILE|URL",
                     help="JSONL file for the triggers, or kafka://host:port/topic (one message per trigger, "
                     "keyed by contact_id)")
    run.add_argument("--dead-letter", metavar="FILE|URL",
                     help="JSONL file or kafka://host:port/topic for rejected lines (default: dead_letters.jsonl "
                     "next to --triggers, or next to --warehouse when --triggers is a topic)")
    run.add_argument("--follow", action="store_true",
                     help="keep tailing the inputs for new lines and new files, like tail -F (live operation; "
                          "stop with Ctrl-C). Survives log rotation: a followed directory knows its files by "
                          "their first line, so a renamed or compressed copy is not read twice and a file "
                          "recreated under an old name is read")
    run.add_argument("--kafka-eof", action="store_true",
                     help="with Kafka input: end each partition once it has read everything the broker holds, "
                     "then finish like a file replay (backfills, tests)")
    run.add_argument("--kafka-config", action="append", default=[], metavar="KEY=VALUE",
                     help="extra librdkafka setting for every Kafka client, e.g. security.protocol=SASL_SSL "
                     "(repeatable)")
    run.add_argument("--webhook", metavar="URL",
                     help="also POST every trigger to this URL, in JSON batches with an Idempotency-Key header "
                     "of their trigger ids; retried with exponential backoff, dead-lettered (webhook_failed) "
                     "after --webhook-attempts failures")
    run.add_argument("--webhook-attempts", type=int, default=5, metavar="N", help="attempts per batch (default 5)")
    run.add_argument("--webhook-backoff", type=float, default=0.2, metavar="SECONDS",
                     help="first retry delay, doubled for each further retry up to 5 s (default 0.2)")
    run.add_argument("--webhook-batch", type=int, default=100, metavar="N", help="triggers per POST (default 100)")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="worker threads per process (default 1; scale with processes, see the README)")
    run.add_argument("--processes", type=int, default=1, metavar="N",
                     help="run as a cluster of N processes on this machine (default 1)")
    run.add_argument("--process-id", type=int, metavar="I",
                     help="multi-machine cluster: this process's index in --addresses (Bytewax's -i)")
    run.add_argument("--addresses", metavar="H:P;H:P",
                     help="multi-machine cluster: host:port of every process, ';'-separated, the same on every "
                     "machine (Bytewax's -a)")
    run.add_argument("--spawned", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--snapshot-interval", type=float, default=10.0, metavar="SECONDS",
                     help="publish a warehouse snapshot at least this often (default 10)")
    run.add_argument("--cut-every", type=int, default=CUT_EVERY_LINES, metavar="LINES",
                     help="also cut a snapshot's state after this many lines of an input (default "
                     f"{CUT_EVERY_LINES:,}; 0: every half snapshot interval only). Shards keep the contacts "
                     "they touched since the last cut live and their new rows in memory: fewer lines, less "
                     "memory, more CPU. Per process: a cluster of N processes cuts every N times as many lines")
    run.add_argument("--shards", type=int, metavar="N", help="override [settings] shards of the config")
    run.add_argument("--recovery", metavar="DIR",
                     help="Bytewax recovery directory (created and initialised when empty): after a crash, run "
                     "the same command again to resume with no lost events and no doubled effects; a later run "
                     "with the same directory continues from the saved state")
    run.add_argument("--epoch-interval", type=float, default=10.0, metavar="SECONDS",
                     help="how often state is snapshotted for recovery (default 10)")
    run.add_argument("--quiet", action="store_true", help="no progress line and no summary")
    run.set_defaults(func=cmd_run)


def _recovery(args: argparse.Namespace, init: bool = True) -> tuple[Any, bool]:
    """Return (RecoveryConfig or None, whether a previous run's state is there to resume).

    An empty directory is initialised with one partition per worker of the whole cluster,
    unless ``init`` is false (a process that is not the cluster's first: the first one, or
    the parent of spawned processes, initialises the directory).
    """
    if not getattr(args, "recovery", None):
        return None, False
    from bytewax.recovery import RecoveryConfig, init_db_dir

    folder = Path(args.recovery)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--recovery {folder}: is a file; name a folder (an empty or new one for a fresh run)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise UsageError(f"--recovery {folder}: cannot create it ({ex.strerror})") from None
    # What can be written, not what the permission bits say: the saved state is written into it
    # at every epoch, and a read-only folder failed inside the flow with a Rust traceback.
    probe = folder / f".probe.{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as ex:
        raise UsageError(f"--recovery {folder}: cannot write in it ({ex.strerror}); name a folder this user can "
                         "write, on durable storage") from None
    resuming = any(folder.iterdir())
    if resuming and not any(folder.glob("part-*.sqlite3")):
        raise UsageError(f"--recovery {folder}: holds files but no saved state (part-*.sqlite3); name an empty "
                         "or new folder for a fresh run, or the folder an earlier run saved its state in")
    if not resuming and init:
        init_db_dir(folder, max(1, args.workers) * _cluster_size(args))
    return RecoveryConfig(folder), resuming


def _check_resume(args: argparse.Namespace, config: Config, parts: tuple[str, ...], resuming: bool,
                  write: bool = True) -> None:
    """Refuse to resume a recovery directory with other shards, inputs or outputs (see leadstream/resume.py)."""
    if not getattr(args, "recovery", None):
        return
    from .resume import ResumeMismatch, check_and_record

    outputs = {"--warehouse": args.warehouse, "--triggers": args.triggers,
               "--dead-letter": str(_dead_letter_output(args))}
    try:
        check_and_record(Path(args.recovery), resuming, args.shards or config.settings.shards, parts, outputs,
                         write=write)
    except ResumeMismatch as ex:
        raise UsageError(str(ex)) from None


def _cluster_size(args: argparse.Namespace) -> int:
    if getattr(args, "addresses", None):
        return len(args.addresses.split(";"))
    return max(1, getattr(args, "processes", 1) or 1)


def _dead_letter_output(args: argparse.Namespace) -> Any:
    """--dead-letter, or by default dead_letters.jsonl beside the triggers file (or the warehouse)."""
    from flows.kafka import is_kafka_url

    if args.dead_letter:
        return args.dead_letter if is_kafka_url(args.dead_letter) else Path(args.dead_letter)
    beside = Path(args.warehouse) if is_kafka_url(args.triggers) else Path(args.triggers)
    return beside.with_name("dead_letters.jsonl")


def _outputs_apart_from_inputs(args: argparse.Namespace, outputs: dict[Path, str]) -> None:
    """Refuse an output that is an input file (it would be emptied) or inside an input directory
    (a followed one would read the run's own output back, each dead letter quoting the last)."""
    inputs = [Path(i).resolve() for i in args.input if i != "-" and "://" not in i and Path(i).exists()]
    for path, flag in outputs.items():
        where = path.resolve()
        for source in inputs:
            if where == source:
                raise UsageError(f"{flag} {path}: is an input of this run too, and writing it would empty it; "
                                 "name another file")
            if source.is_dir() and where.is_relative_to(source):
                raise UsageError(f"{flag} {path}: is inside the input directory {source}, which would read it as "
                                 "input; write outputs outside the inputs")


def _prepare_outputs(args: argparse.Namespace, resuming: bool, clean: bool = True) -> tuple[Path, Any, Any]:
    """Check the three outputs before anything is read; a fresh run (``clean``, not resuming) starts its line
    files empty and leaves an earlier run's parts to the writer's grace period."""
    from flows.kafka import check_output_topic, is_kafka_url, parse_kafka_url, same_topic

    warehouse = Path(args.warehouse)
    triggers: Any = args.triggers if is_kafka_url(args.triggers) else Path(args.triggers)
    dead = _dead_letter_output(args)
    topics = {"--triggers": triggers, "--dead-letter": dead}
    inputs = [parse_kafka_url(i) for i in args.input if is_kafka_url(i)]
    kconf = _kafka_config(args) if any(isinstance(url, str) for url in topics.values()) else {}
    for flag, url in topics.items():
        if isinstance(url, str):
            try:
                addr = parse_kafka_url(url)
                if clean:  # once per run: by the process that prepares the outputs
                    check_output_topic(addr, kconf)
                if any(same_topic(addr, source) for source in inputs):
                    # The file outputs' rule, for topics: the run would read what it writes.
                    raise ValueError(f"{flag} {url}: is the input topic of this run too, which would read its own "
                                     "output back; name another topic")
            except ValueError as ex:
                raise UsageError(str(ex)) from None
    if triggers == dead and isinstance(triggers, str):
        raise UsageError("--triggers and --dead-letter must be two different topics")
    files = [p for p in (warehouse, triggers, dead) if isinstance(p, Path)]
    if len({p.resolve() for p in files}) < len(files) or triggers == dead:
        raise UsageError("--warehouse, --triggers and --dead-letter must be three different outputs")
    flags = {warehouse: "--warehouse", triggers: "--triggers", dead: "--dead-letter"}
    _outputs_apart_from_inputs(args, {p: flags[p] for p in files})
    for path in files:
        # Found now rather than when the first line or the first snapshot is written,
        # which for the warehouse was after the whole input had been read.
        flag = flags[path]
        if path.is_dir():
            example = "warehouse.duckdb" if flag == "--warehouse" else f"{flag[2:]}.jsonl".replace("-", "_")
            raise UsageError(f"{flag} {path}: is a directory; name a file in it, such as {path / example}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"{flag} {path}: a part of {path.parent} is a file, not a folder") from None
        except OSError as ex:
            raise UsageError(f"{flag} {path}: cannot create {path.parent} ({ex.strerror})") from None
        # Named by process: a cluster's processes check the same outputs at once.
        probe = path.parent / f".{path.name}.{os.getpid()}.probe"
        try:
            probe.touch()  # what can be written, not what the permission bits say (/proc, read-only mounts)
            probe.unlink()
        except OSError as ex:
            raise UsageError(f"{flag} {path}: cannot write in {path.parent} ({ex.strerror})") from None
    if clean:
        for path in files:
            _lock_output(path, flags[path])
    if clean and not resuming:
        # A fresh run publishes a new warehouse, and an earlier run's parts become orphans. A
        # reader may still have the earlier warehouse open, whose views read those parts: they
        # go with the writer's other orphans, two minutes after they were last in use, which
        # is from now on (deleting them here broke such readers at once).
        now = time.time()
        for part in Path(str(warehouse) + ".parts").glob("*/*.parquet"):
            os.utime(part, (now, now))
        # The line files start empty now: their sinks open them only when a first line comes,
        # so a run without triggers left an earlier run's in place, or no file at all for a
        # reader to tail.
        for path in (triggers, dead):
            if isinstance(path, Path):
                path.write_bytes(b"")
    return warehouse, triggers, dead


# Open lock files of this process's outputs: held until it exits, however it exits.
_LOCKS: dict[Path, int] = {}


def _lock_output(path: Path, flag: str) -> None:
    """Hold an exclusive lock on an output for this run (a hidden ``.NAME.lock`` beside it).

    Two runs writing one output interleaved their triggers and replaced each other's
    warehouse; the second is refused, with the first one's process id. The kernel drops
    the lock when the process ends, a crash included, so a stale file never blocks.
    """
    import fcntl

    # Named by where the output really is: a symlink to another run's output is that output.
    real = path.resolve()
    lock = real.parent / f".{real.name}.lock"
    key = lock
    if key in _LOCKS:
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UsageError(f"{flag} {path}: another run (process {holder}) is writing it; wait for that run to end "
                         "or stop it, or write to another file") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _LOCKS[key] = fd


def _release_outputs() -> None:
    """Let go of the outputs' locks: the run is over (a process that ends lets go of them anyway)."""
    while _LOCKS:
        _, fd = _LOCKS.popitem()
        os.close(fd)


def _input_parts(args: argparse.Namespace) -> tuple[tuple[str, ...], str | None]:
    """The input partitions, and the Kafka URL when the input is a topic."""
    from flows.kafka import is_kafka_url, list_kafka_parts, parse_kafka_url
    from flows.sources import INPUT_SUFFIXES, expand_inputs, ignored_files

    kafka = [i for i in args.input if is_kafka_url(i)]
    if kafka:
        if len(args.input) != 1:
            raise UsageError("--input takes either one kafka:// topic or files, not both or several topics")
        try:
            return tuple(list_kafka_parts(parse_kafka_url(kafka[0]), _kafka_config(args))), kafka[0]
        except ValueError as ex:
            raise UsageError(str(ex)) from None
    if getattr(args, "kafka_eof", False):
        raise UsageError("--kafka-eof applies to a kafka:// input only")
    try:
        parts = tuple(expand_inputs(args.input, args.follow))
    except (FileNotFoundError, ValueError) as ex:
        raise UsageError(str(ex)) from None
    suffixes = ", ".join(INPUT_SUFFIXES)
    # Said once per run: spawned cluster processes read the same directories.
    for folder, names in ({} if getattr(args, "spawned", False) else ignored_files(args.input)).items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        print(f"leadstream run: --input {folder}: not reading {len(names)} file(s) whose names do not end with "
              f"{suffixes}: {shown}", file=sys.stderr)
    if args.follow and not getattr(args, "spawned", False):
        for missing in [i for i in args.input if i != "-" and not Path(i).exists()]:
            print(f"leadstream run: --input {missing}: does not exist yet; waiting for it", file=sys.stderr)
    if not parts:
        empty = [i for i in args.input if Path(i).is_dir() and not any(Path(i).iterdir())]
        if empty and not args.follow:
            raise UsageError(f"--input {empty[0]}: the directory is empty (add files, or use --follow to wait for them)")
        raise UsageError(f"--input names no JSONL files (a directory's files must end with {suffixes}; "
                         "rename them, or point --input at the files themselves)")
    return parts, None


def _follows(args: argparse.Namespace) -> bool:
    """Whether the run follows its input until it is stopped: --follow, or a topic without --kafka-eof."""
    from flows.kafka import is_kafka_url

    return bool(args.follow) or (any(is_kafka_url(i) for i in args.input) and not getattr(args, "kafka_eof", False))


def _kafka_config(args: argparse.Namespace) -> dict[str, str]:
    """The --kafka-config settings, checked by librdkafka itself for the clients the run will create."""
    from flows.kafka import check_kafka_config, is_kafka_url

    conf: dict[str, str] = {}
    for item in getattr(args, "kafka_config", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--kafka-config {item}: expected KEY=VALUE (a librdkafka setting)")
        conf[key.strip()] = value.strip()
    if conf:
        outputs = [getattr(args, "triggers", None), getattr(args, "dead_letter", None)]
        try:
            check_kafka_config(conf, consumer=any(is_kafka_url(i) for i in args.input),
                               producer=any(is_kafka_url(o) for o in outputs))
        except ValueError as ex:
            raise UsageError(f"{ex} (see librdkafka's CONFIGURATION.md for the settings and their values)") from None
    return conf


def _check_cluster_args(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    shards = getattr(args, "shards", None)
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise UsageError(f"--shards must be a whole number from 1 to {MAX_SHARDS} (default: [settings] shards of "
                         f"the config, 16 if unset); got {shards}")
    if getattr(args, "cut_every", 0) < 0:
        raise UsageError(f"--cut-every must be a number of lines, or 0 for cuts by time only; got {args.cut_every}")
    for flag, default in (("snapshot_interval", 10.0), ("epoch_interval", 10.0)):
        seconds = getattr(args, flag, default)
        # A zero, negative or NaN interval would cut (or snapshot for recovery) at every batch.
        if not (math.isfinite(seconds) and seconds > 0):
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number of seconds (default "
                             f"{default:g}); got {seconds}")
    processes = getattr(args, "processes", 1)
    pid, addresses = getattr(args, "process_id", None), getattr(args, "addresses", None)
    if processes < 1:
        raise UsageError("--processes must be at least 1")
    if (pid is None) != (addresses is None):
        raise UsageError("--process-id and --addresses go together (one process of a multi-machine cluster)")
    if pid is not None:
        if processes != 1 and not getattr(args, "spawned", False):
            raise UsageError("--processes starts a cluster on this machine; with --process-id/--addresses start "
                             "each process yourself")
        n = len(str(addresses).split(";"))
        if not 0 <= pid < n:
            raise UsageError(f"--process-id {pid}: --addresses names {n} processes (ids 0 to {n - 1})")
    if getattr(args, "webhook", None):
        from urllib.parse import urlsplit

        url = urlsplit(args.webhook)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UsageError(f"--webhook {args.webhook}: expected an http:// or https:// URL with a host, "
                             "e.g. https://hooks.example.com/leadstream")
        if args.webhook_attempts < 1 or args.webhook_batch < 1:
            raise UsageError("--webhook-attempts and --webhook-batch must be at least 1")
        if not (math.isfinite(args.webhook_backoff) and args.webhook_backoff >= 0):
            raise UsageError(f"--webhook-backoff must be a number of seconds, 0 or more; got {args.webhook_backoff}")
        try:
            url.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise UsageError(f"--webhook {args.webhook}: the port is out of range (1-65535)") from None


def run_flow(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Build and run the flow for parsed `run` arguments; return the summary.

    With ``--processes N`` this process starts N cluster processes and waits for them;
    with ``--process-id`` it is one process of a cluster. Either way the summary is read
    from the published warehouse, as any analyst would read it.
    """
    from bytewax._bytewax import cli_main
    from bytewax.testing import run_main

    from flows.dataflow import FlowOptions, build_flow
    from flows.progress import PROGRESS, ProgressDisplay
    from flows.router import CUT_EVERY_LINES
    from flows.runtime import CHECKPOINT_S, REPLAY_CHECKPOINT_S, tuned_gc
    from flows.sources import READ_TO_END, STARTED, STOP

    _check_cluster_args(args)
    parts, kafka_input = _input_parts(args)
    pid = getattr(args, "process_id", None)
    spawned = getattr(args, "spawned", False)
    if getattr(args, "processes", 1) > 1 and pid is None:
        return _run_cluster(args, config, parts)
    first = pid is None or pid == 0
    recovery, resuming = _recovery(args, init=first and not spawned)
    if not spawned:
        _check_resume(args, config, parts, resuming, write=first)
    warehouse, triggers, dead = _prepare_outputs(args, resuming, clean=first and not spawned)
    before = _lines_before(warehouse, resuming and first and not spawned)
    _say_resuming(args, before)
    follow = _follows(args)
    webhook = None
    if getattr(args, "webhook", None):
        from flows.webhook import WebhookDelivery

        webhook = WebhookDelivery(args.webhook, attempts=args.webhook_attempts, backoff_s=args.webhook_backoff,
                                  batch_size=args.webhook_batch)
    opts = FlowOptions(parts, warehouse, triggers, dead, follow, args.snapshot_interval, args.shards,
                       cut_every_lines=cut_lines(args, CUT_EVERY_LINES),
                       kafka_input=kafka_input, kafka_eof=getattr(args, "kafka_eof", False),
                       kafka_config=tuple(sorted(_kafka_config(args).items())), webhook=webhook,
                       single_process=pid is None)
    flow = build_flow(config, opts)
    epoch = timedelta(seconds=getattr(args, "epoch_interval", 10.0))
    PROGRESS.reset()
    started = time.monotonic()
    STOP.clear()
    STARTED.clear()
    READ_TO_END.clear()
    _STOPPED_BY.clear()
    previous = {sig: signal.signal(sig, _stop_reading) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tuned_gc(CHECKPOINT_S if follow else REPLAY_CHECKPOINT_S), ProgressDisplay() if not args.quiet else _Nothing():
            if pid is not None:
                with _stoppable_while_connecting():
                    wait_for_peers(args.addresses.split(";"), pid)
                    cli_main(flow, workers_per_process=args.workers, process_id=pid,
                             addresses=args.addresses.split(";"), epoch_interval=epoch, recovery_config=recovery)
            elif args.workers == 1:
                run_main(flow, epoch_interval=epoch, recovery_config=recovery)
            else:
                cli_main(flow, workers_per_process=args.workers, epoch_interval=epoch, recovery_config=recovery)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    from flows.warehouse import delete_after_run

    delete_after_run()  # the run has ended and recorded its last state: parts of erased people go
    elapsed = time.monotonic() - started
    summary = summarize(warehouse, triggers, dead, elapsed, before)
    if _STOPPED_BY and not follow and not (pid is None and READ_TO_END >= set(parts)):
        summary["stopped_by"] = signal.Signals(_STOPPED_BY[0]).name
    if webhook is not None and first:
        summary["webhook"] = {"url": args.webhook, "failed_batches": _webhook_failures(dead)}
    if pid is None:
        # One process: its workers' time by step is the whole run's (see flows/progress.py).
        summary["step_seconds"] = PROGRESS.steps()
        summary["workers"] = args.workers
        if before is not None:
            # What this run's sources read, replayed lines of the resumed epoch included: the
            # published snapshot ``before`` came from may be behind the recovery state or ahead of it.
            summary["lines_this_run"] = PROGRESS.lines
            summary["lines_per_s"] = PROGRESS.lines / elapsed if elapsed > 0 else 0.0
    return summary


def cut_lines(args: argparse.Namespace, default: int) -> int:
    """Lines of an input between two cuts by count: ``--cut-every`` per process of the cluster.

    What waits for a cut lives in the shards, and N processes each hold about 1/N of them,
    so N times the lines keep each process's share about where one process keeps its own.
    """
    lines = getattr(args, "cut_every", default)
    addresses = getattr(args, "addresses", None)
    return lines * len(addresses.split(";")) if addresses else lines


def _child_argv(args: argparse.Namespace, pid: int, addresses: str) -> list[str]:
    """The command line of one spawned cluster process: this run's flags plus its place in the cluster."""
    argv = ["run", "--config", str(args.config), "--input", *args.input, "--warehouse", str(args.warehouse),
            "--triggers", str(args.triggers), "--workers", str(args.workers),
            "--snapshot-interval", repr(args.snapshot_interval), "--epoch-interval", repr(args.epoch_interval),
            "--process-id", str(pid), "--addresses", addresses, "--spawned", "--quiet"]
    if args.dead_letter:
        argv += ["--dead-letter", str(args.dead_letter)]
    for flag in ("follow", "kafka_eof"):
        if getattr(args, flag, False):
            argv.append("--" + flag.replace("_", "-"))
    for item in getattr(args, "kafka_config", None) or []:
        argv += ["--kafka-config", item]
    if args.shards:
        argv += ["--shards", str(args.shards)]
    if getattr(args, "cut_every", None) is not None:
        argv += ["--cut-every", str(args.cut_every)]
    if args.recovery:
        argv += ["--recovery", str(args.recovery)]
    if getattr(args, "webhook", None):
        argv += ["--webhook", args.webhook, "--webhook-attempts", str(args.webhook_attempts),
                 "--webhook-backoff", repr(args.webhook_backoff), "--webhook-batch", str(args.webhook_batch)]
    return argv


def _die_with_parent() -> None:
    """In a spawned process: get SIGKILL when the parent dies, so a killed run leaves no orphans (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def wait_for_cluster(procs: list[Any], stopping: Any = lambda: False) -> list[tuple[int, int]]:
    """Wait for a cluster's processes; the first that fails ends the others. Return (index, exit status) of failures.

    Once ``stopping()`` (the parent forwarded SIGINT or SIGTERM), a process that exits with
    128 + SIGTERM has finished what it read and published, as asked: not a failure. Taken
    for one, the parent killed the others while they finished and reported a crash.
    """
    failed: list[tuple[int, int]] = []

    def finished_ok() -> tuple[int, ...]:
        return (0, 128 + signal.SIGTERM) if stopping() else (0,)

    # Every process polled each time: any() stopped at the first one still running, so a
    # later one that had failed went unseen while the first waited for it, for ever.
    while None in [p.poll() for p in procs]:
        ok = finished_ok()
        failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode is not None and p.returncode not in ok]
        if failed:
            # One process died: the cluster cannot go on. Stop the others by PID.
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.02)  # how soon the summary follows the last process
    for p in procs:
        p.wait()
    ok = finished_ok()
    return failed or [(i, p.returncode) for i, p in enumerate(procs) if p.returncode not in ok]


def _run_cluster(args: argparse.Namespace, config: Config, parts: tuple[str, ...]) -> dict[str, Any]:
    """--processes N: start N processes of one Bytewax cluster on loopback, wait, then summarise.

    This process initialises the recovery directory and the outputs once; the warehouse is
    written by whichever process owns the writer's key, so it is read only after all exit.
    """
    import socket
    import subprocess

    n = args.processes
    _, resuming = _recovery(args)
    _check_resume(args, config, parts, resuming)
    warehouse, triggers, dead = _prepare_outputs(args, resuming)
    before = _lines_before(warehouse, resuming)
    _say_resuming(args, before)
    ports = []
    holders = []
    for _ in range(n):  # hold every port until all are chosen, so no two are the same
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        holders.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in holders:
        sock.close()
    addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
    started = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-m", "leadstream.cli", *_child_argv(args, i, addresses)],
                         stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        for i in range(n)
    ]

    def forward(signum: int, _frame: Any) -> None:
        _STOPPED_BY[:] = [signum]
        print(f"\n{signal.Signals(signum).name}: asking {n} processes to finish what was read", file=sys.stderr)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    _STOPPED_BY.clear()
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed = wait_for_cluster(procs, lambda: bool(_STOPPED_BY))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        print("leadstream run: cluster process " + ", ".join(f"{i} exited with {rc}" for i, rc in failed)
              + (f"; run the same command again to resume from {args.recovery}" if args.recovery else ""),
              file=sys.stderr)
        raise SystemExit(1)
    summary = summarize(warehouse, triggers, dead, time.monotonic() - started, before)
    # A followed input (files or a topic without --kafka-eof) ends only by a signal: not early.
    if _STOPPED_BY and not _follows(args):
        summary["stopped_by"] = signal.Signals(_STOPPED_BY[0]).name
    if getattr(args, "webhook", None):
        summary["webhook"] = {"url": args.webhook, "failed_batches": _webhook_failures(dead)}
    return summary


# The signal that stopped this process's run early, if one did (the summary says so).
_STOPPED_BY: list[int] = []
_ABORTED = ("aborted: what was read since the last snapshot is not in the outputs; with --recovery DIR, the same "
            "command resumes from the last recovery snapshot")


def _stop_reading(signum: int, _frame: Any) -> None:
    """Ctrl-C or SIGTERM: stop reading; the flow applies what it read and publishes a final snapshot."""
    from flows.sources import STOP

    if STOP.is_set():
        # A second one: give up at once. Raised inside the flow, it came back as a Rust panic
        # and a traceback; the outputs are as the last recovery snapshot left them either way.
        print(f"\n{signal.Signals(signum).name} again: {_ABORTED}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(128 + signum)
    STOP.set()
    _STOPPED_BY[:] = [signum]
    print(f"\n{signal.Signals(signum).name}: finishing what was read (again to abort)", file=sys.stderr)


@contextlib.contextmanager
def _stoppable_while_connecting() -> Iterator[None]:
    """Let SIGINT and SIGTERM end a cluster process that is still waiting for its peers to connect.

    Bytewax waits for them inside Rust, where Python's signal handlers do not run, so such a
    process ignored both for ever. The signal's number still reaches a wake-up pipe, which a
    thread watches: before the flow has started (nothing read, nothing to finish) it ends the
    process at once; after, the handler that finishes what was read does its work as before.
    """
    from flows.sources import STARTED

    r, w = os.pipe()
    os.set_blocking(w, False)
    previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            try:
                data = os.read(r, 1)
            except OSError:
                return
            if not data or data[0] == 0:  # the end of the wait (written below)
                return
            if not STARTED.is_set():
                name = signal.Signals(data[0]).name
                print(f"\n{name}: stopped while waiting for the cluster's other processes to connect; nothing was "
                      "read", file=sys.stderr)
                sys.stderr.flush()
                os._exit(128 + data[0])

    watcher = threading.Thread(target=watch, name="leadstream-connect-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.write(w, b"\0")
        watcher.join(1.0)
        os.close(w)
        os.close(r)


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _say_resuming(args: argparse.Namespace, before: int | None) -> None:
    if before is not None and not args.quiet:
        print(f"leadstream run: resuming from --recovery {args.recovery}: earlier runs read {before:,} lines; "
              "this one reads on from where they stopped", file=sys.stderr)


def _lines_before(warehouse: Path, resuming: bool) -> int | None:
    """Lines a resumed run's earlier runs read, from the warehouse they published (None: not resuming)."""
    if not resuming or not warehouse.exists():
        return None if not resuming else 0
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return 0
    try:
        return int(scalar(con, "SELECT lines_read FROM snapshots ORDER BY snapshot_id DESC LIMIT 1") or 0)
    except duckdb.Error:
        return 0
    finally:
        con.close()


def summarize(warehouse: Path, triggers: Path, dead: Path, elapsed: float, before: int | None = None) -> dict[str, Any]:
    """Read the published warehouse (as any analyst would) and summarise the run.

    ``before``: for a resumed run, the lines its earlier runs read; throughput counts this run's only.
    """
    if not warehouse.exists():
        return {"warehouse": str(warehouse), "published": False, "elapsed_s": elapsed}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute("SELECT * FROM snapshots ORDER BY snapshot_id DESC LIMIT 1")
        cols = [d[0] for d in cur.description]
        newest = cur.fetchone()
        if newest is None:
            raise UsageError(f"{warehouse}: its snapshots table is empty, so leadstream did not publish it; "
                             "point --warehouse at a new path or at a warehouse an earlier run published")
        last = dict(zip(cols, newest))
        by_action = dict(con.execute("SELECT action, count(*) FROM triggers GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
        by_reason = dict(con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
        known = scalar(con, "SELECT count(*) FROM contacts WHERE user_id IS NOT NULL")
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
        "suppressed": last.get("suppressed") or 0,
        "dead_lettered": last["dead_lettered"],
        "dead_letters_by_reason": by_reason,
        "duplicates": last["duplicates"],
        "late": last["late"],
        "buffered": last["buffered"],
        "contacts": last["contacts"],
        "known_contacts": known,
        "triggers": last["triggers"],
        "triggers_by_action": by_action,
        "elapsed_s": elapsed,
        "resumed_after": before,
        "lines_per_s": (last["lines_read"] - (before or 0)) / elapsed if elapsed > 0 else 0.0,
    }


def _webhook_failures(dead: Any) -> int | None:
    """Batches the webhook gave up on, counted in the dead-letter file (None for a topic: not read back)."""
    if not isinstance(dead, Path) or not dead.exists():
        return None if not isinstance(dead, Path) else 0
    marker = b'"reason":"webhook_failed"'
    with dead.open("rb") as fh:
        return sum(1 for line in fh if marker in line)


def print_summary(s: dict[str, Any], out=sys.stdout) -> None:
    """Print the end-of-run summary."""
    if not s.get("published"):
        print(f"no snapshot was published to {s['warehouse']} (no input was read)", file=out)
        return
    reconciles = s["lines_read"] == s["accepted"] + s["dead_lettered"] + s["duplicates"] + s["buffered"]
    buffered = s["buffered"]
    print(f"lines read     {s['lines_read']:>12,}   ({'reconciles' if reconciles else 'DOES NOT RECONCILE'}: "
          "accepted + dead-lettered + duplicates" + (" + buffered)" if buffered else ")"), file=out)
    suppressed = s.get("suppressed", 0)
    print(f"accepted       {s['accepted']:>12,}" + (f"   ({suppressed:,} of them suppressed: events of contacts erased "
                                                      "on request, not stored)" if suppressed else ""), file=out)
    print(f"dead-lettered  {s['dead_lettered']:>12,}   -> {s['dead_letter_file']}", file=out)
    for reason, n in s.get("dead_letters_by_reason", {}).items():
        print(f"  {reason:<20} {n:>8,}", file=out)
    print(f"duplicates     {s['duplicates']:>12,}", file=out)
    if buffered:
        # Only a snapshot taken before the end has any: the sum shown must add up to what was read.
        print(f"buffered       {buffered:>12,}   (read, waiting for the watermark; not applied in this snapshot)", file=out)
    print(f"late           {s['late']:>12,}   (beyond the allowed lateness, applied just past the watermark)", file=out)
    print(f"contacts       {s['contacts']:>12,}   ({s['known_contacts']:,} known)", file=out)
    print(f"triggers       {s['triggers']:>12,}   -> {s['triggers_file']}", file=out)
    for action, n in s["triggers_by_action"].items():
        print(f"  {action:<20} {n:>8,}", file=out)
    hook = s.get("webhook")
    if hook:
        failed = hook["failed_batches"]
        said = ("see the dead-letter topic for webhook_failed" if failed is None else
                "every batch delivered" if failed == 0 else
                f"{failed:,} batch{'es' * (failed != 1)} NOT delivered after every retry: dead-lettered as "
                f"webhook_failed in {s['dead_letter_file']}, each with its triggers as raw; resend them from there")
        print(f"webhook        {hook['url']}: {said}", file=out)
    before = s.get("resumed_after")
    this_run = ""
    if before is not None:
        read = s.get("lines_this_run", s["lines_read"] - before)
        this_run = f" ({read:,} lines this run, resumed after {max(0, s['lines_read'] - read):,})"
    print(f"throughput     {s['lines_per_s']:>12,.0f} lines/s over {s['elapsed_s']:.1f} s{this_run}", file=out)
    print(f"modules        {native.describe()}", file=out)
    if s.get("step_seconds"):
        from flows.progress import step_shares

        workers = s.get("workers", 1)
        shares = step_shares(s["step_seconds"], s["elapsed_s"] * workers)
        text = "  ".join(f"{step} {share:.0%}" for step, _, share in shares)
        across = f" of {workers} workers' time" if workers > 1 else ""
        print(f"time by step   {text}{across}", file=out)
    n = s["snapshots"]
    print(f"warehouse      {s['warehouse']}   ({n} snapshot{'s' * (n != 1)} published)", file=out)
    if s.get("stopped_by"):
        print(f"STOPPED EARLY  by {s['stopped_by']}: the input was not read to its end; what was read is applied "
              "and published. With --recovery DIR, the same command goes on from here", file=out)


def cmd_run(args: argparse.Namespace) -> int:
    """`leadstream run`."""
    config = load_config(args.config)
    try:
        summary = run_flow(config, args)
    finally:
        _release_outputs()
    pid = getattr(args, "process_id", None)
    if pid not in (None, 0):
        # One process of a multi-machine cluster: process 0 reports for all of them.
        if not args.quiet:
            print(f"process {pid} finished; process 0 prints the summary", file=sys.stderr)
    elif not args.quiet:
        print_summary(summary)
    if summary.get("stopped_by"):
        # A replay that did not reach its end is not a success a script should take for one.
        return 128 + signal.Signals[summary["stopped_by"]].value
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


def _sql_literal(text: str) -> str:
    """``text`` as a SQL string literal (a path may hold a quote)."""
    return "'" + text.replace("'", "''") + "'"


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
    if args.sql and args.at and not path.exists():
        # The query alone needs no warehouse, only the instant its windows end at.
        try:
            print(segment_query(found[args.name].node, parse_iso_ms(args.at)))
        except (ValueError, OverflowError):
            raise UsageError(f"--at {args.at}: expected an ISO-8601 instant such as 2026-01-05T08:00:00Z") from None
        except SqlUnsupported as ex:
            raise UsageError(f"{args.name}: {ex}") from None
        return 0
    if not path.exists():
        hint = " (or, for --sql alone, give --at)" if args.sql else ""
        raise UsageError(f"{path}: no warehouse here; create one with `leadstream run ... --warehouse {path}`{hint}")
    out_format = None
    if args.out:
        out_format = {".csv": "csv, header true", ".parquet": "parquet"}.get(Path(args.out).suffix.lower())
        if out_format is None:
            raise UsageError(f"--out {args.out}: name a .csv or .parquet file (the format follows the suffix)")
    now = None
    if args.at:
        try:
            now = parse_iso_ms(args.at)
        except (ValueError, OverflowError):
            raise UsageError(f"--at {args.at}: expected an ISO-8601 instant such as 2026-01-05T08:00:00Z") from None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as ex:
        raise UsageError(f"{path}: not a DuckDB warehouse that leadstream wrote ({str(ex).splitlines()[0]})") from None
    try:
        if not scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'contacts'"):
            raise UsageError(f"{path}: a DuckDB file, but not a leadstream warehouse (it has no contacts table)")
        built_with = scalar(con, "SELECT config FROM snapshots ORDER BY snapshot_id DESC LIMIT 1")
        if built_with is not None and built_with != config.fingerprint:
            # Scores, stages and segments in the warehouse follow the rules of the run that wrote it.
            print(f"leadstream segment: warning: {path} was written with other rules than {args.config} "
                  f"(config fingerprint {built_with}, this file's {config.fingerprint}); the contact state "
                  "it queries follows the rules of that run", file=sys.stderr)
        if now is None:
            now = scalar(con, "SELECT epoch_ms(max(timestamp)) FROM events") or 0
        try:
            query = segment_query(found[args.name].node, now)
        except SqlUnsupported as ex:
            raise UsageError(f"{args.name}: {ex}") from None
        if args.sql:
            print(query)
            return 0
        if args.out:
            out = Path(args.out)
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as ex:
                raise UsageError(f"--out {out}: cannot create {out.parent} ({ex.strerror or 'a part of it is a file'})") from None
            con.execute(f"COPY ({query}) TO {_sql_literal(str(out))} (FORMAT {out_format})")
            n = scalar(con, f"SELECT count(*) FROM ({query})")
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
    ("E-mails sent per day (first 5 days; without an address, a send_email cannot be sent)",
     "SELECT day, with_email AS emails, triggers - with_email AS no_address FROM triggers_per_action_per_day "
     "WHERE action = 'send_email' ORDER BY day LIMIT 5"),
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
    from .generate import GenerateOptions, check_options, write_events

    options = GenerateOptions(events=args.events, contacts=args.contacts, seed=args.seed)
    try:
        check_options(options)
    except ValueError as ex:
        raise UsageError(str(ex)) from None
    folder = Path(args.dir)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--dir {folder}: is a file; name a folder for the demo's input and outputs")
    folder.mkdir(parents=True, exist_ok=True)
    events = folder / "events.jsonl.gz"
    print(f"generating {args.events:,} events for {args.contacts:,} people -> {events}", file=sys.stderr)
    import gzip

    with gzip.open(events, "wb", compresslevel=3) as fh:
        write_events(options, fh)
    run_args = argparse.Namespace(
        input=[str(events)], warehouse=str(folder / "warehouse.duckdb"), triggers=str(folder / "triggers.jsonl"),
        dead_letter=str(folder / "dead_letters.jsonl"), follow=False, workers=1, snapshot_interval=10.0,
        shards=None, quiet=False, recovery=None, epoch_interval=10.0,
    )
    print(f"running {EXAMPLE_CONFIG.name} over it", file=sys.stderr)
    try:
        summary = run_flow(load_config(EXAMPLE_CONFIG), run_args)
    finally:
        _release_outputs()
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
