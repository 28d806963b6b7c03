"""Helpers of the `leadstream run` command that turn flags into flow options."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from leadstream.commands import cut_lines


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"cut_every": 25_000}, 25_000),  # one process
        ({"cut_every": 25_000, "addresses": "127.0.0.1:1;127.0.0.1:2"}, 50_000),  # two processes share the shards
        ({"cut_every": 10_000, "addresses": "a:1;b:1;c:1"}, 30_000),
        ({"cut_every": 0, "addresses": "a:1;b:1"}, 0),  # by time only, whatever the cluster
        ({}, 7),  # a Namespace built without the flag (the demo) gets the default
    ],
    ids=["single", "two-processes", "three-processes", "time-only", "default"],
)
def test_cut_lines_are_per_process(flags: dict, expected: int) -> None:
    """--cut-every counts lines per process: a cluster of N processes cuts every N times as many lines."""
    assert cut_lines(argparse.Namespace(**flags), 7) == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--processes", "0"], "--processes must be at least 1"),
        (["--cut-every", "-5"], "--cut-every must be a number of lines, or 0 for cuts by time only; got -5"),
        (["--snapshot-interval", "0"], "--snapshot-interval must be a positive number of seconds (default 10); got 0.0"),
        (["--snapshot-interval", "-1"], "--snapshot-interval must be a positive number of seconds (default 10); got -1.0"),
        (["--snapshot-interval", "nan"], "--snapshot-interval must be a positive number of seconds (default 10); got nan"),
        (["--epoch-interval", "0"], "--epoch-interval must be a positive number of seconds (default 10); got 0.0"),
        (["--epoch-interval", "inf"], "--epoch-interval must be a positive number of seconds (default 10); got inf"),
        (["--process-id", "0"], "--process-id and --addresses go together"),
        (["--shards", "0"], "--shards must be a whole number from 1 to 256 (default: [settings] shards of the "
                            "config, 16 if unset); got 0"),
        (["--shards", "5000"], "--shards must be a whole number from 1 to 256"),
        (["--webhook", "notaurl"], "--webhook notaurl: expected an http:// or https:// URL with a host"),
        (["--webhook", "ftp://x/hook"], "--webhook ftp://x/hook: expected an http:// or https:// URL"),
        (["--webhook", "http://127.0.0.1:99999/"], "--webhook http://127.0.0.1:99999/: the port is out of range"),
        (["--webhook", "http://h/", "--webhook-backoff", "nan"], "--webhook-backoff must be a number of seconds, 0 or more"),
        (["--webhook", "http://h/", "--webhook-backoff", "-1"], "--webhook-backoff must be a number of seconds, 0 or more"),
        (["--warehouse", "/proc/w.duckdb"], "--warehouse /proc/w.duckdb: cannot write in /proc"),
        (["--recovery", "/proc/self"], "--recovery /proc/self: cannot write in it"),
    ],
    ids=["workers", "processes", "cut-every", "snapshot-zero", "snapshot-negative", "snapshot-nan", "epoch-zero",
         "epoch-inf", "process-id-alone", "shards-zero", "shards-too-many", "webhook-not-a-url", "webhook-ftp",
         "webhook-port", "backoff-nan", "backoff-negative", "warehouse-unwritable", "recovery-unwritable"],
)
def test_run_refuses_flag_mistakes_before_it_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                                    message: str) -> None:
    """A flag mistake is exit status 2 with the flag, what was expected and what was given; nothing is written."""
    from leadstream.cli import main

    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "page", "anonymousId": "a-1", "messageId": "m-1", "timestamp": "2026-01-05T08:00:00Z"}\n')
    out = tmp_path / "out"
    config = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"
    argv = ["run", "--config", str(config), "--input", str(events), "--warehouse", str(out / "w"),
            "--triggers", str(out / "t.jsonl"), "--quiet", *flags]
    assert main(argv) == 2
    assert f"leadstream run: {message}" in capsys.readouterr().err
    assert not (out / "w").exists() and not (out / "t.jsonl").exists()


@pytest.mark.parametrize(
    ("files", "said", "status"),
    [
        (["a.jsonl", "b.log", "notes.txt", ".DS_Store"], "not reading 2 file(s) whose names do not end with "
         ".jsonl, .json, .jsonl.gz, .ndjson, .gz: b.log, notes.txt", 0),
        (["x.log"], "--input names no JSONL files (a directory's files must end with .jsonl, .json, .jsonl.gz, "
         ".ndjson, .gz; rename them, or point --input at the files themselves)", 2),
    ],
    ids=["some-ignored", "none-readable"],
)
def test_run_says_which_files_of_a_directory_it_does_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              files: list[str], said: str, status: int) -> None:
    """Files a directory input skips are named on stderr (hidden ones aside), not passed over in silence."""
    from leadstream.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for name in files:
        (folder / name).write_text('{"type": "page", "anonymousId": "a-1", "timestamp": "2026-01-05T08:00:00Z"}\n')
    out = tmp_path / "out"
    config = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"
    argv = ["run", "--config", str(config), "--input", str(folder), "--warehouse", str(out / "w"),
            "--triggers", str(out / "t.jsonl"), "--quiet"]
    assert main(argv) == status
    err = capsys.readouterr().err
    assert said in err and ".DS_Store" not in err


@pytest.mark.parametrize(
    ("setup", "flags", "message"),
    [
        ("dir", ["--warehouse", "{tmp}/taken"], "--warehouse {tmp}/taken: is a directory; name a file in it, such as "
                                                "{tmp}/taken/warehouse.duckdb"),
        ("dir", ["--triggers", "{tmp}/taken"], "--triggers {tmp}/taken: is a directory"),
        ("file", ["--warehouse", "{tmp}/taken/w.duckdb"], "--warehouse {tmp}/taken/w.duckdb: a part of {tmp}/taken is "
                                                           "a file, not a folder"),
        ("file", ["--recovery", "{tmp}/taken"], "--recovery {tmp}/taken: is a file"),
        ("junk", ["--recovery", "{tmp}/taken"], "--recovery {tmp}/taken: holds files but no saved state"),
    ],
    ids=["warehouse-is-a-dir", "triggers-is-a-dir", "warehouse-under-a-file", "recovery-is-a-file",
         "recovery-not-a-state"],
)
def test_run_refuses_unusable_outputs_before_it_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str,
                                                      flags: list[str], message: str) -> None:
    """An output that cannot be written is exit status 2 before any input is read (not a panic at the end)."""
    from leadstream.cli import main

    taken = tmp_path / "taken"
    if setup == "dir":
        taken.mkdir()
    elif setup == "file":
        taken.write_text("x")
    else:
        taken.mkdir()
        (taken / "notes.txt").write_text("x")
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "page", "anonymousId": "a-1", "messageId": "m-1", "timestamp": "2026-01-05T08:00:00Z"}\n')
    config = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"
    base = {"--warehouse": str(tmp_path / "w.duckdb"), "--triggers": str(tmp_path / "t.jsonl")}
    for i in range(0, len(flags), 2):
        base[flags[i]] = flags[i + 1].format(tmp=tmp_path)
    argv = ["run", "--config", str(config), "--input", str(events), "--quiet", *[x for kv in base.items() for x in kv]]
    assert main(argv) == 2
    assert f"leadstream run: {message.format(tmp=tmp_path)}" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--events", "-1"], "--events must be 0 or more, got -1"),
    (["--dir", "{tmp}/file"], "--dir {tmp}/file: is a file"),
], ids=["events", "dir-is-a-file"])
def test_demo_refuses_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    """The demo checks its flags before it generates anything."""
    from leadstream.cli import main

    (tmp_path / "file").write_text("x")
    argv = ["demo", "--dir", str(tmp_path / "demo"), *[f.format(tmp=tmp_path) for f in flags]]
    assert main(argv) == 2
    assert f"leadstream demo: {message.format(tmp=tmp_path)}" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_run_says_an_input_directory_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty input directory is named as such, with what to do."""
    from leadstream.cli import main

    (tmp_path / "in").mkdir()
    config = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"
    argv = ["run", "--config", str(config), "--input", str(tmp_path / "in"), "--warehouse", str(tmp_path / "w"),
            "--triggers", str(tmp_path / "t.jsonl"), "--quiet"]
    assert main(argv) == 2
    assert f"--input {tmp_path / 'in'}: the directory is empty (add files, or use --follow" in capsys.readouterr().err


def test_segment_sql_needs_no_warehouse_with_at(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sql prints the query; with --at it does not need a warehouse to find the time windows end at."""
    from leadstream.cli import main

    config = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"
    base = ["segment", "hot_leads", "--config", str(config), "--warehouse", str(tmp_path / "none.duckdb"), "--sql"]
    assert main([*base, "--at", "2026-01-05T08:00:00Z"]) == 0
    assert capsys.readouterr().out.startswith("SELECT c.contact_id")
    assert main(base) == 2
    assert "(or, for --sql alone, give --at)" in capsys.readouterr().err


@pytest.mark.parametrize(("inside", "flags", "message"), [
    (False, ["--triggers", "{input}"], "--triggers {input}: is an input of this run too, and writing it would empty it"),
    (False, ["--dead-letter", "{input}"], "--dead-letter {input}: is an input of this run too"),
    (False, ["--warehouse", "{input}"], "--warehouse {input}: is an input of this run too"),
    (True, ["--triggers", "{input}/triggers.jsonl"], "--triggers {input}/triggers.jsonl: is inside the input directory "
                                                     "{input}, which would read it as input"),
    (True, ["--triggers", "{tmp}/t.jsonl"], ""),  # beside the input directory, dead letters too: fine
], ids=["triggers-is-the-input", "dead-letters-is-the-input", "warehouse-is-the-input", "triggers-in-input-dir",
        "fine-outside"])
def test_run_refuses_outputs_that_are_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str], inside: bool,
                                             flags: list[str], message: str) -> None:
    """An output that is an input file (it was emptied) or inside an input directory (a followed one read
    its own dead letters back, each quoting the last) is refused, and the input is untouched."""
    from leadstream.cli import main

    line = '{"type": "page", "anonymousId": "a-1", "messageId": "m-1", "timestamp": "2026-01-05T08:00:00Z"}\n'
    if inside:
        source = tmp_path / "in"
        source.mkdir()
        (source / "events.jsonl").write_text(line)
    else:
        source = tmp_path / "events.jsonl"
        source.write_text(line)
    config = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"
    base = {"--warehouse": str(tmp_path / "w.duckdb"), "--triggers": str(tmp_path / "t.jsonl")}
    for i in range(0, len(flags), 2):
        base[flags[i]] = flags[i + 1].format(input=source, tmp=tmp_path)
    argv = ["run", "--config", str(config), "--input", str(source), "--quiet", *[x for kv in base.items() for x in kv]]
    if not message:
        assert main(argv) == 0
        return
    assert main(argv) == 2
    assert f"leadstream run: {message.format(input=source, tmp=tmp_path)}" in capsys.readouterr().err
    assert (source / "events.jsonl" if inside else source).read_text() == line


@pytest.mark.parametrize("buffered", [0, 1])
def test_the_summary_shows_what_it_adds_up(buffered: int) -> None:
    """The reconciliation the summary claims adds up from the lines it prints: buffered lines are shown when a
    snapshot has some (lines read 100 with 99 accepted claimed to reconcile)."""
    import io

    from leadstream.commands import print_summary

    s = {"published": True, "warehouse": "w", "lines_read": 100, "accepted": 100 - buffered, "dead_lettered": 0,
         "dead_letter_file": "d", "duplicates": 0, "late": 0, "buffered": buffered, "contacts": 1,
         "known_contacts": 0, "triggers": 0, "triggers_file": "t", "triggers_by_action": {}, "elapsed_s": 1.0,
         "lines_per_s": 100.0, "resumed_after": None, "snapshots": 1}
    out = io.StringIO()
    print_summary(s, out)
    text = out.getvalue()
    assert "(reconciles: accepted + dead-lettered + duplicates" in text
    assert ("buffered" in text) == bool(buffered)
    if buffered:
        assert "+ buffered)" in text and "buffered                  1" in text


def test_a_second_run_on_the_same_outputs_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    """Two runs writing one warehouse or triggers file interleaved their output; the second is refused with exit 2
    and the first one's process id, and once the first has ended (its lock goes with it) a run goes ahead."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    config = root / "examples" / "marketing.toml"
    live = tmp_path / "live.jsonl"
    live.write_text('{"type": "page", "anonymousId": "a-1", "messageId": "m-1", "timestamp": "2026-01-05T08:00:00Z"}\n')
    outputs = ["--warehouse", str(tmp_path / "out" / "w.duckdb"), "--triggers", str(tmp_path / "out" / "t.jsonl")]
    first = subprocess.Popen([sys.executable, "-m", "leadstream.cli", "run", "--config", str(config), "--input",
                              str(live), "--follow", "--quiet", *outputs], cwd=root, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "out" / ".w.duckdb.lock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "leadstream.cli", "run", "--config", str(config), "--input",
                                 str(live), "--quiet", *outputs], cwd=root, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"another run (process {first.pid}) is writing it" in second.stderr, second.stderr
        link = tmp_path / "elsewhere" / "t.jsonl"  # the same triggers file through a symlink
        link.parent.mkdir()
        link.symlink_to(tmp_path / "out" / "t.jsonl")
        by_link = subprocess.run([sys.executable, "-m", "leadstream.cli", "run", "--config", str(config), "--input",
                                  str(live), "--quiet", "--warehouse", str(tmp_path / "elsewhere" / "w.duckdb"),
                                  "--triggers", str(link)], cwd=root, capture_output=True, text=True, timeout=120)
        assert by_link.returncode == 2 and "--triggers" in by_link.stderr and "is writing it" in by_link.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    third = subprocess.run([sys.executable, "-m", "leadstream.cli", "run", "--config", str(config), "--input",
                            str(live), "--quiet", *outputs], cwd=root, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr


def test_a_run_that_fails_says_why_and_what_to_do_last(tmp_path: Path) -> None:
    """A failure inside the flow (here a recovery folder whose state is not a database) ends with one line that
    names the innermost cause and what to do, after the traceback kept for a bug report; exit status 1."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "page", "anonymousId": "a-1", "messageId": "m-1", "timestamp": "2026-01-05T08:00:00Z"}\n')
    argv = [sys.executable, "-m", "leadstream.cli", "run", "--config", str(root / "examples" / "marketing.toml"),
            "--input", str(events), "--warehouse", str(tmp_path / "w.duckdb"), "--triggers", str(tmp_path / "t.jsonl"),
            "--recovery", str(tmp_path / "rec"), "--quiet"]
    assert subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=120).returncode == 0
    (tmp_path / "rec" / "part-0.sqlite3").write_bytes(b"\x00not a database" * 100)
    res = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-2:]
    assert last[0].startswith("leadstream run: the run failed: ") and "file is not a database" in last[0], last
    assert "Fix the cause, then run the same command again" in last[1]


def test_a_resumed_runs_summary_counts_what_this_run_read() -> None:
    """Killed before its first publication, a resumed run's summary said "resumed after 0" and counted every line
    as this run's; one process now counts what its sources read, and the rest was read before."""
    import io

    from leadstream.commands import print_summary

    s = {"published": True, "warehouse": "w", "lines_read": 50_000, "accepted": 50_000, "dead_lettered": 0,
         "dead_letter_file": "d", "duplicates": 0, "late": 0, "buffered": 0, "contacts": 1, "known_contacts": 0,
         "triggers": 0, "triggers_file": "t", "triggers_by_action": {}, "elapsed_s": 1.0, "lines_per_s": 14_967.0,
         "resumed_after": 0, "snapshots": 1, "lines_this_run": 14_967}
    out = io.StringIO()
    print_summary(s, out)
    assert "(14,967 lines this run, resumed after 35,033)" in out.getvalue()
    del s["lines_this_run"]  # a cluster's parent: from the published snapshots, as before
    out = io.StringIO()
    print_summary(s, out)
    assert "(50,000 lines this run, resumed after 0)" in out.getvalue()
