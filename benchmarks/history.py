"""The run history: every full `make bench` run's headline figures, one JSON line each.

    python -m benchmarks.history              # the table of every recorded run
    python -m benchmarks.history --last 10    # the newest ten
    python -m benchmarks.history --backfill   # rebuild it from every LATEST.json committed to git
    python -m benchmarks.history --update-readme  # and copy the table into README.md

LATEST.md reports one run in full, and this machine's speed drifts by up to a third within an hour
(benchmarks/notes.md, item 0). Beside each other, the runs show what a change did and what
the machine did: the parse limit and the Bytewax null flow are measured in the same run
and move with the machine only.

Every row is judged again by today's `report.targets`, so the whole history reads by one
rule even where the report of its day judged differently (the `scale` target, 8fe41b0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .report import TARGET_KEYS, _ok, _r, targets

HISTORY = "history.jsonl"  # beside LATEST.md in the results folder
README = Path(__file__).resolve().parent.parent / "README.md"
# The README's copy of the table sits between these two lines.
README_START = "<!-- run history: `python -m benchmarks.history --update-readme` writes this table -->"
README_END = "<!-- end of run history -->"
LATEST_JSON = "benchmarks/results/LATEST.json"
RATE_RUNS = ("parse", "null_keyed", "standard", "standard_again", "peer_semantics", "pathway", "duckdb", "scale")


def row_of(R: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one harness result (a LATEST.json)."""
    m = R.get("machine") or {}
    git = m.get("git") or {}
    runs = R.get("runs") or {}
    return {
        "date_utc": m.get("date_utc"),
        "commit": git.get("commit"),
        "uncommitted_changes": git.get("uncommitted_changes"),
        "mode": R.get("mode"),
        "cpu": m.get("cpu"),
        "harness_s": round(R["total_s"], 1) if R.get("total_s") is not None else None,
        "modules": m.get("modules") or (runs.get("standard") or {}).get("modules"),
        "events_per_s": {name: round(runs[name]["events_per_s"], 1) for name in RATE_RUNS if _ok(runs.get(name))},
        "targets": {t["key"]: {"value": _round(t["value"]), "status": t["status"]} for t in targets(R)},
        "patched": sorted(R.get("patched") or {}),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return (row.get("date_utc") or "", row.get("commit") or "")


def load(path: Path) -> list[dict[str, Any]]:
    """The recorded rows, oldest first; none when there is no file yet."""
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as ex:
            msg = f"{path}: line {n} is not JSON ({ex}); fix or delete the line, or rebuild with --backfill"
            raise ValueError(msg) from ex
    return sorted(rows, key=_key)


def save(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write rows oldest first, one run (date and commit) once, the later row winning; return them."""
    unique = {_key(r): r for r in rows}
    kept = [unique[k] for k in sorted(unique)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    tmp.replace(path)
    return kept


def record(R: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Add (or, for the same run re-rendered, replace) the row of a result; return every row."""
    return save(path, load(path) + [row_of(R)])


# ---------------------------------------------------------------------------- the table

_COLUMNS = (  # (header, target key, how its value is shown); every target but the parse share
    ("standard, 1 process", "rate_1p", _r),
    ("2 processes", "ratio_2p", lambda x: f"{x:.2f}x"),
    ("vs Pathway", "x_pathway", lambda x: f"{x:.2f}x"),
    ("DuckDB faster by", "duckdb_x", lambda x: f"{x:.1f}x"),
    ("scale speed", "scale_speed", lambda x: f"{100 * x:.0f}%"),
    ("scale KB/contact", "scale_kb", lambda x: f"{x:.2f}"),
    ("p99 latency", "latency_p99", lambda x: f"{x:.2f} s"),
)


def _cell(row: dict[str, Any], key: str, show: Any) -> str:
    t = (row.get("targets") or {}).get(key) or {}
    if t.get("value") is None:
        return "-"
    text = show(t["value"])
    return f"**{text}**" if str(t.get("status", "")).startswith("MISS") else text


def _cpu(name: str | None) -> str:
    """A CPU model as the report names it, without trademarks: "Intel(R) Xeon(R) Processor" is "Intel Xeon"."""
    if not name:
        return "?"
    return " ".join(w for w in name.replace("(R)", "").replace("(TM)", "").split() if w != "Processor")


def table(rows: list[dict[str, Any]], last: int | None = None) -> str:
    """A markdown table of rows, newest first; a missed target's figure is bold."""
    shown = list(reversed(rows))[:last] if last else list(reversed(rows))
    if not shown:
        return "No full run recorded yet.\n"
    head = ["date (UTC)", "commit", "CPU", *(c[0] for c in _COLUMNS), "parse limit", "null + 64 keys", "targets met"]
    L = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in shown:
        commit = r.get("commit") or "?"
        if r.get("uncommitted_changes"):
            commit += f" +{r['uncommitted_changes']}"
        rates = r.get("events_per_s") or {}
        statuses = [t.get("status", "") for t in (r.get("targets") or {}).values()]
        met = sum(s.startswith("pass") for s in statuses)
        L.append("| " + " | ".join([
            r.get("date_utc") or "?", commit, _cpu(r.get("cpu")), *(_cell(r, key, show) for _, key, show in _COLUMNS),
            _r(rates.get("parse")), _r(rates.get("null_keyed")), f"{met} of {len(TARGET_KEYS)}",
        ]) + " |")
    return "\n".join(L) + "\n"


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """How each target's judged figure moved from one recorded run to the next, for the harness's summary."""
    lines = [f"against the previous full run ({before.get('date_utc')}, {before.get('commit')}; parse limit "
             f"{_r((before.get('events_per_s') or {}).get('parse'))} then "
             f"{_r((after.get('events_per_s') or {}).get('parse'))}/s, which moves with the machine only):"]
    for header, key, show in _COLUMNS:  # the parse share moves with the 1-process rate: left out
        old, new = ((r.get("targets") or {}).get(key) or {} for r in (before, after))
        if old.get("value") is None and new.get("value") is None:
            continue
        fig = [show(t["value"]) if t.get("value") is not None else "-" for t in (old, new)]
        was, now = (str(t.get("status", "not measured")).replace(" (partial run)", "") for t in (old, new))
        flip = f"  ({was} -> {now})" if was != now else ""
        lines.append(f"  {header}: {fig[0]} -> {fig[1]}{flip}")
    return lines


def _readme_span(text: str, source: str) -> tuple[int, int]:
    try:
        start = text.index(README_START) + len(README_START)
        return start, text.index(README_END, start)
    except ValueError:
        msg = f"{source} has no run-history table: put the lines {README_START!r} and {README_END!r} where it goes"
        raise ValueError(msg) from None


def readme_table(text: str, source: str = "README.md") -> str:
    """The run-history table in a README's text, between its two marker lines."""
    start, end = _readme_span(text, source)
    return text[start:end].strip("\n") + "\n"


def update_readme(path: Path, rows: list[dict[str, Any]]) -> bool:
    """Write the table of every row into the README between its markers; True when it changed."""
    text = path.read_text()
    start, end = _readme_span(text, str(path))
    new = table(rows)
    if text[start:end].strip("\n") + "\n" == new:
        return False
    path.write_text(text[:start] + "\n" + new + text[end:])
    return True


# ---------------------------------------------------------------------------- backfill


def from_git(repo: Path, path: str = LATEST_JSON) -> list[dict[str, Any]]:
    """The rows of every version of ``path`` committed in ``repo``'s history (full runs only)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "log", "--format=%H", "--", path],
                             check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as ex:
        msg = f"cannot read the git history of {path} in {repo}: {ex}"
        raise RuntimeError(msg) from ex
    rows = []
    for sha in out.split():
        shown = subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{path}"], capture_output=True, text=True)
        if shown.returncode != 0:
            continue  # the commit deleted the file
        try:
            R = json.loads(shown.stdout)
        except json.JSONDecodeError:
            continue
        if R.get("mode") == "full" and R.get("runs"):
            rows.append(row_of(R))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", metavar="DIR", default=str(Path(__file__).resolve().parent / "results"),
                    help=f"the results folder holding {HISTORY} (default benchmarks/results)")
    ap.add_argument("--last", type=int, metavar="N", help="show the newest N runs only")
    ap.add_argument("--backfill", action="store_true",
                    help=f"add the runs of every {LATEST_JSON} committed to git, then show the table")
    ap.add_argument("--update-readme", action="store_true",
                    help="also write the table of every run into README.md, between its run-history markers")
    args = ap.parse_args(argv)
    path = Path(args.results) / HISTORY
    try:
        if args.backfill:
            repo = Path(__file__).resolve().parent.parent
            found = from_git(repo)
            rows = save(path, load(path) + found)
            print(f"{len(found)} committed runs read; {path} holds {len(rows)}", file=sys.stderr)
        else:
            rows = load(path)
        if args.update_readme:
            changed = update_readme(README, rows)
            print(f"README.md: run history {'updated' if changed else 'already up to date'}", file=sys.stderr)
    except (RuntimeError, ValueError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    sys.stdout.write(table(rows, args.last))
    return 0


if __name__ == "__main__":
    sys.exit(main())
