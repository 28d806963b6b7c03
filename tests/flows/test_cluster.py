"""Multi-process clusters from files: identical results whatever the processes and workers."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from .conftest import CONFIG, ROOT, leadstream, run_into, tables, trigger_ids

pytestmark = pytest.mark.slow



def _dead_sources(path: Path) -> list[str]:
    return sorted(orjson.loads(x)["source"] for x in path.read_bytes().splitlines())


@pytest.mark.parametrize("extra", [("--processes", "2"), ("--processes", "2", "--workers", "2")],
                         ids=["2_processes", "2_processes_x_2_workers"])
def test_cluster_gives_the_same_results(clickstream: Path, baseline: Path, tmp_path: Path, extra: tuple[str, ...]) -> None:
    """2 processes (and 2 x 2 workers) give the 1-process tables, trigger ids and dead letters, each once."""
    res = run_into(tmp_path, [clickstream], *extra)
    assert tables(tmp_path / "warehouse.duckdb") == tables(baseline / "warehouse.duckdb")
    ids = trigger_ids(tmp_path / "triggers.jsonl")
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(trigger_ids(baseline / "triggers.jsonl"))
    assert _dead_sources(tmp_path / "dead_letters.jsonl") == _dead_sources(baseline / "dead_letters.jsonl")
    # One summary, printed by the parent after every process finished.
    assert res.stdout.count("lines read") == 1 and "reconciles" in res.stdout
    # Process 1 waited for process 0 to listen instead of being refused (a second lost each time).
    assert "retrying" not in res.stdout + res.stderr


def test_cluster_across_machines_with_process_id_and_addresses(clickstream: Path, baseline: Path, tmp_path: Path) -> None:
    """Two processes started by hand with --process-id/--addresses (the two-machine recipe) agree too."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
    out = tmp_path
    procs = [
        subprocess.Popen([sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", str(clickstream),
                          "--warehouse", str(out / "warehouse.duckdb"), "--triggers", str(out / "triggers.jsonl"),
                          "--process-id", str(i), "--addresses", addresses],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (1, 0)  # the second machine may well come up first
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert tables(out / "warehouse.duckdb") == tables(baseline / "warehouse.duckdb")
    assert sorted(trigger_ids(out / "triggers.jsonl")) == sorted(trigger_ids(baseline / "triggers.jsonl"))
    # Process 0 reports; the others only run.
    assert "lines read" in results[1][0] and "lines read" not in results[0][0]
    assert "retrying" not in results[0][0] + results[0][1]  # process 1 came up first and waited


@pytest.mark.parametrize("args, message", [
    (("--process-id", "0"), "go together"),
    (("--process-id", "2", "--addresses", "127.0.0.1:1;127.0.0.1:2"), "ids 0 to 1"),
    (("--processes", "0"), "at least 1"),
    (("--processes", "2", "--process-id", "0", "--addresses", "127.0.0.1:1;127.0.0.1:2"), "start each process"),
], ids=["id_without_addresses", "id_out_of_range", "zero_processes", "processes_and_id"])
def test_cluster_usage_errors(clickstream: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """Inconsistent cluster flags are usage errors (exit 2) that say what to do."""
    res = leadstream("run", "--config", str(CONFIG), "--input", str(clickstream), "--warehouse", str(tmp_path / "w.duckdb"),
                     "--triggers", str(tmp_path / "t.jsonl"), *args, check=False)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr


@pytest.fixture(scope="module")
def late_clickstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5% of 20k events arrive 1 minute to 1 hour late, in 2.4 hours of events: many batches of lines late."""
    from leadstream.generate import GenerateOptions, write_events

    path = tmp_path_factory.mktemp("late") / "events.jsonl"
    with path.open("wb") as fh:
        write_events(GenerateOptions(events=20_000, contacts=1_500, seed=12, late_share=0.05, days=0.1), fh)
    return path


def test_late_events_give_the_same_results_whatever_the_processes(late_clickstream: Path, tmp_path: Path) -> None:
    """Events beyond the allowed lateness land at the same place in 1 or 2 processes: equal tables and triggers."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_into(one, [late_clickstream])
    run_into(two, [late_clickstream], "--processes", "2")
    late = tables(one / "warehouse.duckdb")
    with duckdb.connect(str(one / "warehouse.duckdb"), read_only=True) as con:
        counted = con.execute("SELECT late FROM snapshots ORDER BY snapshot_id DESC LIMIT 1").fetchone()[0]
    assert counted > 300
    assert tables(two / "warehouse.duckdb") == late
    assert sorted(trigger_ids(two / "triggers.jsonl")) == sorted(trigger_ids(one / "triggers.jsonl"))
