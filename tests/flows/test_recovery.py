"""Kill and resume: `kill -9` at random points, restart with the same --recovery directory, compare (P3)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from leadstream.generate import GenerateOptions, write_events

from .conftest import CONFIG, ROOT, last_snapshot, run_into, tables, trigger_ids

pytestmark = pytest.mark.slow

# Sized so that one clean run takes ~10 s on the 2-core CI machine: recovery snapshots every
# shard that changed each epoch, so a 1-second epoch roughly doubles the run's cost.
LINES = 80_000
KILLS = 3


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "events.jsonl"
    with path.open("wb") as fh:
        # A day of events, 2% of them written up to an hour late: about 300 land beyond the
        # watermark, so where late events apply is held to P3 as well.
        write_events(GenerateOptions(events=LINES, contacts=5_000, seed=23, late_share=0.02, days=1.0), fh)
    return path


@pytest.fixture(scope="module")
def clean_run(big_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run."""
    out = tmp_path_factory.mktemp("clean")
    run_into(out, [big_log])
    return out


def _descendants(pid: int) -> list[int]:
    """Child processes of pid (the spawned cluster processes), from /proc."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                kids.append(int(entry.name))
    return kids


def _kill_all(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 every process of the run, the cluster processes first, each by its PID."""
    for kid in _descendants(proc.pid):
        try:
            os.kill(kid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("extra", [(), ("--processes", "2")], ids=["1_process", "2_processes"])
def test_kill_and_resume_gives_the_uninterrupted_results(big_log: Path, clean_run: Path, tmp_path: Path,
                                                         extra: tuple[str, ...]) -> None:
    """After 3 kill -9 at random points and restarts: same tables, every trigger id, none twice."""
    out = tmp_path
    args = ["--recovery", str(out / "recovery"), "--epoch-interval", "1", "--snapshot-interval", "2", *extra]
    cmd = [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", str(big_log),
           "--warehouse", str(out / "warehouse.duckdb"), "--triggers", str(out / "triggers.jsonl"),
           "--dead-letter", str(out / "dead_letters.jsonl"), "--quiet", *args]
    rng = random.Random(f"kill-{extra}")
    kills = 0
    written_at_kill = []
    full = (clean_run / "triggers.jsonl").stat().st_size
    for k in range(KILLS):
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Kill at a point of progress, not of time: somewhere in the k-th quarter of the
        # output, however fast the machine is today (a resume first cuts the file back).
        target = full * (k + rng.uniform(0.6, 1.0)) / (KILLS + 1)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if (out / "triggers.jsonl").exists() and (out / "triggers.jsonl").stat().st_size >= target:
                break
            time.sleep(0.02)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
            break  # it finished before the kill: the later runs simply resume a finished run
        _kill_all(proc)
        kills += 1
        written_at_kill.append((out / "triggers.jsonl").stat().st_size if (out / "triggers.jsonl").exists() else 0)
    assert kills >= 2, "the run finished before it could be killed twice: make the log longer"
    # Some kill came after output was written: the resume had to cut the file back to its snapshot.
    assert max(written_at_kill) > 0, written_at_kill
    run_into(out, [big_log], *args)  # the last restart runs to the end
    got, want = tables(out / "warehouse.duckdb"), tables(clean_run / "warehouse.duckdb")
    for name in want:
        assert got[name] == want[name], f"table {name} differs after {kills} kills"
    ids = trigger_ids(out / "triggers.jsonl")
    assert len(ids) == len(set(ids)), "the triggers JSONL holds a trigger twice"
    assert set(trigger_ids(clean_run / "triggers.jsonl")) <= set(ids)
    assert sorted(ids) == sorted(trigger_ids(clean_run / "triggers.jsonl"))
    dead = (out / "dead_letters.jsonl").read_bytes().splitlines()
    assert sorted(dead) == sorted((clean_run / "dead_letters.jsonl").read_bytes().splitlines())
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT trigger_id) FROM triggers").fetchone()
    finally:
        con.close()
    assert total == distinct == len(ids)
    late = last_snapshot(clean_run / "warehouse.duckdb")["late"]
    assert late > 100 and last_snapshot(out / "warehouse.duckdb")["late"] == late
