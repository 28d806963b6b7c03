"""Shared fixtures for end-to-end runs of the real flow in real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from leadstream.generate import GenerateOptions, write_events

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "marketing.toml"
# Tables compared between runs; `snapshots` differs in wall-clock columns by design.
TABLES = ("contacts", "contact_scores", "identities", "merges", "segment_members", "triggers", "events")


def leadstream(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the leadstream CLI in a child process, as a user would."""
    res = subprocess.run([sys.executable, "-m", "leadstream.cli", *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"leadstream {' '.join(args)} exited {res.returncode}:\n{res.stderr}\n{res.stdout}")
    return res


def run_into(out: Path, inputs: list[Path], *extra: str, config: Path = CONFIG) -> subprocess.CompletedProcess[str]:
    """Run the flow over inputs into a folder: warehouse.duckdb, triggers.jsonl, dead_letters.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    return leadstream("run", "--config", str(config), "--input", *map(str, inputs), "--warehouse", str(out / "warehouse.duckdb"),
                      "--triggers", str(out / "triggers.jsonl"), "--dead-letter", str(out / "dead_letters.jsonl"), *extra)


def tables(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every compared table of a warehouse, rows sorted, read by this (second) process."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
    finally:
        con.close()


def last_snapshot(warehouse: Path) -> dict[str, Any]:
    """The newest snapshots row as a dict."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute("SELECT * FROM snapshots ORDER BY snapshot_id DESC LIMIT 1")
        cols = [d[0] for d in cur.description]
        return dict(zip(cols, cur.fetchone()))
    finally:
        con.close()


def trigger_ids(path: Path) -> list[str]:
    """Trigger ids of a triggers JSONL file, in file order."""
    return [orjson.loads(line)["trigger_id"] for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def clickstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated clickstream: 20k lines, 1,500 people, malformed lines, duplicates, disorder."""
    path = tmp_path_factory.mktemp("data") / "events.jsonl"
    with path.open("wb") as fh:
        write_events(GenerateOptions(events=20_000, contacts=1_500, seed=11), fh)
    return path


@pytest.fixture(scope="session")
def baseline(clickstream: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One plain run (1 worker) over the clickstream; other tests compare against it."""
    out = tmp_path_factory.mktemp("baseline")
    run_into(out, [clickstream])
    return out
