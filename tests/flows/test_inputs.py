"""Inputs: stdin, and --follow tailing new lines and new files until SIGTERM ends the run cleanly."""

from __future__ import annotations

import gzip
import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.progress import PROGRESS, ProgressDisplay

from .conftest import CONFIG, ROOT, last_snapshot, run_into, tables, trigger_ids

pytestmark = pytest.mark.slow


def test_stdin_reads_like_a_file(clickstream: Path, baseline: Path, tmp_path: Path) -> None:
    """`--input -` reads the same lines from standard input, with the same results."""
    with clickstream.open("rb") as fh:
        res = subprocess.run(
            [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", "-",
             "--warehouse", str(tmp_path / "w.duckdb"), "--triggers", str(tmp_path / "t.jsonl"), "--quiet"],
            stdin=fh, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
    assert res.returncode == 0, res.stderr
    assert tables(tmp_path / "w.duckdb") == tables(baseline / "warehouse.duckdb")


def _wait_for_lines(path: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_bytes().splitlines()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {n} lines")


def _follow_then_compare(folder: Path, lines: list[bytes], tmp_path: Path, change: Callable[[], None]) -> None:
    """Follow ``folder``, let ``change`` write the rest of ``lines`` once triggers flow, stop with
    SIGTERM once every line is in, and compare with a replay of ``lines``: every line read once,
    the same trigger ids, the same contacts."""
    out = tmp_path / "live"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", str(folder), "--follow",
         "--warehouse", str(out / "w.duckdb"), "--triggers", str(out / "t.jsonl"), "--snapshot-interval", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for_lines(out / "t.jsonl", 1)
        change()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "w.duckdb").exists() and last_snapshot(out / "w.duckdb")["lines_read"] >= len(lines):
                break
            time.sleep(0.2)
        time.sleep(1.5)  # a line read twice would show up by now
        assert proc.poll() is None, "a followed run keeps going at the end of its files"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert f"lines read     {len(lines):>12,}" in stdout, stdout
    replay = tmp_path / "replay.jsonl"
    replay.write_bytes(b"".join(lines))
    run_into(tmp_path / "replayed", [replay])
    assert sorted(trigger_ids(out / "t.jsonl")) == sorted(trigger_ids(tmp_path / "replayed" / "triggers.jsonl"))
    assert tables(out / "w.duckdb")["contacts"] == tables(tmp_path / "replayed" / "warehouse.duckdb")["contacts"]


def test_follow_tails_new_lines_and_new_files(clickstream: Path, tmp_path: Path) -> None:
    """A followed directory picks up appended lines and new files; SIGTERM ends with a final snapshot.

    The result equals a replay of the same lines: same trigger ids, same contacts.
    """
    lines = clickstream.read_bytes().splitlines(keepends=True)[:9000]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"".join(lines[:3000]))

    def change() -> None:
        with (folder / "a.jsonl").open("ab") as fh:
            fh.write(b"".join(lines[3000:6000]))
        time.sleep(1.0)
        (folder / "b.jsonl").write_bytes(b"".join(lines[6000:]))

    _follow_then_compare(folder, lines, tmp_path, change)


def test_follow_survives_logrotate(clickstream: Path, tmp_path: Path) -> None:
    """logrotate's default on a followed directory: events.jsonl renamed, compressed, recreated.

    Every line is read once (the compressed copy is not read again, the new events.jsonl is
    read although its name sorts first), and the result equals a replay of the same lines.
    """
    lines = clickstream.read_bytes().splitlines(keepends=True)[:9000]
    folder = tmp_path / "in"
    folder.mkdir()
    live = folder / "events.jsonl"
    live.write_bytes(b"".join(lines[:3000]))

    def change() -> None:
        with live.open("ab") as fh:
            fh.write(b"".join(lines[3000:6000]))
        time.sleep(1.0)
        rotated = folder / "events.jsonl.1"
        live.rename(rotated)
        live.write_bytes(b"".join(lines[6000:]))
        (folder / "events.jsonl.1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()

    _follow_then_compare(folder, lines, tmp_path, change)


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal() -> None:
    """On a terminal a status line with percent, lines and rate is redrawn; elsewhere nothing is printed."""
    PROGRESS.add_total("p", 1000)
    PROGRESS.add_read("p", 500, 42)
    tty = _FakeTerminal()
    with ProgressDisplay(interval=0.01, stream=tty):
        time.sleep(0.1)
    assert "lines/s" in tty.getvalue() and "%" in tty.getvalue()
    pipe = io.StringIO()
    with ProgressDisplay(interval=0.01, stream=pipe):
        time.sleep(0.05)
    assert pipe.getvalue() == ""


def test_a_replay_stopped_early_says_so_and_exits_nonzero(tmp_path: Path) -> None:
    """Ctrl-C during a replay applies and publishes what was read, and the summary and the exit status
    (128 + SIGINT) say the input was not read to its end, where it used to look like a complete run."""
    from leadstream.generate import GenerateOptions, write_events

    from .conftest import last_snapshot

    data = tmp_path / "events.jsonl"
    with data.open("wb") as fh:
        write_events(GenerateOptions(events=300_000, contacts=20_000, seed=5), fh)
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", str(data),
         "--warehouse", str(tmp_path / "w.duckdb"), "--triggers", str(tmp_path / "t.jsonl")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "w.duckdb").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the first snapshot: reading is under way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "STOPPED EARLY  by SIGINT: the input was not read to its end" in out
    assert "(reconciles" in out
    assert 0 < last_snapshot(tmp_path / "w.duckdb")["lines_read"] < 300_000


def test_a_live_pipe_is_applied_as_it_comes_and_its_end_ends_the_run(clickstream: Path, tmp_path: Path) -> None:
    """`producer | leadstream run --input - --follow`: lines are applied while the pipe stays open (the
    read once waited for a whole batch or the pipe's end), and closing the pipe ends the run cleanly."""
    lines = clickstream.read_bytes().splitlines(keepends=True)[:3000]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", "-", "--follow",
         "--warehouse", str(out / "w.duckdb"), "--triggers", str(out / "t.jsonl"), "--snapshot-interval", "1",
         "--quiet"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"".join(lines))
        proc.stdin.flush()
        _wait_for_lines(out / "t.jsonl", 1)  # triggers while the pipe is still open
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "w.duckdb").exists() and last_snapshot(out / "w.duckdb")["lines_read"] == len(lines):
                break
            time.sleep(0.2)
        assert last_snapshot(out / "w.duckdb")["lines_read"] == len(lines)
        assert proc.poll() is None  # still following
    finally:
        proc.stdin.close()
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""


def test_a_second_ctrl_c_aborts_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C twice gives up at once: exit status 130 and what that means, not Bytewax's traceback."""
    from leadstream.generate import GenerateOptions, write_events

    data = tmp_path / "events.jsonl"
    with data.open("wb") as fh:
        write_events(GenerateOptions(events=300_000, contacts=20_000, seed=6), fh)
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", str(data),
         "--warehouse", str(tmp_path / "w.duckdb"), "--triggers", str(tmp_path / "t.jsonl"), "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "w.duckdb").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGINT again: aborted: what was read since the last snapshot is not in the outputs" in err
    assert "Traceback" not in err and "panicked" not in err, err
