"""Line sources resume exactly where their snapshot says: no line lost, doubled or cut in two."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.sources import STOP, _LinePartition


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
    assert part.snapshot() == (str(tmp_path / "b.jsonl"), 1, 8)
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
