"""The benchmark workloads: fixed-seed generated clickstreams, cached under benchmarks/data/.

A cached file is reused only when its recorded options match exactly, so changing a
size or a share regenerates it; the generator gives the same bytes for the same options.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadstream.generate import GenerateOptions, write_events

from .manyrules import EXAMPLE, write_many_rules

DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Workload:
    name: str
    opts: GenerateOptions
    config: str  # "example" (examples/marketing.toml) or "many_rules" (generated)
    what: str  # one line for the report


def _opts(events: int, contacts: int, seed: int, **kw: Any) -> GenerateOptions:
    return GenerateOptions(events=events, contacts=contacts, seed=seed, identify_share=kw.pop("identify_share", 0.3), **kw)


def workloads(quick: bool) -> dict[str, Workload]:
    """All workloads at full or --quick size.

    standard and scale follow the issue's sizes; the variants are 100k lines each (many_rules
    40k; quick: 40k and 16k) so that `make bench` fits its 15 minutes on two cores, and each
    is compared with `standard` measured in the same run.
    """
    if quick:
        std, scale, var = (100_000, 10_000), (300_000, 60_000), (40_000, 4_000)
    else:
        std, scale, var = (1_000_000, 100_000), (5_000_000, 1_000_000), (100_000, 10_000)
    w = [
        Workload("standard", _opts(*std, seed=7), "example",
                 f"{std[0]:,} events, {std[1]:,} visitors, 30% identify; full example config"),
        Workload("scale", _opts(*scale, seed=8), "example", f"{scale[0]:,} events, {scale[1]:,} contacts"),
        Workload("hot_key", _opts(*var, seed=9, bot_share=0.2), "example",
                 f"{var[0]:,} events, 20% from one bot anonymousId"),
        Workload("merge_storm", _opts(var[0], max(50, var[1] // 50), seed=10, identify_share=1.0, devices_per_user=50),
                 "example", f"{var[0]:,} events, {max(50, var[1] // 50):,} people with up to 50 devices each, all identify"),
        Workload("many_rules", _opts(var[0] * 2 // 5, var[1] * 2 // 5, seed=11), "many_rules",
                 f"{var[0] * 2 // 5:,} events; example config + 100 generated segments + 100 generated automation rules"),
        # Lateness is judged per batch of lines (up to 1,000), so a late line only counts when
        # batches span less event time than its delay: over 30 days (about 7 h per batch) 50 of
        # 5,073 late lines did. In 2.4 h of events about 4.3% of all lines land beyond the watermark.
        Workload("late_events", _opts(*var, seed=12, late_share=0.05, days=0.1), "example",
                 f"{var[0]:,} events in 2.4 h of event time; 5% arrive 60 s-1 h after their timestamp, "
                 "beyond the 5 s lateness"),
    ]
    return {x.name: x for x in w}


def _key(opts: GenerateOptions) -> str:
    blob = json.dumps(dataclasses.asdict(opts), sort_keys=True).encode()
    return hashlib.blake2b(blob, digest_size=6).hexdigest()


def ensure_data(w: Workload, log=print) -> tuple[Path, dict]:
    """Return (path of the JSONL file, generation stats), generating it if not cached."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{w.name}-{w.opts.events}-{_key(w.opts)}.jsonl"
    meta_path = path.with_suffix(".meta.json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("options") == dataclasses.asdict(w.opts) and path.stat().st_size == meta.get("bytes"):
            meta["cached"] = True
            return path, meta
    log(f"  generating {w.name}: {w.opts.events:,} events, {w.opts.contacts:,} contacts -> {path.name}")
    started = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb", buffering=1 << 20) as fh:
        stats = write_events(w.opts, fh)
    tmp.replace(path)
    gc.collect()
    meta = {"options": dataclasses.asdict(w.opts), "stats": dataclasses.asdict(stats), "bytes": path.stat().st_size,
            "generate_seconds": round(time.perf_counter() - started, 1)}
    meta_path.write_text(json.dumps(meta, indent=1))
    meta["cached"] = False
    return path, meta


def config_for(w: Workload, work: Path) -> Path:
    """The rules file a workload runs with."""
    if w.config == "many_rules":
        return write_many_rules(work / "many_rules.toml")
    return EXAMPLE
