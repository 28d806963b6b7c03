"""Reading complete lines in batches: line endings, a writer mid-line, and the batch limits."""

from __future__ import annotations

import io

import pytest

from flows.lines import read_lines


@pytest.mark.parametrize("data, keep, max_lines, max_bytes, lines, size, partial", [
    (b"a\nbb\r\nccc\n", False, 10, 1 << 20, [b"a", b"bb", b"ccc"], 10, b""),
    (b"a\nlast", False, 10, 1 << 20, [b"a", b"last"], 6, b""),  # the end of a finished file is a line
    (b"a\nhalf", True, 10, 1 << 20, [b"a"], 2, b"half"),  # a followed file's writer is mid-line
    (b"a\nb\nc\nd\n", False, 2, 1 << 20, [b"a", b"b"], 4, b""),
    (b"aaaa\nbbbb\ncccc\n", False, 10, 6, [b"aaaa", b"bbbb"], 10, b""),  # stops once past the byte limit
    (b"", True, 10, 1 << 20, [], 0, b""),
], ids=["endings", "last_line", "partial_kept", "line_limit", "byte_limit", "empty"])
def test_one_batch(data: bytes, keep: bool, max_lines: int, max_bytes: int, lines: list[bytes], size: int,
                   partial: bytes) -> None:
    """What one call returns, with the bytes it consumed."""
    assert read_lines(io.BytesIO(data), b"", keep, max_lines, max_bytes) == (lines, size, partial)


def test_a_partial_line_is_completed_by_the_next_read() -> None:
    """The fragment kept from one call starts the line the next call completes; its bytes count then."""
    fh = io.BytesIO(b"one\ntw")
    lines, size, partial = read_lines(fh, b"", True, 10, 1 << 20)
    assert (lines, size, partial) == ([b"one"], 4, b"tw")
    fh.write(b"o\nthree\n")  # the writer finishes its line
    fh.seek(6)
    assert read_lines(fh, partial, True, 10, 1 << 20) == ([b"two", b"three"], 10, b"")
