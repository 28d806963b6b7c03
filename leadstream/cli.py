"""The ``leadstream`` command: check configs, generate clickstreams, run the flow, query segments, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import ConfigError

from .commands import UsageError

EPILOG = """\
examples:
  leadstream check --config examples/marketing.toml
  leadstream generate --events 100000 --contacts 5000 --seed 7 --out events.jsonl
  leadstream run --config examples/marketing.toml --input events.jsonl --warehouse out/w.duckdb --triggers out/t.jsonl
  leadstream segment pricing_interest --config examples/marketing.toml --warehouse out/warehouse.duckdb
  leadstream demo

Exit codes: 0 success, 1 runtime failure, 2 usage or config error.
"""


def _check(args: argparse.Namespace) -> int:
    from engine.config import load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as ex:
        for line in ex.problems:
            print(line, file=sys.stderr)
        n = len(ex.problems)
        print(f"{args.config}: {n} problem{'s' * (n != 1)}; fix them and run `leadstream check` again", file=sys.stderr)
        return 2
    profiles = ", ".join(f"{name} ({len(p.rules)} rules)" for name, p in cfg.profiles.items())
    print(f"{args.config}: OK")
    print(f"  scoring profiles:   {profiles}")
    print(f"  grade rules:        {len(cfg.grade.rules)}")
    print(f"  stages:             {', '.join(cfg.stages.names)} (on score.{cfg.stages.profile})")
    print(f"  segments:           {', '.join(s.name for s in cfg.segments) or '-'}")
    print(f"  completion actions: {', '.join(c.name for c in cfg.completion_actions) or '-'}")
    print(f"  automation rules:   {', '.join(r.name for r in cfg.automation_rules) or '-'}")
    print(f"  count windows:      {len(cfg.windows)}")
    print(f"  workflows:          {', '.join(f'{w.name} ({len(w.program)} steps)' for w in cfg.workflows) or '-'}")
    consent = cfg.privacy.consent_category
    print(f"  privacy:            erasure on track {cfg.privacy.deletion_event!r}; "
          + (f"anonymous events need consent {consent!r}" if consent else "no consent required"))
    rules = sum(len(p.rules) for p in cfg.profiles.values()) + len(cfg.segments) + len(cfg.completion_actions) \
        + len(cfg.automation_rules) + len(cfg.workflows) + len(cfg.grade.rules)
    if not rules:
        print("  note: no scoring rules, segments, actions or workflows: a run keeps contacts and the warehouse "
              "but fires no triggers (examples/marketing.toml shows each kind)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .generate import GenerateOptions, check_options, write_events

    opts = GenerateOptions(
        events=args.events,
        contacts=args.contacts,
        seed=args.seed,
        malformed_share=args.malformed_share,
        duplicate_share=args.duplicate_share,
        disorder_seconds=args.disorder,
        late_share=args.late_share,
        bot_share=args.bot_share,
        devices_per_user=args.devices_per_user,
    )
    try:
        check_options(opts)
    except ValueError as ex:
        raise UsageError(str(ex)) from None
    if args.out == "-":
        stats = write_events(opts, sys.stdout.buffer)
    else:
        import os

        out = Path(args.out)
        if out.is_dir():
            raise UsageError(f"--out {out}: is a directory; name a file such as {out / 'events.jsonl'}")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as ex:
            raise UsageError(f"--out {out}: cannot create {out.parent} ({ex.strerror or 'a part of it is a file'})") from None
        # Written beside and renamed at the end: an interrupted run leaves an earlier file whole.
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            if out.suffix == ".gz":
                import gzip

                with gzip.open(tmp, "wb", compresslevel=5) as fh:
                    stats = write_events(opts, fh)
            else:
                with tmp.open("wb") as fh:
                    stats = write_events(opts, fh)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    print(
        f"wrote {stats.lines} lines to {args.out}: {stats.people} people, {stats.identified} identified, "
        f"{stats.malformed} malformed, {stats.duplicates} duplicates, {stats.late} late",
        file=sys.stderr,
    )
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leadstream")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand and its help."""
    parser = argparse.ArgumentParser(
        prog="leadstream",
        description="Real-time marketing automation over Segment-spec clickstreams: lead scores, "
        "lifecycle stages, identity stitching, dynamic segments and triggers, with a DuckDB warehouse.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"leadstream {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check", help="validate a rules config and summarise it",
                           description="Validate a TOML rules config. Every problem names the file, the key "
                           "path and what was expected; the exit code is 2 when there is any.")
    check.add_argument("--config", required=True, metavar="FILE", help="the TOML rules file")
    check.set_defaults(func=_check)

    gen = sub.add_parser("generate", help="write a synthetic Segment-spec clickstream",
                         description="Write a realistic synthetic clickstream (JSONL, or gzip'd with a .gz name): "
                         "visits and campaigns, multi-device identifies, e-mail and webinar events, carts and "
                         "orders, a small share of malformed lines and bounded timestamp disorder. The same "
                         "options give the same bytes.")
    gen.add_argument("--events", type=int, default=10_000, metavar="N", help="lines to write (default 10000)")
    gen.add_argument("--contacts", type=int, default=1_000, metavar="M", help="distinct people (default 1000)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    gen.add_argument("--out", required=True, metavar="FILE", help="output file, '-' for stdout; .gz compresses")
    gen.add_argument("--malformed-share", type=float, default=0.005, metavar="F", help="share of bad lines (0.005)")
    gen.add_argument("--duplicate-share", type=float, default=0.002, metavar="F", help="share of resent lines (0.002)")
    gen.add_argument("--disorder", type=float, default=2.0, metavar="SECONDS", help="max timestamp disorder (2.0)")
    gen.add_argument("--late-share", type=float, default=0.0, metavar="F",
                     help="share of events written far beyond the allowed lateness (0)")
    gen.add_argument("--bot-share", type=float, default=0.0, metavar="F", help="share of events from one bot id (0)")
    gen.add_argument("--devices-per-user", type=int, default=3, metavar="N", help="max devices per person (3)")
    gen.set_defaults(func=_generate)

    nat = sub.add_parser("native", help="compile the hot modules with mypyc, or say whether runs use them",
                         description="The engine and the flow's per-event modules run about 1.3-1.4x faster "
                         "compiled with mypyc. `make` builds them into .native/; a run uses them only while "
                         "they match the sources (LEADSTREAM_PURE=1 turns them off).")
    nat.add_argument("action", choices=("build", "status"), nargs="?", default="status",
                     help="build: compile into .native/ (needs a C compiler and mypy); "
                          "status: say whether runs use the compiled modules (default)")
    nat.set_defaults(func=_native)

    _add_flow_commands(sub)
    return parser


def _native(args: argparse.Namespace) -> int:
    from . import native

    if args.action == "build":
        return native.build()
    print(native.describe())
    return 0


def _add_flow_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands that run the flow or read the warehouse."""
    from . import commands

    commands.register(sub)


def _root_cause(ex: BaseException) -> str:
    """The innermost exception of a chain (Bytewax wraps a step's error in its own), as one line."""
    seen = set()
    while id(ex) not in seen:
        seen.add(id(ex))
        inner = ex.__cause__ or ex.__context__
        if inner is None:
            break
        ex = inner
    text = str(ex).strip().splitlines()
    return f"{type(ex).__name__}: {text[-1] if text else ''}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``leadstream`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as ex:
        for line in ex.problems:
            print(line, file=sys.stderr)
        print("fix the config (check it with `leadstream check --config FILE`) and run again", file=sys.stderr)
        return 2
    except UsageError as ex:
        print(f"leadstream {args.command}: {ex}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        said = ("interrupted: what was read since the last snapshot is not in the outputs; with --recovery DIR, "
                "the same command resumes from the last recovery snapshot") if args.command == "run" else "interrupted"
        print(said, file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`leadstream segment ... | head`): what it
        # wanted, it has. Python would still flush stdout at exit and complain again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a program that SIGPIPE ended
    except BaseException as ex:  # noqa: BLE001 - a run that fails says what to do, after the traceback
        # BaseException: Bytewax's Rust panics (pyo3's PanicException) are not Exceptions.
        if args.command != "run" or isinstance(ex, (SystemExit, GeneratorExit)):
            raise
        import traceback

        traceback.print_exc()
        print(f"leadstream run: the run failed: {_root_cause(ex)}\nWhat was read since the last recovery snapshot is "
              "not in the outputs. Fix the cause, then run the same command again: with --recovery DIR it resumes "
              "from that snapshot, without it it starts over", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
