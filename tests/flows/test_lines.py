"""Reading complete lines in batches: line endings, a writer mid-line, the batch limits and over-long lines."""

from __future__ import annotations

import io
import os

import pytest

from engine.decode import MAX_EVENT_BYTES
from flows.lines import MAX_LINE_BYTES, LineReader, PipeInput
from schemas import load_schema


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
    reader = LineReader(io.BytesIO(data), keep)
    assert reader.read(max_lines, max_bytes) == (lines, size, None)
    assert reader.partial == partial


def test_a_partial_line_is_completed_by_the_next_read() -> None:
    """The fragment kept from one call starts the line the next call completes; its bytes count then."""
    fh = io.BytesIO(b"one\ntw")
    reader = LineReader(fh, keep_partial=True)
    assert reader.read(10, 1 << 20) == ([b"one"], 4, None)
    assert (reader.partial, reader.pending) == (b"tw", 2)
    fh.write(b"o\nthree\n")  # the writer finishes its line
    fh.seek(6)
    assert reader.read(10, 1 << 20) == ([b"two", b"three"], 10, None)
    assert reader.pending == 0


# Lines over the reader's limit (8 bytes here) come cut to it, with their real size by index.
@pytest.mark.parametrize("data, keep, lines, size, oversize", [
    (b"12345678\nok\n", False, [b"12345678", b"ok"], 12, None),  # exactly the limit: whole
    (b"12345678\r\nok\n", False, [b"12345678", b"ok"], 13, None),
    (b"123456789\nok\n", False, [b"12345678", b"ok"], 13, {0: 9}),
    (b"ok\n" + b"x" * 30 + b"\nok\n", False, [b"ok", b"x" * 8, b"ok"], 37, {1: 30}),
    (b"x" * 30 + b"\r\n", False, [b"x" * 8], 32, {0: 30}),
    (b"ok\n" + b"x" * 30, False, [b"ok", b"x" * 8], 33, {1: 30}),  # the unterminated end of a file
    (b"ok\n" + b"x" * 30, True, [b"ok"], 3, None),  # a writer mid-line: it waits, cut already
], ids=["at_limit", "at_limit_crlf", "one_over", "long_middle", "long_crlf", "long_last", "long_partial"])
def test_long_lines_are_cut_to_the_limit(data: bytes, keep: bool, lines: list[bytes], size: int,
                                         oversize: dict[int, int] | None) -> None:
    """No more than the limit of a line is held; its bytes all count, and its real size is reported."""
    reader = LineReader(io.BytesIO(data), keep, max_line=8)
    assert reader.read(10, 1 << 20) == (lines, size, oversize)
    assert len(reader.partial) <= 8


def test_a_long_line_written_in_pieces_is_held_to_the_limit() -> None:
    """A followed writer's long line, arriving over many reads, never holds more than the limit."""
    fh = io.BytesIO()
    reader = LineReader(fh, keep_partial=True, max_line=8)
    for piece in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        end = fh.seek(0, io.SEEK_END)
        fh.write(piece)
        fh.seek(end)
        assert reader.read(10, 1 << 20) == ([], 0, None)
        assert reader.partial == b"abcdefgh"[:min(8, reader.pending)]
    assert reader.pending == 26
    end = fh.seek(0, io.SEEK_END)
    fh.write(b"!\nnext\n")
    fh.seek(end)
    assert reader.read(10, 1 << 20) == ([b"abcdefgh", b"next"], 33, {0: 27})
    assert reader.take_pending() == ([], 0, None)


def test_take_pending_hands_out_the_unfinished_line() -> None:
    """A finished file's unterminated line is a line, cut and sized like any other."""
    reader = LineReader(io.BytesIO(b"x" * 20), keep_partial=True, max_line=8)
    assert reader.read(10, 1 << 20) == ([], 0, None)
    assert reader.take_pending() == ([b"x" * 8], 20, {0: 20})
    assert reader.pending == 0


def test_the_limit_is_above_the_event_limit_and_documented() -> None:
    """Every line cut is over the event limit, so it is dead-lettered as too_large; the schema states the limit."""
    assert MAX_LINE_BYTES > MAX_EVENT_BYTES
    assert f"({MAX_LINE_BYTES} bytes)" in load_schema("dead_letter")["properties"]["raw"]["description"]


def test_a_pipe_is_read_without_blocking() -> None:
    """What has arrived is read at once, a pause reads as nothing (not as the end), an unfinished
    line waits for its rest, and only the writer closing the pipe is the end."""
    r, w = os.pipe()
    try:
        pipe = PipeInput(r, chunk=4)
        reader = LineReader(pipe, keep_partial=True)
        os.write(w, b"a1\nb22\nc3")
        assert reader.read(100, 1 << 20) == ([b"a1", b"b22"], 7, None)
        assert reader.read(100, 1 << 20) == ([], 0, None) and reader.pending == 2 and not pipe.eof
        os.write(w, b"3\n")
        assert reader.read(100, 1 << 20) == ([b"c33"], 4, None)
        os.write(w, b"tail")
        os.close(w)
        w = -1
        assert reader.read(100, 1 << 20)[0] == []
        assert pipe.eof and reader.take_pending() == ([b"tail"], 4, None)
        assert pipe.readline(10) == b""
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
