"""Compare two versions of leadstream on one workload: paired CPU time, and whether outputs stay identical.

    python -m benchmarks.ab [A] [B] [--workload standard] [--lines 100000] [--rounds 12]
    python -m benchmarks.ab HEAD~1 HEAD --instructions

A and B are git revisions, or ``.`` for the working tree (the defaults: A is ``HEAD``,
B is ``.``, so a bare ``python -m benchmarks.ab`` measures the uncommitted change).

Why not two `make bench` runs: this machine's speed drifts by up to 30 % within an hour
(benchmarks/notes.md, item 0), so runs one after the other compare the machine's moods as
much as the code. Here both versions run *at the same time*, each pinned to a core of its
own, and they swap cores every round (after a warm-up round, not counted: the first runs after
an export or a build read freshly written files): drift and neighbours slow both alike. A/A runs (the
same code on both sides) still differed by a median of 2.6 % over 12 rounds, so a change
smaller than about 3 % does not show in time. ``--instructions`` counts it instead, with
callgrind over the stage functions and a fixed hash seed (A/A: 6 thousand apart in 1.36
billion); valgrind and the compiled modules are needed. Fewer instructions are not always
less time (notes item 20: a newer mypyc ran 5 % fewer and was no faster), so a change is
shown in time before it is called faster.

The last round's outputs are compared: sorted trigger lines, sorted dead letters and every
warehouse table and view but ``snapshots`` (wall-clock columns) must be identical on both
sides. The exit status is 1 when they are not, so a refactoring can be checked as well as timed.

Revisions are exported with their compiled modules into ``leadstream-ab/`` in the system's
temporary folder (about 6 MB each) and reused; delete that folder to free the space. Inputs
and outputs stay in ``benchmarks/scratch/ab/``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / "scratch" / "ab"  # inputs and outputs
# Exported revisions live outside the repository: inside it, mypy would take the folders
# above an export for packages and compile its modules under the wrong names.
TREES = Path(tempfile.gettempdir()) / "leadstream-ab"
WORKTREE = "."

# The functions the stages call per batch (compiled names): what `--instructions` counts, so
# that start-up, Bytewax and the snapshot builds, which vary from run to run, stay out.
STAGE_FUNCTIONS = (
    "router___Router___route", "identity___IdentityShard___receive", "identity___IdentityShard___advance",
    "identity___IdentityShard___take_changes", "contacts___ContactShard___receive",
    "contacts___ContactShard___advance", "contacts___ContactShard___take_changes", "rows___contact_row",
    "rows___export_tables", "rows___trigger_lines", "rows___EventColumns___extend", "rows___TriggerColumns___extend",
)


@dataclass
class Side:
    """One version under comparison: its label, revision and source tree."""

    label: str
    rev: str
    root: Path
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    instructions: int | None = None


class AbError(Exception):
    """A comparison that cannot run; the message says what to do."""


def _git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise AbError(f"git {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout.strip()


def checkout(rev: str, trees: Path | None = None) -> Path:
    """The source tree of a revision: the working tree for ``.``, else an export cached under ``trees``."""
    if rev == WORKTREE:
        return ROOT
    trees = trees or TREES
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = trees / sha[:12]
    if not (tree / ".exported").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        blob = subprocess.run(["git", "archive", "--format=tar", sha], cwd=ROOT, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=BytesIO(blob)) as tar:
            # The safe filter where this Python has it (3.11.4 and later).
            safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tree, **safe)
        (tree / ".exported").write_text(sha + "\n")
    return tree


def prepare(side: Side, pure: bool) -> str:
    """Compile a side's hot modules unless they already match its sources; return how it will run."""
    env = _env(side.root, pure)
    # Judged by where the engine was imported from, not by the manifest alone.
    code = ("from leadstream import native; import engine.engine as e; print(native.describe()); "
            "raise SystemExit(3 if e.__file__.endswith('.py') else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=side.root, env=env, capture_output=True, text=True)
    if res.returncode == 3 and not pure:
        build = subprocess.run([sys.executable, "-m", "leadstream.cli", "native", "build"], cwd=side.root, env=env,
                               capture_output=True, text=True)
        if build.returncode != 0:
            raise AbError(f"{side.label} ({side.rev}): the compiled modules did not build:\n{build.stderr.strip()}")
        if side.root != ROOT:
            shutil.rmtree(side.root / ".mypy_cache", ignore_errors=True)  # 16 MB an export never uses again
        res = subprocess.run([sys.executable, "-c", code], cwd=side.root, env=env, capture_output=True, text=True)
        if res.returncode == 3:
            raise AbError(f"{side.label} ({side.rev}): built, but the compiled modules are not in use: {res.stdout.strip()}")
    if res.returncode not in (0, 3):
        raise AbError(f"{side.label} ({side.rev}) does not start: {res.stderr.strip()[-2000:]}")
    return res.stdout.strip()


def _env(root: Path, pure: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LEADSTREAM_PURE"}
    env["PYTHONPATH"] = str(root)  # ahead of the installed (editable) copy
    if pure:
        env["LEADSTREAM_PURE"] = "1"
    return env


def input_prefix(workload: str, lines: int, work: Path | None = None) -> Path:
    """The first ``lines`` lines of a benchmark workload (generated with its fixed seed if missing)."""
    from .workloads import ensure_data, workloads

    work = work or WORK
    known = workloads(quick=False)
    if workload not in known:
        raise AbError(f"unknown workload {workload!r} (expected one of {', '.join(known)})")
    source, _ = ensure_data(known[workload], log=lambda msg: print(msg, file=sys.stderr))
    out = work / f"{source.stem}-first-{lines}.jsonl"
    if not out.exists():
        work.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        with source.open("rb") as src, tmp.open("wb") as dst:
            for n, line in enumerate(src):
                if n >= lines:
                    break
                dst.write(line)
        tmp.replace(out)
    return out


def _run_args(config: Path, data: Path, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["-m", "leadstream.cli", "run", "--config", str(config), "--input", str(data),
            "--warehouse", str(out / "warehouse.duckdb"), "--triggers", str(out / "triggers.jsonl"),
            "--dead-letter", str(out / "dead_letters.jsonl"), "--quiet", *extra]


def _fresh(out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def run_round(sides: list[Side], config: Path, data: Path, work: Path, cores: list[int], pure: bool) -> None:
    """Run both sides at once, each pinned to its core; append their CPU and wall seconds."""
    procs = []
    for side, core in zip(sides, cores):
        out = _fresh(work / f"out-{side.label}")
        start = time.perf_counter()
        with (out / "stderr.txt").open("wb") as err:  # a file, not a pipe nobody reads until the end
            proc = subprocess.Popen([sys.executable, *_run_args(config, data, out)], cwd=out,
                                    env=_env(side.root, pure), stdout=subprocess.DEVNULL, stderr=err,
                                    preexec_fn=(lambda c=core: os.sched_setaffinity(0, {c})) if core >= 0 else None)
        procs.append((side, proc, start, out))
    failed = []
    for side, proc, start, out in procs:  # every child is waited for, also after one failed
        # wait4: the CPU of this child alone (its threads included), not of every child so far.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            tail = (out / "stderr.txt").read_text(errors="replace").strip()[-3000:]
            failed.append(f"{side.label} ({side.rev}) exited {proc.returncode}:\n{tail}")
        side.wall.append(time.perf_counter() - start)
        side.cpu.append(usage.ru_utime + usage.ru_stime)
    if failed:
        raise AbError("\n".join(failed))


def _rows(path: Path) -> list[bytes]:
    return sorted(path.read_bytes().splitlines()) if path.exists() else []


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two runs' outputs: trigger lines, dead letters, warehouse tables (not ``snapshots``)."""
    import duckdb

    out = []
    for name in ("triggers.jsonl", "dead_letters.jsonl"):
        ra, rb = _rows(a / name), _rows(b / name)
        if ra != rb:
            out.append(f"{name}: {len(ra):,} against {len(rb):,} lines, {len(set(ra) ^ set(rb)):,} not on both sides")
    cons = [duckdb.connect(str(p / "warehouse.duckdb"), read_only=True) for p in (a, b)]
    try:
        names = [{t for (t,) in c.execute("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = 'main'").fetchall()} for c in cons]
        for table in sorted(names[0] | names[1]):
            if table == "snapshots":
                continue
            if table not in names[0] or table not in names[1]:
                out.append(f"table {table}: only in {'A' if table in names[0] else 'B'}")
                continue
            ta, tb = (c.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall() for c in cons)
            if ta != tb:
                out.append(f"table {table}: {len(ta):,} against {len(tb):,} rows, "
                           f"{len(set(map(repr, ta)) ^ set(map(repr, tb))):,} not on both sides")
    finally:
        for c in cons:
            c.close()
    return out


def count_instructions(side: Side, config: Path, data: Path, work: Path) -> int:
    """Instructions executed in the stage functions over one run, under callgrind (exact, repeatable)."""
    if shutil.which("valgrind") is None:
        raise AbError("--instructions needs valgrind (apt-get install valgrind)")
    out = _fresh(work / f"cg-{side.label}")
    cg_file = out / "callgrind.out"
    toggles = [f"--toggle-collect=CPyDef_{name}" for name in STAGE_FUNCTIONS]
    # Cuts by line count only: cuts by time would fall elsewhere in a run 50x slower.
    args = _run_args(config, data, out, ("--snapshot-interval", "100000"))
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_file}", "--collect-atstart=no", *toggles,
           sys.executable, *args]
    # A fixed string hash seed: set and dict orders, and with them the paths taken, repeat.
    env = {**_env(side.root, False), "PYTHONHASHSEED": "0"}
    res = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise AbError(f"{side.label} ({side.rev}) under callgrind exited {res.returncode}:\n{res.stderr.strip()[-2000:]}")
    match = re.search(r"^totals:\s*(\d+)", cg_file.read_text(errors="replace"), re.MULTILINE)
    total = int(match.group(1)) if match else 0
    if not total:
        raise AbError(f"{side.label} ({side.rev}): callgrind saw none of the stage functions; "
                      "are the compiled modules in use (not LEADSTREAM_PURE)?")
    return total


def summary(a: Side, b: Side) -> dict[str, Any]:
    """Medians, the median paired difference of CPU seconds (B against A, in %) and rounds won."""
    pairs = list(zip(a.cpu, b.cpu))
    diffs = [(y - x) / x * 100 for x, y in pairs]
    out: dict[str, Any] = {
        "rounds": len(pairs),
        "cpu_median": (statistics.median(a.cpu), statistics.median(b.cpu)),
        "wall_median": (statistics.median(a.wall), statistics.median(b.wall)),
        "median_change_pct": statistics.median(diffs),
        "b_faster_rounds": sum(d < 0 for d in diffs),
    }
    if a.instructions and b.instructions:
        out["instructions_change_pct"] = (b.instructions - a.instructions) / a.instructions * 100
    return out


NOISE_PCT = 3.0  # A/A rounds on this machine: a median of 2.6 % between identical code
MIN_ROUNDS = 6  # below this, a median says little about a difference of a few percent


def verdict(s: dict[str, Any]) -> str:
    """One sentence on the CPU time, honest about this machine's noise."""
    change, faster, n = s["median_change_pct"], s["b_faster_rounds"], s["rounds"]
    if n < MIN_ROUNDS:
        return (f"B against A: {change:+.1f} % of CPU time over only {n} round{'s' if n > 1 else ''}, too few to tell "
                f"from the noise (use --rounds {MIN_ROUNDS * 2})")
    if abs(change) < NOISE_PCT:
        return (f"B's CPU time is within the noise of A's ({change:+.1f} %, B faster in {faster} of {n} rounds; "
                f"identical code differs by up to about {NOISE_PCT:.0f} %)")
    word = "less" if change < 0 else "more"
    return f"B takes {abs(change):.1f} % {word} CPU time than A (median of paired rounds; B faster in {faster} of {n})"


def report(a: Side, b: Side, s: dict[str, Any], diffs: list[str], how: dict[str, str]) -> str:
    """The comparison as text."""
    lines = [f"A = {a.rev} ({how[a.label]})", f"B = {b.rev} ({how[b.label]})", "",
             "round  A cpu s  B cpu s  B against A"]
    for i, (x, y) in enumerate(zip(a.cpu, b.cpu), 1):
        lines.append(f"{i:5d}  {x:7.2f}  {y:7.2f}  {(y - x) / x * 100:+10.1f} %")
    lines += ["", f"median CPU  A {s['cpu_median'][0]:.2f} s, B {s['cpu_median'][1]:.2f} s; "
                  f"median wall A {s['wall_median'][0]:.2f} s, B {s['wall_median'][1]:.2f} s",
              verdict(s)]
    if "instructions_change_pct" in s:
        lines.append(f"instructions in the stage functions: A {a.instructions:,}, B {b.instructions:,} "
                     f"({s['instructions_change_pct']:+.2f} %)")
    lines.append("outputs: identical (triggers, dead letters, warehouse tables)" if not diffs
                 else "outputs DIFFER:\n  " + "\n  ".join(diffs))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.ab``."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=doc.split("\n\n")[0],
                                epilog=doc.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", nargs="?", default="HEAD", help="revision A (default HEAD; '.' is the working tree)")
    p.add_argument("b", nargs="?", default=WORKTREE, help="revision B (default '.', the working tree)")
    p.add_argument("--workload", default="standard", help="benchmark workload whose first lines are replayed "
                                                          "(default standard)")
    p.add_argument("--lines", type=int, default=100_000, help="lines of the workload to replay (default 100,000)")
    p.add_argument("--input", type=Path, help="replay this JSONL file (all of it) instead of a workload")
    p.add_argument("--rounds", type=int, default=12,
                   help="rounds of both sides at once (default 12), after one warm-up round that is not counted")
    p.add_argument("--config", type=Path, default=ROOT / "examples" / "marketing.toml",
                   help="rules file (default examples/marketing.toml)")
    p.add_argument("--pure", action="store_true", help="run both sides as Python sources (LEADSTREAM_PURE=1)")
    p.add_argument("--instructions", action="store_true",
                   help="also count instructions in the stage functions under callgrind (one slow run a side)")
    args = p.parse_args(argv)
    try:
        if args.lines <= 0 or args.rounds <= 0:
            raise AbError(f"--lines and --rounds must be above zero, got {args.lines} and {args.rounds}")
        if args.instructions and args.pure:
            raise AbError("--instructions counts the compiled stage functions; drop --pure")
        if not args.config.is_file():
            raise AbError(f"no rules file at {args.config}")
        if args.input is not None and not args.input.is_file():
            raise AbError(f"no input file at {args.input}")
        sides = [Side("A", args.a, checkout(args.a)), Side("B", args.b, checkout(args.b))]
        how = {s.label: prepare(s, args.pure) for s in sides}
        data = args.input.resolve() if args.input is not None else input_prefix(args.workload, args.lines)
        what = args.input.name if args.input is not None else f"{args.lines:,} lines of {args.workload}"
        cores = sorted(os.sched_getaffinity(0))
        print(f"A = {args.a}, B = {args.b}: {args.rounds} rounds of {what}, "
              + ("both at once, pinned to cores {} and {}".format(*cores[:2]) if len(cores) > 1
                 else "one after the other (one core)"), file=sys.stderr)
        # Round 0 warms up and is not counted: the first runs after an export or a build read
        # freshly written files and write bytecode caches.
        for r in range(args.rounds + 1):
            pair = cores[:2] if r % 2 == 0 else cores[1::-1]
            if len(cores) > 1:
                run_round(sides, args.config.resolve(), data, WORK, pair, args.pure)
            else:  # one core: one after the other, alternating who goes first
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    run_round([side], args.config.resolve(), data, WORK, [-1], args.pure)
            if r == 0:
                for side in sides:
                    del side.cpu[:], side.wall[:]
                print("  warm-up round done (not counted)", file=sys.stderr)
                continue
            print(f"  round {r}: A {sides[0].cpu[-1]:.2f} s, B {sides[1].cpu[-1]:.2f} s of CPU", file=sys.stderr)
        diffs = differences(WORK / "out-A", WORK / "out-B")
        if args.instructions:
            for side in sides:
                side.instructions = count_instructions(side, args.config.resolve(), data, WORK)
        print(report(sides[0], sides[1], summary(*sides), diffs, how))
        return 1 if diffs else 0
    except AbError as ex:
        print(f"benchmarks.ab: {ex}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
