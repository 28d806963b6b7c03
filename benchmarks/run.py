"""leadstream's benchmark harness: `python -m benchmarks.run` (`make bench`).

Generates the workloads (fixed seeds, cached under benchmarks/data/), measures every
figure next to its reference in the same run, prints the targets with pass/miss and
writes benchmarks/results/LATEST.md and LATEST.json. A complete full run also adds its
headline figures to benchmarks/results/history.jsonl (benchmarks/history.py), and
LATEST.md shows the newest runs beside each other.

The whole run keeps to a time budget (default 14 minutes, `--budget`): steps run in a
fixed order and the last one, the `scale` workload, gets whatever time is left; when
that is not enough to read all of it, it is stopped cleanly (SIGINT: leadstream applies
what it read and publishes a final snapshot) and the report says how far it got. With
time left after it, `standard` runs once more with 1 and then 2 processes, and the
2-process target is judged on both pairs (see ``second_pair``).
`--quick` runs small sizes as a smoke test; `--only a,b` runs some steps.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RECENT_RUNS = 10  # rows of the run history LATEST.md shows
WORK = HERE / "scratch"
PEER_SEMANTICS = HERE / "peers" / "semantics.toml"  # the peers' semantics as a leadstream config

STEPS = ("parse", "null", "standard", "standard_2p", "peer_semantics", "duckdb", "pathway", "hot_key", "merge_storm",
         "many_rules", "late_events", "latency", "scale")
BENCH_PACKAGES = ("psutil", "pyinstrument", "py-spy")
SPY_HZ = 50


# ---------------------------------------------------------------------------- helpers


class Clock:
    """The run's time budget."""

    def __init__(self, budget_s: float) -> None:
        self.started = time.perf_counter()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def log(msg: str) -> None:
    print(msg, flush=True)


def rel(path: Path | str) -> str:
    """A path as the report shows it: relative to the repo (never this machine's absolute path)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return Path(path).name


def ensure_bench_packages() -> dict[str, str]:
    """psutil (RSS), pyinstrument and py-spy (profiles): installed here on demand, never runtime deps."""
    import importlib.metadata as md

    missing = []
    for pkg in BENCH_PACKAGES:
        try:
            md.version(pkg)
        except md.PackageNotFoundError:
            missing.append(pkg)
    if missing:
        log(f"installing benchmark-only packages into the current venv: {', '.join(missing)}")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               *missing], capture_output=True, text=True)
        if proc.returncode != 0:
            log(f"  could not install {missing}: {proc.stderr.strip().splitlines()[-1:]}")
    out = {}
    for pkg in BENCH_PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def machine(bench_pkgs: dict[str, str], pathway_version: str | None) -> dict[str, Any]:
    import importlib.metadata as md

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for pkg in ("bytewax", "duckdb", "orjson", "pyarrow", "polars"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "missing"
    versions.update(bench_pkgs)
    versions["pathway (peer venv)"] = pathway_version or "not installed"
    git: dict[str, Any] = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip()
        # The previous report in benchmarks/results/ is what this run replaces, not a change to
        # what it measures: left out, so a run right after an uncommitted report reads "clean".
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        git["uncommitted_changes"] = len(dirty.splitlines())
    except OSError:
        pass
    from leadstream import native

    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram_gib, "os": platform.platform(),
            "python": platform.python_version(), "packages": versions, "git": git,
            "modules": native.status()[1],  # what the `leadstream run` child processes use
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")}


class RssSampler(threading.Thread):
    """Peak RSS of a process tree (sum over the process and its descendants), sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.peak_single = 0
        self.cpu: dict[int, float] = {}  # pid -> last seen user+system CPU seconds
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.wait(0.2):
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
                try:
                    ct = p.cpu_times()
                    self.cpu[p.pid] = ct.user + ct.system
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)


def _system_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (all cores)."""
    try:
        import psutil

        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    except Exception:
        return 0.0


def warehouse_summary(path: Path) -> dict[str, Any]:
    import duckdb

    if not path.exists():
        return {}
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute("SELECT * FROM snapshots ORDER BY snapshot_id DESC LIMIT 1")
        cols = [d[0] for d in cur.description]
        row = cur.fetchone()
        last = dict(zip(cols, row)) if row else {}
        taken = [r[0] for r in con.execute("SELECT taken_at FROM snapshots ORDER BY snapshot_id").fetchall()]
        n = len(taken)
    finally:
        con.close()
    gaps = [(b - a).total_seconds() for a, b in zip(taken, taken[1:])]
    return {k: last.get(k) for k in ("lines_read", "accepted", "dead_lettered", "duplicates", "late", "buffered",
                                     "contacts", "triggers")} | {
        "snapshots": n, "snapshot_gap_s_mean": sum(gaps) / len(gaps) if gaps else None}


def leadstream_run(name: str, data: Path, config: Path, work: Path, processes: int = 1, profile: bool = False,
                   timeout_s: float | None = None) -> dict[str, Any]:
    """Run `leadstream run` on one file through benchmarks.runner; return its figures."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    stats = out / "runner.json"
    wh = out / "warehouse.duckdb"
    cmd = [sys.executable, "-m", "benchmarks.runner", str(stats), "--", "run", "--config", str(config),
           "--input", str(data), "--warehouse", str(wh), "--triggers", str(out / "triggers.jsonl"),
           "--dead-letter", str(out / "dead_letters.jsonl"), "--quiet"]
    if processes > 1:
        cmd[cmd.index("--quiet"):cmd.index("--quiet")] = ["--processes", str(processes)]
    sys_cpu0 = _system_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=open(out / "stdout.txt", "wb"),
                            stderr=open(out / "stderr.txt", "wb"))
    sampler = RssSampler(proc.pid)
    sampler.start()
    spy = None
    spy_out = out / "py-spy.txt"
    if profile:
        spy_bin = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy_bin:
            spy = subprocess.Popen([spy_bin, "record", "--pid", str(proc.pid), "--nonblocking", "--rate", str(SPY_HZ),
                                    "--format", "raw", "--output", str(spy_out)],
                                   stdout=subprocess.DEVNULL, stderr=open(out / "py-spy.log", "wb"))
    truncated = False
    while True:
        try:
            proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            pass
        if timeout_s is not None and not truncated and time.perf_counter() - started > timeout_s:
            truncated = True
            proc.send_signal(signal.SIGINT)  # leadstream: stop reading, apply what was read, final snapshot
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            break
    wall = time.perf_counter() - started
    sys_cpu = _system_cpu() - sys_cpu0
    sampler.stop.set()
    sampler.join()
    if spy is not None:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.terminate()
    res: dict[str, Any] = {"name": name, "processes": processes, "exit_code": proc.returncode, "wall_s": wall,
                           "truncated_by_budget": truncated, "config": rel(config), "input": rel(data),
                           "peak_rss_bytes": sampler.peak, "peak_rss_single_process_bytes": sampler.peak_single}
    own_cpu = sum(sampler.cpu.values())
    if sys_cpu > 0 and own_cpu:
        # CPU that other processes on this machine used meanwhile (py-spy and this harness included).
        res["other_cpu_share_of_a_core"] = max(0.0, sys_cpu - own_cpu) / wall
    if stats.exists():
        st = json.loads(stats.read_text())
        res.update(elapsed_s=st["elapsed_s"], ru_maxrss_bytes=st["ru_maxrss_kb"] * 1024, cpu_user_s=st["cpu_user_s"],
                   cpu_sys_s=st["cpu_sys_s"], cpu_with_children=st.get("cpu_with_children", False),
                   publishes=st["publishes"], error=st.get("error"), modules=st.get("modules"),
                   step_seconds=st.get("step_seconds") or None)
    else:
        res["elapsed_s"] = wall
    try:
        res.update(warehouse_summary(wh))
    except Exception as ex:  # a half-written or missing warehouse is a finding, not a crash
        res["warehouse_error"] = repr(ex)
    if res.get("exit_code") not in (0, None) or not res.get("lines_read"):
        tail = (out / "stderr.txt").read_text(errors="replace").strip().splitlines()[-3:]
        res["error"] = res.get("error") or " | ".join(tail) or f"exit {proc.returncode}"
    lines = res.get("lines_read") or 0
    res["events_per_s"] = lines / res["elapsed_s"] if res.get("elapsed_s") else 0.0
    peak = max(res.get("ru_maxrss_bytes") or 0, res["peak_rss_bytes"] or 0) if processes == 1 else res["peak_rss_bytes"]
    res["peak_rss_used_bytes"] = peak
    if res.get("contacts"):
        res["rss_bytes_per_contact"] = peak / res["contacts"]
    if spy_out.exists():
        res["profile"] = summarize_py_spy(spy_out)
    res["work_dir"] = out
    return res


def summarize_py_spy(path: Path, top: int = 18) -> dict[str, Any]:
    """Self and inclusive time per function from py-spy's raw (collapsed) stacks."""
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    by_file: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = []
        for fr in stack.split(";"):
            func, _, loc = fr.partition(" (")
            file = loc.rsplit(":", 1)[0].rstrip(")")
            frames.append(f"{func} ({file})")
        leaf = frames[-1]
        if leaf.startswith(("run_flow (", "_run_flow (", "cli_main (", "run_main (")):
            leaf = "Bytewax runtime: Rust code between Python steps (exchange, pickling, scheduling)"
        self_t[leaf] = self_t.get(leaf, 0) + n
        leaf_file = leaf.split(" (")[-1].rstrip(")") if leaf.endswith(")") and not leaf.startswith("Bytewax") \
            else "Bytewax runtime (Rust)"
        by_file[leaf_file] = by_file.get(leaf_file, 0) + n
        for fr in set(frames):
            incl[fr] = incl.get(fr, 0) + n

    def rank(d: dict[str, int], skip_outer: bool = False) -> list[tuple[str, float]]:
        items = sorted(d.items(), key=lambda kv: -kv[1])
        if skip_outer:  # frames on (nearly) every stack say nothing
            items = [kv for kv in items if kv[1] < 0.9 * total]
        return [(k, round(100 * v / total, 1)) for k, v in items[:top]] if total else []

    return {"samples": total, "rate_hz": SPY_HZ, "self": rank(self_t), "inclusive": rank(incl, True),
            "self_by_file": rank(by_file)}


def parse_limit(path: Path) -> dict[str, Any]:
    """Read the file line by line and orjson.loads every line: the ceiling for a Python consumer."""
    import orjson

    started = time.perf_counter()
    n = bad = 0
    with path.open("rb", buffering=1 << 20) as fh:
        for line in fh:
            n += 1
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
    took = time.perf_counter() - started
    started = time.perf_counter()
    with path.open("rb", buffering=1 << 20) as fh:
        for _ in fh:
            pass
    read_only = time.perf_counter() - started
    return {"lines": n, "invalid_json": bad, "elapsed_s": took, "events_per_s": n / took,
            "read_only_s": read_only, "read_only_lines_per_s": n / read_only if read_only else None}


def null_flow(path: Path, work: Path, keyed: int = 0) -> dict[str, Any]:
    stats = work / f"null{'-keyed' if keyed else ''}.json"
    cmd = [sys.executable, "-m", "benchmarks.nullflow", str(path), str(stats)] + (["--keyed", str(keyed)] if keyed else [])
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not stats.exists():
        return {"error": proc.stderr.strip().splitlines()[-1:] or f"exit {proc.returncode}", "wall_s": wall}
    st = json.loads(stats.read_text())
    lines = sum(1 for _ in path.open("rb"))
    return {"elapsed_s": st["elapsed_s"], "lines": lines, "parsed": st["parsed"],
            "events_per_s": lines / st["elapsed_s"], "wall_s": wall, "shards": keyed or None}


# ---------------------------------------------------------------------------- the run


def second_pair(R: dict[str, Any], std: Path, cfg: Path, clock: Clock, timed: Callable[[str, Callable[[], Any]], Any],
                skip: Callable[[str, str], None]) -> None:
    """Run 1 process and then 2 processes on `standard` again, with what the budget has left.

    The 2-process ratio is the figure this machine moves most: one engine measured 1.29x to
    1.69x in the benches of one afternoon. A second pair at the end of the run, each run
    right after the other as in the first pair, lets the report judge the ratio on both.
    """
    one, two = R["runs"].get("standard") or {}, R["runs"].get("standard_2p") or {}
    if not (one.get("events_per_s") and two.get("events_per_s")) or one.get("truncated_by_budget") \
            or two.get("truncated_by_budget"):
        skip("standard_pair_2", "the first pair did not complete")
        return
    lines = one.get("lines_read") or 0
    # Each run as long as the first of its kind, plus a quarter for the machine's drift and start-up.
    need = 1.25 * (lines / one["events_per_s"] + lines / two["events_per_s"]) + 30
    if clock.left() < need:
        skip("standard_pair_2", f"budget: {clock.left():.0f} s left, a second pair needs about {need:.0f} s")
        return
    timed("standard_again", lambda: leadstream_run("standard_again", std, cfg, WORK,
                                                   timeout_s=max(30.0, clock.left() - 20 - lines / two["events_per_s"])))
    timed("standard_2p_again", lambda: leadstream_run("standard_2p_again", std, cfg, WORK, processes=2,
                                                      timeout_s=max(30.0, clock.left() - 20)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every step (a few minutes)")
    ap.add_argument("--budget", type=float, metavar="SECONDS",
                    help="time budget of the whole run (default 870 = 14.5 min; --quick: 420)")
    ap.add_argument("--only", metavar="STEPS", help=f"comma-separated subset of: {','.join(STEPS)}")
    ap.add_argument("--no-pathway", action="store_true", help="skip the Pathway peer (and its venv)")
    ap.add_argument("--results", metavar="DIR", default=str(RESULTS), help="where LATEST.md/json go")
    ap.add_argument("--patch-latest", action="store_true",
                    help="re-measure `latency` only and replace it in the existing LATEST.json (at half the "
                         "standard rate recorded there); the report says so")
    args = ap.parse_args(argv)
    if args.patch_latest:
        return patch_latest(Path(args.results), args.quick)

    budget = args.budget or (420.0 if args.quick else 870.0)
    clock = Clock(budget)
    only = set(args.only.split(",")) if args.only else set(STEPS)
    unknown = only - set(STEPS)
    if unknown:
        ap.error(f"unknown steps: {', '.join(sorted(unknown))}")
    if args.no_pathway:
        only.discard("pathway")

    from . import report
    from .workloads import config_for, ensure_data, workloads

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    log(f"leadstream benchmarks ({'quick' if args.quick else 'full'} sizes, budget {budget:.0f} s)")
    from leadstream import native

    usable, why = native.status()
    if not usable and "changed since the build" in why:
        # Stale compiled modules make every run a run of the Python sources, a third slower:
        # a bench of those would read as a regression. Built again, as `make native` would.
        log(f"the compiled modules are stale ({why}); building them first")
        native.build()
        log(f"leadstream modules: {native.status()[1]}")
    bench_pkgs = ensure_bench_packages()
    W = workloads(args.quick)
    R: dict[str, Any] = {"mode": "quick" if args.quick else "full", "budget_s": budget, "skipped": {},
                         "workloads": {}, "runs": {}, "only": sorted(only) if args.only else None}

    def skip(step: str, why: str) -> None:
        R["skipped"][step] = why
        log(f"  {step}: skipped ({why})")

    # -- data
    log("workloads")
    # `scale` needs `standard` too: the process baseline is a run over its first 1,000 lines.
    needed = [n for n in W if n in only or (n == "standard" and only & {"parse", "null", "standard", "peer_semantics",
                                                                         "standard_2p", "duckdb", "pathway", "latency",
                                                                         "scale"})]
    paths: dict[str, Path] = {}
    for name in needed:
        path, meta = ensure_data(W[name], log)
        paths[name] = path
        R["workloads"][name] = {"what": W[name].what, "file": rel(path), "bytes": meta["bytes"],
                                "cached": meta["cached"], "generate_s": meta.get("generate_seconds"),
                                "stats": meta.get("stats"), "config": W[name].config}
    log(f"  ready after {clock.elapsed():.0f} s")
    # Every step that reads `standard` made it needed above.
    std = paths.get("standard", Path())

    def timed(step: str, fn: Callable[[], Any]) -> Any:
        log(f"{step} ...")
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as ex:  # one broken step must not lose the others
            out = {"error": repr(ex)}
        if isinstance(out, dict):
            out.setdefault("step_s", time.perf_counter() - t)
        R["runs"][step] = out
        log("  " + report.one_line(step, out))
        return out

    if "parse" in only:
        timed("parse", lambda: parse_limit(std))
    if "null" in only:
        timed("null", lambda: null_flow(std, WORK))
        timed("null_keyed", lambda: null_flow(std, WORK, keyed=64))
    std_cfg = config_for(W["standard"], WORK)
    if "standard" in only or "scale" in only:
        # The fixed cost of a process (interpreter, Bytewax, DuckDB, pyarrow): a run over 1,000 lines.
        tiny = WORK / "baseline.jsonl"
        with std.open("rb") as src, tiny.open("wb") as dst:
            for _, line in zip(range(1000), src):
                dst.write(line)
        timed("baseline", lambda: leadstream_run("baseline", tiny, std_cfg, WORK))
    if "standard" in only:
        timed("standard", lambda: leadstream_run("standard", std, std_cfg, WORK, profile=True))
    std_rate = (R["runs"].get("standard") or {}).get("events_per_s") or 8_000.0
    if "standard_2p" in only:
        helptext = subprocess.run([sys.executable, "-m", "leadstream.cli", "run", "--help"], cwd=str(ROOT),
                                  capture_output=True, text=True).stdout
        # Right after the 1-process run, so the ratio is not the machine's drift (its speed moves
        # by a third within minutes). A fixed share of what is left, so the peers, the variants,
        # the latency test and `scale` still run; a stopped run is compared with the 1-process
        # run over the same first lines.
        box = min(W["standard"].opts.events / std_rate + 60, max(60.0, 0.3 * (clock.left() - 60)))
        if "--processes" not in helptext:
            skip("standard_2p", "not available: `leadstream run --help` has no --processes")
        elif clock.left() < 150:
            skip("standard_2p", f"budget: {clock.left():.0f} s left")
        else:
            def two() -> dict[str, Any]:
                res = leadstream_run("standard_2p", std, std_cfg, WORK, processes=2, timeout_s=box)
                one = R["runs"].get("standard") or {}
                n = res.get("lines_read") or 0
                if res.get("truncated_by_budget") and n and one.get("publishes"):
                    # Compare with the 1-process run over the same first n lines (its snapshot times).
                    pts = [(0.0, 0)] + [(p["at_s"], p["lines_read"] or 0) for p in one["publishes"] if p.get("at_s")]
                    for (t1, l1), (t2, l2) in zip(pts, pts[1:]):
                        if l2 >= n:
                            t = t1 + (t2 - t1) * (n - l1) / max(1, l2 - l1)
                            res["reference_1p_events_per_s"] = n / t if t > 0 else None
                            res["reference_note"] = f"1 process over the same first {n:,} lines"
                            break
                return res

            timed("standard_2p", two)

    if "peer_semantics" in only:
        # The peer targets compare like with like: leadstream computing what the peers compute.
        timed("peer_semantics", lambda: leadstream_run("peer_semantics", std, PEER_SEMANTICS, WORK))

    def agreements(con: Any, peer_sql: str) -> dict[str, Any]:
        """A peer's scores compared with each leadstream run's warehouse that computed them."""
        from .peers import duckdb_peer

        out = {}
        for run, key in (("standard", "agreement"), ("peer_semantics", "agreement_peer_semantics")):
            wh = (R["runs"].get(run) or {}).get("work_dir")
            if wh and (Path(wh) / "warehouse.duckdb").exists():
                out[key] = duckdb_peer.agreement(con, peer_sql, Path(wh) / "warehouse.duckdb")
        return out

    if "duckdb" in only:
        def duck() -> dict[str, Any]:
            from .peers import duckdb_peer

            fig, con = duckdb_peer.run(std)
            lines = R["workloads"]["standard"]["stats"]["lines"]
            fig["events_per_s"] = lines / fig["total_s"]
            fig["compute_only_events_per_s"] = lines / fig["compute_s"]
            fig.update(agreements(con, "SELECT contact_id, score FROM peer"))
            con.close()
            return fig

        timed("duckdb", duck)

    pathway_version = None
    if "pathway" in only:
        from .peers import pathway_peer

        def pathway() -> dict[str, Any]:
            nonlocal pathway_version
            # keep time for the variants, the latency test and some of `scale`
            reserve = 120 if args.quick else 240
            if clock.left() < reserve + 100:
                return {"error": f"skipped for the budget ({clock.left():.0f} s left)"}
            version, note = pathway_peer.ensure(log, timeout_s=max(60.0, min(600.0, clock.left() - reserve - 120)))
            pathway_version = version
            if not version:
                return {"error": f"Pathway could not be installed or imported here: {note}"}
            fig = pathway_peer.run(std, WORK, timeout_s=max(60.0, min(400.0, clock.left() - reserve)))
            fig.update(version=version, install=note)
            if "error" not in fig:
                lines = R["workloads"]["standard"]["stats"]["lines"]
                fig["events_per_s"] = lines / fig["total_s"]
                fig["run_only_events_per_s"] = lines / fig["run_s"]
                import duckdb

                con = duckdb.connect()
                csv = fig.pop("scores_csv").replace("'", "''")
                fig.update(agreements(con, f"SELECT contact_id::VARCHAR AS contact_id, score FROM read_csv('{csv}')"))
                con.close()
            return fig

        timed("pathway", pathway)

    todo = [n for n in ("hot_key", "merge_storm", "many_rules", "late_events") if n in only]
    for i, name in enumerate(todo):
        # Each variant gets an equal share of what is left after the latency test and a minimum for
        # `scale`; one that needs longer is stopped and reports the rate over the part it read.
        share = (clock.left() - (60 if "latency" in only else 0) - (90 if "scale" in only else 0)) / (len(todo) - i)
        est = W[name].opts.events / std_rate * (3 if name == "many_rules" else 1.3) + 10
        box = min(est + 60, share)
        if box < 30:
            skip(name, f"budget: {clock.left():.0f} s left")
            continue
        cfg = config_for(W[name], WORK)
        timed(name, functools.partial(leadstream_run, name, paths[name], cfg, WORK, timeout_s=box))

    if "latency" in only:
        duration = 10.0 if args.quick else 30.0
        if clock.left() < duration + 45:
            skip("latency", f"budget: {clock.left():.0f} s left")
        else:
            from .latency import measure

            timed("latency", lambda: measure(std_cfg, std, std_rate / 2, duration, WORK, log))

    if "scale" in only:
        left = clock.left() - 25  # the report and the final snapshot after a stop
        if left < 60:
            skip("scale", f"budget: {clock.left():.0f} s left")
        else:
            timed("scale", lambda: leadstream_run("scale", paths["scale"], config_for(W["scale"], WORK), WORK,
                                                  timeout_s=left))

    if "standard_2p" in only and "standard" in only:
        second_pair(R, std, std_cfg, clock, timed, skip)

    base = (R["runs"].get("baseline") or {}).get("peak_rss_used_bytes")
    for run in R["runs"].values():
        if isinstance(run, dict) and base and run.get("contacts") and run.get("processes") == 1 \
                and run.get("name") != "baseline":
            run["baseline_rss_bytes"] = base
            run["marginal_rss_bytes_per_contact"] = max(0, run["peak_rss_used_bytes"] - base) / run["contacts"]
    R["total_s"] = clock.elapsed()
    R["machine"] = machine(bench_pkgs, pathway_version)
    R["targets"] = report.targets(R)
    out_dir = Path(args.results)
    complete = R["mode"] == "full" and only >= set(STEPS) - {"pathway"}
    report.write(R, out_dir, recent_runs(R, out_dir, complete))
    log("")
    log(report.targets_text(R["targets"]))
    if complete:
        log_changes(R, out_dir)
    log(f"\nharness runtime {R['total_s']:.0f} s; wrote {rel(out_dir / 'LATEST.md')} and {rel(out_dir / 'LATEST.json')}")
    return 0


def recent_runs(R: dict[str, Any], out_dir: Path, complete: bool) -> str:
    """Record a complete full run in the run history; the table of the newest runs for LATEST.md.

    Quick runs and runs of some steps only are not recorded: their figures do not compare.
    """
    from . import history

    path = out_dir / history.HISTORY
    try:
        rows = history.record(R, path) if complete else history.load(path)
    except ValueError as ex:  # a damaged history must not lose this run's report
        log(f"run history not updated: {ex}")
        return ""
    if complete and out_dir.resolve() == RESULTS.resolve():  # the committed results: README shows them too
        try:
            history.update_readme(history.README, rows)
        except (OSError, ValueError) as ex:
            log(f"README.md not updated: {ex}")
    return history.table(rows, last=RECENT_RUNS) if rows else ""


def log_changes(R: dict[str, Any], out_dir: Path) -> None:
    """Print how the targets moved since the full run recorded before this one, if there is one."""
    from . import history

    try:
        rows = history.load(out_dir / history.HISTORY)
    except ValueError:
        return  # recent_runs said why
    row = history.row_of(R)
    before = [r for r in rows if (r.get("date_utc") or "") < (row.get("date_utc") or "")]
    if before:
        log("")
        log("\n".join(history.changes(before[-1], row)))


def patch_latest(out_dir: Path, quick: bool) -> int:
    """Re-run the latency step against a finished run's standard rate and re-render its report."""
    from . import report
    from .latency import measure
    from .workloads import config_for, ensure_data, workloads

    R = json.loads((out_dir / "LATEST.json").read_text())
    rate = (R["runs"].get("standard") or {}).get("events_per_s")
    if not rate:
        log("LATEST.json has no standard rate to take half of")
        return 2
    W = workloads(R.get("mode") == "quick" or quick)
    std, _ = ensure_data(W["standard"], log)
    shutil.rmtree(WORK / "follow", ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    log(f"latency at {rate / 2:,.0f} events/s (half the standard rate of the {R['machine']['date_utc']} run) ...")
    res = measure(config_for(W["standard"], WORK), std, rate / 2, 10.0 if R.get("mode") == "quick" else 30.0, WORK, log)
    R["runs"]["latency"] = res
    R.setdefault("patched", {})["latency"] = (
        f"re-measured separately on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC (`--patch-latest`), "
        "at half the standard rate of this run")
    R["skipped"].pop("latency", None)
    R["targets"] = report.targets(R)
    report.write(R, out_dir, recent_runs(R, out_dir, complete=R.get("mode") == "full" and not R.get("only")))
    log("  " + report.one_line("latency", res))
    log(report.targets_text(R["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
