"""Reading a batch of complete lines from a file: the per-line loop of the file sources, compiled.

Interpreted, this loop cost about 8,700 instructions per line (callgrind), 8 % of the
worker's instructions in a replay with the peers' semantics.
"""

from __future__ import annotations

from typing import Any


def read_lines(fh: Any, partial: bytes, keep_partial: bool, max_lines: int,
               max_bytes: int) -> tuple[list[bytes], int, bytes]:
    """Read up to ``max_lines`` complete lines, or until ``max_bytes`` were read; return (lines, bytes, partial).

    Lines come without their line ending; ``bytes`` counts what they took in the file,
    endings and the ``partial`` they completed included. A last line without a newline
    is a line, unless ``keep_partial`` (a followed file, whose writer may be mid-line):
    then it is returned as the new ``partial``, for the next call to complete.
    """
    lines: list[bytes] = []
    size = 0
    readline = fh.readline
    while len(lines) < max_lines and size < max_bytes:
        raw: bytes = readline()
        if not raw:
            break
        complete = raw.endswith(b"\n")
        if not complete and keep_partial:
            partial += raw
            continue
        if partial:
            raw = partial + raw
            partial = b""
        size += len(raw)
        lines.append(raw.rstrip(b"\r\n") if complete else raw)
    return lines, size, partial
