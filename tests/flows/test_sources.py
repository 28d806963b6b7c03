"""Line sources resume exactly where their snapshot says: no line lost, doubled or cut in two."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from flows.sources import STOP, SourceBatch, _LinePartition


@pytest.fixture(autouse=True)
def _not_stopping() -> None:
    # STOP is process-wide (a Ctrl-C stops every source): a run in an earlier test may have set it.
    STOP.clear()


def _lines(part: _LinePartition) -> list[bytes]:
    return [line for batch in part.next_batch() for line in batch.lines]


@pytest.mark.parametrize(("first", "rest"), [
    (b'{"a":1}\n{"b":', b'2}\n{"c":3}\n'),  # a writer mid-line when the snapshot is taken
    (b'{"a":1}\n', b'{"b":2}\n{"c":3}\n'),  # between lines
    (b'{"a":1}\r\n{"b', b'":2}\r\n{"c":3}\r\n'),  # Windows line endings, cut inside a line
], ids=["mid_line", "between_lines", "crlf_mid_line"])
def test_a_followed_file_resumes_at_its_snapshot(tmp_path: Path, first: bytes, rest: bytes) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(first)
    part = _LinePartition(str(path), True, None)
    assert _lines(part) == [b'{"a":1}']
    snapshot = part.snapshot()
    with path.open("ab") as fh:
        fh.write(rest)
    resumed = _LinePartition(str(path), True, snapshot)
    assert _lines(resumed) == _lines(part) == [b'{"b":2}', b'{"c":3}']
    assert resumed.snapshot() == part.snapshot() == (str(path), 3, len(first + rest))
    part.close()
    resumed.close()


@pytest.mark.parametrize(("last", "expected"), [
    (b'{"a":2}', [b'{"a":1}', b'{"a":2}', b'{"b":1}']),  # complete JSON, no newline: applied
    (b'{"a":', [b'{"a":1}', b'{"a":', b'{"b":1}']),  # cut off: handed on, for the dead letters
    (b"", [b'{"a":1}', b'{"b":1}']),  # nothing pending: nothing extra
], ids=["unterminated", "truncated", "terminated"])
def test_a_followed_directory_keeps_the_last_line_of_a_file_it_moves_past(tmp_path: Path, last: bytes,
                                                                          expected: list[bytes]) -> None:
    """A file's unterminated last line is a line once a newer file appears, not lost with the move."""
    (tmp_path / "a.jsonl").write_bytes(b'{"a":1}\n' + last)
    part = _LinePartition(str(tmp_path), True, None)
    seen = _lines(part)
    (tmp_path / "b.jsonl").write_bytes(b'{"b":1}\n')
    for _ in range(4):
        seen += _lines(part)
    assert seen == expected
    assert part.snapshot()[:3] == (str(tmp_path / "b.jsonl"), 1, 8)
    part.close()


def test_a_followed_file_truncated_in_place_is_read_again_from_its_start(tmp_path: Path) -> None:
    """logrotate's copytruncate: the lines written after the cut are read, not skipped past."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":3}\n')
    part = _LinePartition(str(path), True, None)
    assert _lines(part) == [b'{"a":1}', b'{"a":2}', b'{"a":3}']
    with path.open("r+b") as fh:
        fh.truncate(0)
    with path.open("ab") as fh:
        fh.write(b'{"b":1}\n')
    seen = _lines(part) + _lines(part) + _lines(part)
    assert seen == [b'{"b":1}']
    assert part.snapshot() == (str(path), 1, 8)
    part.close()


@pytest.mark.parametrize(("last", "expected"), [
    (b"", [b'{"b":1}']),
    (b'{"a":9}', [b'{"a":9}', b'{"b":1}']),  # the old file's unterminated last line is a line
], ids=["terminated", "unterminated"])
def test_a_followed_file_renamed_away_is_followed_to_its_new_file(tmp_path: Path, last: bytes,
                                                                  expected: list[bytes]) -> None:
    """Rotation by rename: the old file is read to its end, then the name's new file from its start."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\n')
    part = _LinePartition(str(path), True, None)
    assert _lines(part) == [b'{"a":1}']
    with path.open("ab") as fh:
        fh.write(b'{"a":2}\n' + last)
    path.rename(tmp_path / "events.jsonl.1")
    assert _lines(part) == [b'{"a":2}']  # what the writer added before the rename
    assert _lines(part) == []  # no new file yet: the old one stays open
    path.write_bytes(b'{"b":1}\n')
    seen = _lines(part) + _lines(part) + _lines(part)
    assert seen == expected
    assert part.snapshot() == (str(path), 1, 8)
    part.close()


# ------------------------------------------------------------------ compressed inputs cut short or corrupt


def _events(n: int) -> bytes:
    # Varied enough that gzip cannot squeeze them into a few bytes: a cut lands mid-stream.
    return b"".join(b'{"n":%d,"h":"%x"}\n' % (i, (i * 2654435761) % (1 << 32)) for i in range(n))


def _drain(part: _LinePartition, polls: int = 50) -> list[SourceBatch]:
    """Every batch until the partition ends (replay) or ``polls`` calls (follow)."""
    out: list[SourceBatch] = []
    for _ in range(polls):
        try:
            out += part.next_batch()
        except StopIteration:
            break
    return out


def _judged(batches: list[SourceBatch]) -> list[tuple[int, str, str]]:
    """(line number, reason, detail) of every line the source rejected itself."""
    return [(b.first_line + i, reason, detail) for b in batches for i, (reason, detail) in (b.judged or {}).items()]


@pytest.mark.parametrize(("damage", "error"), [
    (lambda blob: blob[:len(blob) // 2], "EOFError: Compressed file ended before the end-of-stream marker"),
    (lambda blob: blob[:-8] + bytes(8), "BadGzipFile: CRC check failed"),  # the trailer's checksum and size
    (lambda blob: b"not gzip at all\n", "BadGzipFile: Not a gzipped file"),
], ids=["cut_short", "bad_checksum", "not_gzip"])
def test_an_unreadable_gzip_file_dead_letters_its_rest_and_ends(tmp_path: Path, damage: Any, error: str) -> None:
    """The lines before the damage are read; the rest is one unreadable_input line; a resume does not repeat it."""
    data = _events(20_000)
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(damage(gzip.compress(data)))
    part = _LinePartition(str(path), False, None)
    batches = _drain(part)
    lines = [line for b in batches for line in b.lines]
    assert batches[-1].eof
    good = lines[:-1]
    assert good == data.splitlines()[:len(good)]  # every line before the damage, in order
    [(line_no, reason, detail)] = _judged(batches)
    assert (line_no, reason) == (len(lines), "unreadable_input")
    assert f"cannot be read past line {len(good)}: {error}" in detail and str(path) in detail
    assert part.snapshot() == (str(path), len(lines), len(b"\n".join(good)) + 1 if good else 0)
    resumed = _LinePartition(str(path), False, part.snapshot())
    assert [line for b in _drain(resumed) for line in b.lines] == []  # dead-lettered once, before the snapshot
    part.close()
    resumed.close()


def test_a_followed_gzip_file_still_being_written_is_read_whole_once_complete(tmp_path: Path) -> None:
    """A compressed file that ends mid-stream while followed waits, then reads on: no dead letter, no line twice."""
    data = _events(20_000)
    blob = gzip.compress(data)
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(blob[:len(blob) // 2])
    part = _LinePartition(str(tmp_path), True, None)
    first = _drain(part, 20)
    assert first and _judged(first) == []
    path.write_bytes(blob)  # the writer finishes
    rest = _drain(part, 20)
    assert [line for b in first + rest for line in b.lines] == data.splitlines()
    assert _judged(rest) == []
    part.close()


def test_a_followed_gzip_file_cut_short_is_dead_lettered_once_a_newer_file_appears(tmp_path: Path) -> None:
    """A newer file means the cut-short one will not grow: its rest is dead-lettered and the next file read."""
    data = _events(20_000)
    blob = gzip.compress(data)
    (tmp_path / "a.jsonl.gz").write_bytes(blob[:len(blob) // 2])
    part = _LinePartition(str(tmp_path), True, None)
    first = _drain(part, 20)
    assert _judged(first) == []
    (tmp_path / "b.jsonl").write_bytes(b'{"b":1}\n')
    rest = _drain(part, 20)
    lines = [line for b in first + rest for line in b.lines]
    assert lines[-1] == b'{"b":1}'
    good = lines[:-2]
    assert good == data.splitlines()[:len(good)]
    assert [(n, reason) for n, reason, _ in _judged(rest)] == [(len(good) + 1, "unreadable_input")]
    assert part.snapshot()[:3] == (str(tmp_path / "b.jsonl"), 1, 8)
    part.close()


# ------------------------------------------------------------------ a followed directory under log rotation


def _poll(part: _LinePartition, times: int = 4) -> list[bytes]:
    return [line for _ in range(times) for line in _lines(part)]


@pytest.mark.parametrize("compress", [False, True], ids=["renamed", "renamed_and_compressed"])
def test_a_followed_directory_reads_the_file_recreated_under_a_rotated_name(tmp_path: Path, compress: bool) -> None:
    """logrotate's default: events.jsonl becomes events.jsonl.1(.gz) and a new events.jsonl is written.

    The new file is read although its name sorts before the rotated one, the rotated one
    (or its compressed copy) is not read again, and a resume remembers both.
    """
    live = tmp_path / "events.jsonl"
    live.write_bytes(b'{"a":1}\n{"a":2}\n')
    part = _LinePartition(str(tmp_path), True, None)
    assert _poll(part) == [b'{"a":1}', b'{"a":2}']
    with live.open("ab") as fh:
        fh.write(b'{"a":3}\n')
    rotated = tmp_path / "events.jsonl.1"
    live.rename(rotated)
    if compress:
        (tmp_path / "events.jsonl.1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()
    assert _poll(part) == [b'{"a":3}']  # the rest of the old file, through its open handle
    live.write_bytes(b"")  # created empty: nothing tells it apart yet
    assert _poll(part) == []
    live.write_bytes(b'{"b":1}\n')
    assert _poll(part) == [b'{"b":1}']
    snapshot = part.snapshot()
    with live.open("ab") as fh:
        fh.write(b'{"b":2}\n')
    assert _poll(part) == [b'{"b":2}']
    resumed = _LinePartition(str(tmp_path), True, snapshot)
    assert _poll(resumed) == [b'{"b":2}']  # not the rotated file, not events.jsonl from its start
    part.close()
    resumed.close()


def test_a_followed_directory_does_not_read_a_compressed_copy_of_a_file_it_read(tmp_path: Path) -> None:
    """Hourly files compressed after the hour: the .gz copy of a finished file is not new data."""
    (tmp_path / "events-10.jsonl").write_bytes(b'{"h":10}\n')
    part = _LinePartition(str(tmp_path), True, None)
    assert _poll(part) == [b'{"h":10}']
    (tmp_path / "events-11.jsonl").write_bytes(b'{"h":11}\n')
    assert _poll(part) == [b'{"h":11}']
    (tmp_path / "events-10.jsonl.gz").write_bytes(gzip.compress(b'{"h":10}\n'))
    (tmp_path / "events-10.jsonl").unlink()
    (tmp_path / "events-11.jsonl.gz").write_bytes(gzip.compress(b'{"h":11}\n'))  # of the current file, too
    assert _poll(part) == []
    (tmp_path / "events-12.jsonl").write_bytes(b'{"h":12}\n')
    assert _poll(part) == [b'{"h":12}']
    part.close()


def test_a_followed_directory_resumes_from_a_snapshot_without_finished_files(tmp_path: Path) -> None:
    """A snapshot taken before fingerprints (file, line, offset) still resumes where it says."""
    (tmp_path / "a.jsonl").write_bytes(b'{"a":1}\n{"a":2}\n')
    resumed = _LinePartition(str(tmp_path), True, (str(tmp_path / "a.jsonl"), 1, 8))
    assert _poll(resumed) == [b'{"a":2}']
    assert resumed.snapshot()[:3] == (str(tmp_path / "a.jsonl"), 2, 16)
    resumed.close()


@pytest.mark.parametrize(("name", "follow", "result"), [
    ("later.jsonl", True, ["later.jsonl"]),
    ("later.jsonl.gz", True, ["later.jsonl.gz"]),
    ("notyet", True, ["notyet"]),
    ("later.jsonl", False, "no such file or directory"),
], ids=["followed-file", "followed-gzip", "followed-directory", "replayed"])
def test_a_missing_input_is_waited_for_only_when_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          name: str, follow: bool, result: object) -> None:
    """A followed path that does not exist yet is waited for (as a file or a directory, see below); a replayed
    one is a mistake."""
    from flows.sources import expand_inputs

    monkeypatch.chdir(tmp_path)
    if isinstance(result, list):
        assert expand_inputs([name], follow) == result
    else:
        with pytest.raises(FileNotFoundError, match=str(result)):
            expand_inputs([name], follow)


def test_a_followed_directory_of_small_files_is_read_without_pausing_between_them(tmp_path: Path) -> None:
    """After a read that handed out lines or moved to the next file the source asks to be called again at
    once; only a read that found nothing waits a poll interval (it waited after every read: a directory of
    200 files of 50 lines took 28 s)."""
    for i in range(20):
        (tmp_path / f"{i:03d}.jsonl").write_bytes(b"".join(b'{"n":%d}\n' % (i * 10 + k) for k in range(10)))
    part = _LinePartition(str(tmp_path), True, None)
    seen, calls = 0, 0
    while seen < 200 and calls < 100:
        calls += 1
        seen += sum(len(b.lines) for b in part.next_batch())
        assert part.next_awake() is None, f"paused after call {calls} with {seen} lines read"  # as Bytewax asks
    assert seen == 200
    assert part.next_batch() == [] and part.next_awake() is not None  # caught up: poll, do not spin
    part.close()


def _numbered(lo: int, hi: int) -> bytes:
    return b"".join(b'{"n":%d}\n' % n for n in range(lo, hi))


def _read_on(part: _LinePartition, calls: int = 12) -> list[bytes]:
    """The lines of a followed partition's next few reads."""
    seen: list[bytes] = []
    for _ in range(calls):
        seen += _lines(part)
    return seen


@pytest.mark.parametrize("layout", ["directory", "file"])
@pytest.mark.parametrize("regrown", [False, True], ids=["emptied", "written-past-the-read-position"])
def test_a_copytruncate_loses_no_line(tmp_path: Path, layout: str, regrown: bool) -> None:
    """logrotate's copytruncate copies the file (events.jsonl.1) and then empties it: the lines written after the
    last read are in the copy only, and are read there before the emptied file's new lines. Written again past
    the read position before the next read, the file is known truncated by its first bytes, and no line is
    spliced from the new content at the old position."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "events.jsonl"
    path.write_bytes(_numbered(0, 5))
    part = _LinePartition(str(folder if layout == "directory" else path), True, None)
    seen = _lines(part)
    assert len(seen) == 5
    with path.open("ab") as fh:
        fh.write(_numbered(5, 10))  # not read yet
    (folder / "events.jsonl.1").write_bytes(path.read_bytes())  # the copy
    with path.open("r+b") as fh:
        fh.truncate(0)
    with path.open("ab") as fh:
        fh.write(_numbered(100, 140 if regrown else 102))
    seen += _read_on(part)
    assert seen == [b'{"n":%d}' % n for n in [*range(10), *range(100, 140 if regrown else 102)]]
    part.close()


def test_a_followed_file_written_again_past_its_read_position_is_read_from_its_start(tmp_path: Path) -> None:
    """Without a copy beside it, a file truncated and written past the read position before the next read is read
    from its new start: the new content at the old position was spliced into one dead letter, the rest skipped."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(_numbered(0, 5))
    part = _LinePartition(str(path), True, None)
    assert len(_lines(part)) == 5
    with path.open("r+b") as fh:
        fh.truncate(0)
    with path.open("ab") as fh:
        fh.write(_numbered(100, 130))
    assert _read_on(part) == [b'{"n":%d}' % n for n in range(100, 130)]
    part.close()


def test_a_followed_path_created_as_a_directory_is_read_as_one(tmp_path: Path) -> None:
    """A followed path missing at the start is taken for a file; created as a directory (even with a JSONL name) its
    files are read, where opening it stopped the run."""
    path = tmp_path / "later.jsonl"
    part = _LinePartition(str(path), True, None)
    assert _lines(part) == []
    path.mkdir()
    (path / "a.jsonl").write_bytes(_numbered(0, 3))
    assert _read_on(part, 4) == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    part.close()
