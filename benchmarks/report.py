"""Targets and the LATEST.md / LATEST.json report of a harness run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTES = Path(__file__).resolve().parent / "notes.md"  # hand-written reading of the profile, included verbatim
LATENESS_S = 5.0
KB = 1024
# Short names of the targets, in the order targets() reports them.
TARGET_KEYS = ("rate_1p", "parse_share", "ratio_2p", "x_pathway", "duckdb_x", "scale_speed", "scale_kb", "latency_p99")


def _complete_second_pair(runs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The second 1-process and 2-process runs of `standard`, when both read the whole file."""
    one, two = runs.get("standard_again"), runs.get("standard_2p_again")
    if one is None or two is None or not (_ok(one) and _ok(two)):
        return None
    if one.get("truncated_by_budget") or two.get("truncated_by_budget"):
        return None
    return one, two


def _cpu_beside(two: dict[str, Any], one: dict[str, Any] | None) -> str:
    """The cluster's CPU seconds beside one process's, when both runs recorded them."""
    cpu2 = (two.get("cpu_user_s") or 0) + (two.get("cpu_sys_s") or 0)
    cpu1 = ((one or {}).get("cpu_user_s") or 0) + ((one or {}).get("cpu_sys_s") or 0)
    # Results written before the runner counted its children hold the launcher's CPU only.
    if not two.get("cpu_with_children") or not cpu2 or not cpu1 or two.get("error"):
        return ""
    return f"; CPU {cpu2:.0f} s against {cpu1:.0f} s for 1 process ({100 * (cpu2 / cpu1 - 1):+.0f}%)"


def _r(x: float | None) -> str:
    """A rate, rounded the way the report shows it."""
    if x is None:
        return "-"
    if x >= 100_000:
        return f"{x / 1000:,.0f}k"
    if x >= 10_000:
        return f"{x / 1000:,.1f}k"
    return f"{x:,.0f}"


def _mb(b: float | None) -> str:
    return "-" if not b else f"{b / 1024 / 1024:,.0f} MiB"


def _ok(run: dict | None) -> bool:
    return run is not None and not run.get("error") and bool(run.get("events_per_s"))


def one_line(step: str, out: Any) -> str:
    if not isinstance(out, dict):
        return str(out)
    if out.get("error") and not out.get("events_per_s"):
        return f"ERROR: {out['error']}"
    if step == "latency":
        return (f"p50 {out.get('p50_s') or 0:.2f} s, p99 {out.get('p99_s') or 0:.2f} s at "
                f"{out.get('rate_achieved', 0):,.0f} events/s ({out.get('triggers_matched')} triggers)")
    bits = [f"{_r(out.get('events_per_s'))} events/s"]
    if out.get("lines_read"):
        bits.append(f"{out['lines_read']:,} lines in {out.get('elapsed_s', 0):.1f} s")
    if out.get("contacts"):
        bits.append(f"{out['contacts']:,} contacts")
    if out.get("peak_rss_used_bytes"):
        bits.append(f"peak RSS {_mb(out['peak_rss_used_bytes'])}")
    if out.get("truncated_by_budget"):
        bits.append("STOPPED BY THE BUDGET")
    for key, label in (("agreement", "full config"), ("agreement_peer_semantics", "peers' semantics")):
        if out.get(key):
            a = out[key]
            bits.append(f"{label}: same score for {a['same_score']:,} of leadstream's {a['leadstream_contacts']:,} "
                        f"contacts, {a['only_peer']:,} peer-only contacts")
    return ", ".join(bits)


# ---------------------------------------------------------------------------- targets


def targets(R: dict[str, Any]) -> list[dict[str, Any]]:
    runs = R["runs"]
    std = runs.get("standard")
    rate = std["events_per_s"] if _ok(std) else None
    T: list[dict[str, Any]] = []

    def add(name: str, measured: str, ok: bool | None, note: str = "", partial: bool = False,
            value: float | None = None) -> None:
        status = "not measured" if ok is None else ("pass" if ok else "MISS")
        if partial and ok is not None:
            status += " (partial run)"
        # key and value: the judged figure as a number, for the run history (benchmarks/history.py).
        T.append({"target": name, "key": TARGET_KEYS[len(T)], "value": value, "measured": measured, "status": status,
                  "note": note})

    add("standard, 1 process: >= 200k events/s", f"{_r(rate)} events/s" if rate else "-",
        None if rate is None else rate >= 200_000, value=rate)
    parse = runs.get("parse")
    if rate and _ok(parse):
        share = rate / parse["events_per_s"]
        add("standard, 1 process: >= 20% of the parse limit", f"{100 * share:.1f}% of {_r(parse['events_per_s'])}/s",
            share >= 0.20, value=share)
    else:
        add("standard, 1 process: >= 20% of the parse limit", "-", None)
    two = runs.get("standard_2p")
    pair2 = _complete_second_pair(runs)
    if rate and _ok(two) and pair2 and not two.get("reference_1p_events_per_s"):
        one2, two2 = pair2
        x1, x2 = two["events_per_s"] / rate, two2["events_per_s"] / one2["events_per_s"]
        x = (two["events_per_s"] + two2["events_per_s"]) / (rate + one2["events_per_s"])
        add("2 processes: >= 1.4x 1 process",
            f"{x:.2f}x over two pairs of runs ({x1:.2f}x after the 1-process run, {x2:.2f}x at the end)", x >= 1.4,
            "each pair's runs back to back; the ratio of the mean rates", value=x)
    elif rate and _ok(two):
        ref = two.get("reference_1p_events_per_s") or rate
        x = two["events_per_s"] / ref
        add("2 processes: >= 1.4x 1 process", f"{x:.2f}x ({_r(two['events_per_s'])} vs {_r(ref)} events/s)", x >= 1.4,
            f"stopped by the time budget; compared with the {two.get('reference_note')}"
            if two.get("reference_1p_events_per_s") else "one pair of runs: " + (
                R["skipped"].get("standard_pair_2") or "the second did not complete"),
            bool(two.get("truncated_by_budget")), value=x)
    else:
        add("2 processes: >= 1.4x 1 process", "-", None,
            R["skipped"].get("standard_2p") or str((two or {}).get("error", "")))
    # The peer targets are "on the same semantics": judged on the run with the peers' semantics
    # (benchmarks/peers/semantics.toml) when there is one, with the full config's ratio beside it.
    sem = runs.get("peer_semantics")
    same = sem["events_per_s"] if _ok(sem) else None
    judged = same or rate
    basis = "same semantics" if same else "full example config"
    pw = runs.get("pathway")
    if judged and _ok(pw):
        x = judged / pw["events_per_s"]
        add(">= 3x Pathway's throughput", f"{x:.2f}x on the {basis} (Pathway {_r(pw['events_per_s'])} events/s, "
            "1 thread)", x >= 3, f"full example config: {rate / pw['events_per_s']:.2f}x" if same and rate else "", value=x)
    else:
        add(">= 3x Pathway's throughput", "-", None, (pw or {}).get("error", R["skipped"].get("pathway", "")))
    dk = runs.get("duckdb")
    if judged and _ok(dk):
        x = dk["events_per_s"] / judged
        add("within 6x of DuckDB's batch recompute",
            f"DuckDB is {x:.1f}x faster than the {basis} ({_r(dk['events_per_s'])} events/s)", x <= 6,
            f"full example config: {dk['events_per_s'] / rate:.1f}x" if same and rate else "", value=x)
    else:
        add("within 6x of DuckDB's batch recompute", "-", None, (dk or {}).get("error", ""))
    sc = runs.get("scale")
    if rate and _ok(sc):
        # `scale` runs between the two 1-process runs of `standard` (when there is a second):
        # their mean drifts with the machine as `scale` did, the first alone does not.
        again = runs.get("standard_again")
        both = _ok(again) and not again.get("truncated_by_budget")
        ref = (rate + again["events_per_s"]) / 2 if both else rate
        x = sc["events_per_s"] / ref
        note = ""
        part = bool(sc.get("truncated_by_budget"))
        if part:
            note = (f"stopped by the time budget after {sc.get('lines_read') or 0:,} of "
                    f"{(R['workloads'].get('scale') or {}).get('stats', {}).get('lines', 0):,} lines: "
                    "figures cover the part it read")
        against = (f" against {_r(ref)}, the mean of the 1-process runs before and after it: "
                   f"{_r(rate)} and {_r(again['events_per_s'])}; {100 * sc['events_per_s'] / rate:.0f}% of the first alone"
                   if both else "")
        add("scale: throughput within 20% of standard",
            f"{100 * x:.0f}% of standard ({_r(sc['events_per_s'])} events/s{against})", x >= 0.8, note, part, value=x)
        bpc = sc.get("rss_bytes_per_contact")
        marg = sc.get("marginal_rss_bytes_per_contact")
        judged = marg if marg is not None else bpc
        add("scale: <= 1.5 KB of RSS per contact",
            (f"{marg / KB:.2f} KB above the {_mb(sc.get('baseline_rss_bytes'))} baseline; " if marg is not None else "")
            + (f"{bpc / KB:.2f} KB all-in ({sc.get('contacts', 0):,} contacts, peak {_mb(sc.get('peak_rss_used_bytes'))})"
               if bpc else "-"),
            None if judged is None else judged <= 1.5 * KB,
            "; ".join(x for x in (note, "judged on the RSS above a 1,000-line run's peak" if marg is not None else "") if x),
            part, value=None if judged is None else judged / KB)
    else:
        why = (sc or {}).get("error", R["skipped"].get("scale", ""))
        add("scale: throughput within 20% of standard", "-", None, why)
        add("scale: <= 1.5 KB of RSS per contact", "-", None, why)
    lat = runs.get("latency")
    if lat and lat.get("p99_s") is not None:
        add(f"latency p99 <= allowed lateness + 0.5 s ({LATENESS_S + 0.5:.1f} s)",
            f"p99 {lat['p99_s']:.2f} s (p50 {lat['p50_s']:.2f} s)", lat["p99_s"] <= LATENESS_S + 0.5, value=lat["p99_s"])
    else:
        add(f"latency p99 <= allowed lateness + 0.5 s ({LATENESS_S + 0.5:.1f} s)", "-", None,
            (lat or {}).get("error", R["skipped"].get("latency", "")))
    return T


def targets_text(T: list[dict[str, Any]]) -> str:
    width = max(len(t["target"]) for t in T)
    lines = ["targets:"]
    for t in T:
        lines.append(f"  [{t['status']:^12}] {t['target']:<{width}}  {t['measured']}" + (f"  ({t['note']})" if t["note"] else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the files


def _clean(x: Any) -> Any:
    """JSON-safe, and free of this machine's absolute paths."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items() if k != "work_dir"}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        x = str(x)
    if isinstance(x, str):
        return x.replace(str(ROOT) + "/", "").replace(str(ROOT), ".")
    if isinstance(x, float):
        return round(x, 4)
    return x


def _publish_stats(run: dict | None) -> dict[str, Any] | None:
    if not run or not run.get("publishes"):
        return None
    secs = [p["seconds"] or 0.0 for p in run["publishes"]]
    stalls = [p.get("stall_seconds", p["seconds"]) or 0.0 for p in run["publishes"]]
    return {"count": len(secs), "mean_s": sum(secs) / len(secs), "max_s": max(secs), "last_s": secs[-1],
            "stall_s": sum(stalls),
            "share_of_run": sum(stalls) / run["elapsed_s"] if run.get("elapsed_s") else None,
            "contacts_at_last": run["publishes"][-1].get("contacts")}


STEP_RUNS = ("standard", "peer_semantics", "scale", "hot_key", "merge_storm", "many_rules", "late_events")


def _step_table(runs: dict[str, Any]) -> list[str]:
    """The 1-process runs' worker time by step, as the run itself measured it (flows/progress.py)."""
    have = [(name, runs[name]) for name in STEP_RUNS if isinstance(runs.get(name), dict) and runs[name].get("step_seconds")]
    if not have:
        return []
    from flows.progress import STEPS, step_shares

    cols = [s for s in STEPS if any(s in r["step_seconds"] for _, r in have)] + ["other"]
    L = ["**Worker time by step** (1 process; each step's share of the run's wall time, measured by the run "
         "itself, so compiled modules count where they run; `other` is Bytewax's scheduling, the small steps "
         "between the stages, start-up and shut-down):", "",
         "| run | " + " | ".join(cols) + " | µs per line |", "|---" * (len(cols) + 2) + "|"]
    for name, r in have:
        shares = {step: share for step, _, share in step_shares(r["step_seconds"], r["elapsed_s"])}
        per_line = 1e6 * r["elapsed_s"] / r["lines_read"] if r.get("lines_read") else None
        L.append(f"| {name} | " + " | ".join(f"{shares[c]:.0%}" if c in shares else "" for c in cols)
                 + (f" | {per_line:.1f} |" if per_line else " | |"))
    return L + [""]


def write(R: dict[str, Any], out_dir: Path, history: str = "") -> None:
    """Write LATEST.json and LATEST.md; ``history`` is the markdown table of recent runs to include."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for run in R["runs"].values():
        if isinstance(run, dict) and run.get("publishes"):
            run["publish_summary"] = _publish_stats(run)
    (out_dir / "LATEST.json").write_text(json.dumps(_clean(R), indent=1, default=str) + "\n")
    (out_dir / "LATEST.md").write_text(markdown(R, history))


def markdown(R: dict[str, Any], history: str = "") -> str:
    runs, m = R["runs"], R["machine"]
    std = runs.get("standard") or {}
    parse = runs.get("parse") or {}
    plimit = parse.get("events_per_s")
    rate = std.get("events_per_s")
    L: list[str] = []
    git = m.get("git", {})
    L += ["# Benchmark results (latest run)", "",
          f"`make bench` (`python -m benchmarks.run`{' --quick' if R['mode'] == 'quick' else ''}), "
          f"{m['date_utc']} UTC, commit {git.get('commit', '?')}"
          + (f" plus {git['uncommitted_changes']} uncommitted changed files" if git.get("uncommitted_changes") else "")
          + f". Harness runtime **{R['total_s']:.0f} s** (budget {R['budget_s']:.0f} s).", "",
          f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, Python {m['python']}; "
          + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + "."
          + (f" leadstream modules (as the `standard` run reported them): {std.get('modules') or m.get('modules')}."
             if std.get("modules") or m.get("modules") else ""), ""]

    for step, why in (R.get("patched") or {}).items():
        L += [f"Note: `{step}` was {why}.", ""]
    L += ["## Targets", "", "| target | measured | status | note |", "|---|---|---|---|"]
    for t in R["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | **{t['status']}** | {t['note']} |")
    L.append("")
    if history:
        L += ["## Recent runs", "",
              "The newest full runs of `make bench` (`benchmarks/results/history.jsonl`, all of them with "
              "`python -m benchmarks.history`), judged by today's targets; a missed target's figure is bold. "
              "The parse limit and the null flow move with the machine only.", "", history.rstrip("\n"), ""]

    L += ["## Throughput on the `standard` workload (same file, same run)", "",
          "| what | events/s | vs parse limit | note |", "|---|---|---|---|"]

    def row(what: str, r: float | None, note: str = "") -> None:
        share = f"{100 * r / plimit:.1f}%" if r and plimit else "-"
        L.append(f"| {what} | {_r(r)} | {share} | {note} |")

    if parse:
        row("parse limit: read + `orjson.loads` per line (1 process)", plimit,
            f"reading lines alone: {_r(parse.get('read_only_lines_per_s'))}/s")
    for key, what, note in (
        ("null", "Bytewax null flow: read, parse, discard", "flows.sources.LineSource batches, `op.map`"),
        ("null_keyed", "Bytewax null flow + 64 shard keys", "parse, group by shard, `stateful_batch` that only counts"),
    ):
        if key in runs:
            row(what, runs[key].get("events_per_s"), runs[key].get("error", note) if not _ok(runs[key]) else note)
    if std:
        row("**`leadstream run`, 1 process**", rate, std.get("error", "") or
            f"{std.get('lines_read', 0):,} lines in {std.get('elapsed_s', 0):.1f} s, {std.get('triggers', 0):,} triggers; "
            f"CPU {std.get('cpu_user_s', 0) + std.get('cpu_sys_s', 0):.0f} s; other processes used "
            f"{100 * (std.get('other_cpu_share_of_a_core') or 0):.0f}% of a core meanwhile")
    sem = runs.get("peer_semantics")
    if sem:
        row("`leadstream run`, 1 process, the peers' semantics", sem.get("events_per_s"), sem.get("error", "") or
            f"`benchmarks/peers/semantics.toml`: the `default` score without decay, no segments, rules or workflows; "
            f"{sem.get('triggers', 0):,} triggers")
    two = runs.get("standard_2p")
    if two:
        ref = two.get("reference_1p_events_per_s") or rate
        row("**`leadstream run --processes 2`**", two.get("events_per_s"),
            (two.get("error") or (f"{two['events_per_s'] / ref:.2f}x 1 process" if ref and two.get("events_per_s") else "")
             + _cpu_beside(two, std))
            + (f"; stopped by the budget after {two.get('lines_read') or 0:,} lines, compared with the "
               f"{two.get('reference_note')} ({_r(ref)}/s)" if two.get("reference_1p_events_per_s") else ""))
    elif "standard_2p" in R["skipped"]:
        row("`leadstream run --processes 2`", None, R["skipped"]["standard_2p"])
    one2, two2 = runs.get("standard_again"), runs.get("standard_2p_again")
    if one2:
        row("`leadstream run`, 1 process, again at the end", one2.get("events_per_s"), one2.get("error", "") or
            f"{one2.get('lines_read', 0):,} lines in {one2.get('elapsed_s', 0):.1f} s"
            + ("; stopped by the budget" if one2.get("truncated_by_budget") else ""))
    if two2:
        pair = _complete_second_pair(runs)
        row("`leadstream run --processes 2`, again right after it", two2.get("events_per_s"),
            two2.get("error", "") or (f"{two2['events_per_s'] / pair[0]['events_per_s']:.2f}x 1 process"
                                      + _cpu_beside(two2, pair[0]) if pair else "stopped by the budget"))
    elif "standard_pair_2" in R["skipped"]:
        row("`leadstream run`, 1 and 2 processes again", None, R["skipped"]["standard_pair_2"])
    dk = runs.get("duckdb")
    if dk:
        if _ok(dk):
            row("DuckDB peer: `read_json` + one SQL batch", dk["events_per_s"],
                f"{dk['threads']} threads; load {dk['load_s']:.1f} s + compute {dk['compute_s']:.1f} s")
            row("DuckDB peer: the SQL over already-loaded rows", dk["compute_only_events_per_s"], "compute only")
        else:
            row("DuckDB peer", None, dk.get("error", ""))
    pw = runs.get("pathway")
    if pw:
        if _ok(pw):
            row("Pathway peer, 1 thread (start to finish)", pw["events_per_s"],
                f"Pathway {pw.get('version')}: import {pw['import_s']:.1f} s, run {pw['run_s']:.1f} s; static-mode jsonlines input")
            row("Pathway peer, 1 thread (`pw.run` only)", pw["run_only_events_per_s"], "")
        else:
            row("Pathway peer", None, pw.get("error", ""))
    elif "pathway" in R["skipped"]:
        row("Pathway peer", None, R["skipped"]["pathway"])
    L.append("")

    agree = [(k, label, runs[k][key]) for k in ("duckdb", "pathway")
             for key, label in (("agreement", "full example config"), ("agreement_peer_semantics", "peers' semantics"))
             if _ok(runs.get(k)) and runs[k].get(key)]
    if agree:
        L += ["Peers compute identity stitching plus the `default` score (semantics in `benchmarks/peers/__init__.py`); "
              "their per-contact scores compared with leadstream's `contact_scores` from the 1-process runs:", "",
              "| peer | leadstream run | leadstream contacts | with the same `default` score | missing in the peer "
              "| peer-only contacts |",
              "|---|---|---|---|---|---|"]
        for k, label, a in agree:
            share = a["same_score"] / a["leadstream_contacts"] if a["leadstream_contacts"] else 0
            L.append(f"| {k} | {label} | {a['leadstream_contacts']:,} | {a['same_score']:,} ({100 * share:.2f}%) | "
                     f"{a['only_leadstream']:,} | {a['only_peer']:,} |")
        L += ["", "Peer-only contacts come from malformed lines a peer accepts and leadstream dead-letters "
              "(the Pathway peer cannot check that `properties` is an object or that a line is under 32 KB).", ""]

    L += ["## Workloads", "",
          "| workload | what | lines read | contacts | triggers | events/s | vs standard | peak RSS | RSS per contact (all-in / above baseline) | note |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for name, w in R["workloads"].items():
        r = runs.get(name)
        if not r:
            L.append(f"| {name} | {w['what']} | - | - | - | - | - | - | - | {R['skipped'].get(name, 'not run')} |")
            continue
        notes: list[str] = []
        if r.get("truncated_by_budget"):
            notes.append(f"stopped by the time budget after {r.get('elapsed_s', 0):.0f} s")
        if r.get("late"):
            notes.append(f"{r['late']:,} late")
        if (r.get("other_cpu_share_of_a_core") or 0) > 0.15:
            notes.append(f"other processes used {100 * r['other_cpu_share_of_a_core']:.0f}% of a core meanwhile")
        if r.get("error") and not _ok(r):
            notes.append(str(r["error"])[:200])
        vs = f"{100 * r['events_per_s'] / rate:.0f}%" if rate and _ok(r) else "-"
        bpc = r.get("rss_bytes_per_contact")
        marg = r.get("marginal_rss_bytes_per_contact")
        per = "-" if not bpc else f"{bpc / KB:.2f} KB" + (f" / {marg / KB:.2f} KB" if marg is not None else "")
        L.append(f"| {name} | {w['what']} | {r.get('lines_read') or 0:,} | {r.get('contacts') or 0:,} | "
                 f"{r.get('triggers') or 0:,} | {_r(r.get('events_per_s'))} | {vs} | {_mb(r.get('peak_rss_used_bytes'))} | "
                 f"{per} | {'; '.join(notes)} |")
    L += ["", "Peak RSS is the process's high-water mark (VmHWM, and the sampled sum over the process tree for "
          "2 processes). RSS per contact: all-in divides that peak by the contacts in the final snapshot (interpreter, "
          "Bytewax, DuckDB and pyarrow included); above baseline first subtracts the peak of a 1,000-line run "
          f"({_mb((runs.get('baseline') or {}).get('peak_rss_used_bytes'))}), which is what grows with contacts.", ""]
    gen = [(n, w["generate_s"]) for n, w in R["workloads"].items() if not w.get("cached")]
    L += [("Generated in this run: " + ", ".join(f"{n} ({s:.0f} s)" for n, s in gen) + ". ") if gen else "",
          "Cached workloads (`benchmarks/data/`) are reused only when their generator options match exactly.", ""]

    L += ["## Snapshot publication", ""]
    pubs = [(k, p) for k in ("standard", "scale") if (p := _publish_stats(runs.get(k))) is not None]
    if pubs:
        L += ["| run | snapshots | build time mean | max | last (final) | worker waited (share of the run) | contacts in the last |",
              "|---|---|---|---|---|---|---|"]
        for k, p in pubs:
            L.append(f"| {k} | {p['count']} | {p['mean_s']:.2f} s | {p['max_s']:.2f} s | {p['last_s']:.2f} s | "
                     f"{p['stall_s']:.2f} s ({100 * (p['share_of_run'] or 0):.1f}%) | {p['contacts_at_last'] or 0:,} |")
        L += ["", "Build time: compacting parts, building a fresh DuckDB file and the atomic rename, on the writer's "
              "background thread. The worker waits only for the final snapshot at the end of input (and for a "
              "build still running then); meanwhile it keeps processing events. "
              "`snapshots` table rows are in each run's warehouse.", ""]
    else:
        L += ["not measured", ""]

    lat = runs.get("latency")
    L += ["## End-to-end latency (`--follow`)", ""]
    if lat and lat.get("p99_s") is not None:
        L += [f"Events of `standard`, re-stamped with the wall clock, appended to a followed file at "
              f"{lat['rate_achieved']:,.0f} events/s (half the 1-process throughput) for {lat['duration_s']:.0f} s; "
              f"time from append+flush to the trigger line being readable in the triggers file, over "
              f"{lat['triggers_matched']:,} triggers:", "",
              "| p50 | p90 | p99 | max | min |", "|---|---|---|---|---|",
              f"| {lat['p50_s']:.2f} s | {lat['p90_s']:.2f} s | {lat['p99_s']:.2f} s | {lat['max_s']:.2f} s | {lat['min_s']:.2f} s |",
              "", (f"Triggers fired later by workflow timers ({lat['timer_triggers']:,}, e.g. the 30 s overlay) are left out "
                   f"above; measured from their due time they took p50 {lat['timer_p50_s']:.2f} s, p99 {lat['timer_p99_s']:.2f} s."
                   if lat.get("timer_triggers") else ""),
              "", (f"Meanwhile other processes (this harness's appender and watcher included) used "
                   f"{100 * lat['other_cpu_share_of_a_core']:.0f}% of a core. " if lat.get("other_cpu_share_of_a_core") is not None else "")
              + f"The allowed lateness ({LATENESS_S:.0f} s) is the floor by design: an event waits until the watermark "
              "(newest event time minus the lateness) passes it.", ""]
    else:
        L += [f"not measured: {(lat or {}).get('error') or R['skipped'].get('latency', 'not run')}", ""]

    L += ["## Where the time goes", ""]
    L += _step_table(runs)
    prof = std.get("profile")
    if prof and prof.get("samples"):
        L += [f"py-spy sampled the 1-process `standard` run above ({prof['samples']:,} samples at {prof['rate_hz']} Hz, "
              "`--nonblocking`, so the run is not paused). % of samples:", "",
              "**Self time by function** (where the CPU actually is):", "", "| % | function (file) |", "|---|---|"]
        L += [f"| {p} | `{f}` |" for f, p in prof["self"]]
        L += ["", "**Self time by file:**", "", "| % | file |", "|---|---|"]
        L += [f"| {p} | `{f}` |" for f, p in prof["self_by_file"][:12]]
        L += ["", "**Inclusive time** (function and everything it calls; frames on every stack left out):", "",
              "| % | function (file) |", "|---|---|"]
        L += [f"| {p} | `{f}` |" for f, p in prof["inclusive"]]
        L.append("")
    else:
        L += ["no profile this run", ""]
    if NOTES.exists():
        L += [NOTES.read_text().strip(), ""]

    if R["skipped"]:
        L += ["## Not run this time", ""] + [f"- {k}: {v}" for k, v in R["skipped"].items()] + [""]
    L += ["## Reproduce", "", "```sh", "make bench                         # everything, within the 15-minute budget",
          ".venv/bin/python -m benchmarks.run --quick   # small sizes, a few minutes",
          ".venv/bin/python -m benchmarks.run --only standard,duckdb --budget 1800",
          "```", "", "Workloads are cached in `benchmarks/data/` (git-ignored), the Pathway peer's venv in "
          "`benchmarks/.venv-pathway/`, each run's outputs in `benchmarks/scratch/`.", ""]
    return "\n".join(L)


if __name__ == "__main__":  # re-render LATEST.md from LATEST.json (e.g. after editing notes.md)
    import sys

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    data = json.loads((folder / "LATEST.json").read_text())
    data["targets"] = targets(data)
    write(data, folder)
    print(f"re-rendered {folder / 'LATEST.md'}")
