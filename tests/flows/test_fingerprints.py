"""Fingerprints of a followed directory's files: what tells a new file from a rotated or compressed copy."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from flows.fingerprints import Fingerprints, read
from flows.lines import MAX_LINE_BYTES


@pytest.mark.parametrize(("a", "b", "same"), [
    (b'{"a":1}\n{"a":2}\n', b'{"a":1}\n', True),  # only the first line counts
    (b'{"a":1}\n', b'{"a":1}\r\n', True),  # whatever its line ending
    (b'{"a":1}\n', b'{"a":2}\n', False),
    (b"x" * MAX_LINE_BYTES + b"tail\n", b"x" * MAX_LINE_BYTES + b"other\n", True),  # a long line: its start
], ids=["later_lines", "crlf", "different", "long_first_line"])
def test_files_are_known_by_their_first_line(tmp_path: Path, a: bytes, b: bytes, same: bool) -> None:
    (tmp_path / "a.jsonl").write_bytes(a)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b))  # compressed or not alike
    fa, fb = read(str(tmp_path / "a.jsonl")), read(str(tmp_path / "b.jsonl.gz"))
    assert fa is not None and fb is not None
    assert (fa == fb) is same


@pytest.mark.parametrize("data", [b"", b'{"a":1', b"\x1f\x8b broken"], ids=["empty", "unfinished_line", "bad_gzip"])
def test_a_file_without_a_complete_first_line_has_no_fingerprint_yet(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / ("x.jsonl.gz" if data.startswith(b"\x1f") else "x.jsonl")
    path.write_bytes(data)
    assert read(str(path)) is None


def test_a_blank_first_line_falls_back_to_the_files_identity(tmp_path: Path) -> None:
    """Two files starting with a blank line are two files."""
    (tmp_path / "a.jsonl").write_bytes(b"\n{}\n")
    (tmp_path / "b.jsonl").write_bytes(b"\n{}\n")
    fa, fb = read(str(tmp_path / "a.jsonl")), read(str(tmp_path / "b.jsonl"))
    assert fa is not None and fb is not None and fa != fb and fa.startswith("inode:")


def test_the_cache_notices_a_new_file_under_the_same_name(tmp_path: Path) -> None:
    """A fingerprint is kept while the file only grows; a replaced or truncated file is read again."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\n')
    fps = Fingerprints()
    first = fps.of(str(path))
    with path.open("ab") as fh:
        fh.write(b'{"a":2}\n')
    assert fps.of(str(path)) == first
    path.rename(tmp_path / "old.jsonl")
    path.write_bytes(b'{"b":1}\n')  # a new inode
    assert fps.of(str(path)) not in (None, first)
    inode = path.stat().st_ino
    path.write_bytes(b"{}\n")  # truncated in place and rewritten: the same inode, shorter
    assert path.stat().st_ino == inode
    assert fps.of(str(path)) == read(str(path)) != first
    assert fps.of(str(tmp_path / "missing.jsonl")) is None
