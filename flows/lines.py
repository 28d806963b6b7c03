"""Reading a batch of complete lines from a file: the per-line loop of the file sources, compiled.

Interpreted, this loop cost about 8,700 instructions per line (callgrind), 8 % of the
worker's instructions in a replay with the peers' semantics.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

# The most of one line that is ever held in memory. Anything over 32 KB is dead-lettered
# as ``too_large`` anyway; a longer line (a dump without newlines dropped into a followed
# directory, say) keeps only its first MAX_LINE_BYTES, and its real size, instead of being
# read whole into memory and copied into the dead letters.
MAX_LINE_BYTES = 1 << 20


class LineReader:
    """Reads a binary file in batches of complete lines, holding at most ``max_line`` bytes of any one."""

    def __init__(self, fh: Any, keep_partial: bool, max_line: int = MAX_LINE_BYTES) -> None:
        self.fh = fh
        # A followed file's writer may be mid-line: its last line without a newline waits
        # (as ``partial``) for the rest. Otherwise the end of the file ends the line.
        self.keep_partial = keep_partial
        self.max_line = max_line
        self.partial = b""  # the start of an unfinished line, at most max_line bytes
        self.skipped = 0  # bytes of that line read past max_line and let go
        # Why the file cannot be read further; set by the read that met it, which still
        # returns the lines before.
        self.error: BaseException | None = None

    @property
    def pending(self) -> int:
        """Bytes read of a line not handed out yet."""
        return len(self.partial) + self.skipped

    def take_pending(self) -> tuple[list[bytes], int, dict[int, int] | None]:
        """Hand out the unfinished line as a line of its own (its file is finished): ``read``'s result."""
        size = self.pending
        if not size:
            return [], 0, None
        line, skipped = self.partial, self.skipped
        self.partial, self.skipped = b"", 0
        return [line], size, ({0: size} if skipped else None)

    def skip(self, count: int) -> bool:
        """Skip ``count`` lines (a resumed compressed file, which cannot seek); False if it cannot be read that far."""
        readline, limit = self.fh.readline, self.max_line
        try:
            while count > 0:
                raw: bytes = readline(limit)
                if not raw:
                    return False
                if raw.endswith(b"\n"):
                    count -= 1
        except (EOFError, gzip.BadGzipFile, zlib.error):  # as in read()
            return False
        return True

    def read(self, max_lines: int, max_bytes: int) -> tuple[list[bytes], int, dict[int, int] | None]:
        """Read up to ``max_lines`` complete lines, or until ``max_bytes`` were read; return (lines, bytes, oversize).

        Lines come without their line ending; ``bytes`` counts what they took in the file,
        endings and the pending fragment they completed included. ``oversize`` maps the
        index of each line cut to its first ``max_line`` bytes to its real size (None
        when no line was cut, the usual case).
        """
        lines: list[bytes] = []
        oversize: dict[int, int] | None = None
        size = 0
        limit = self.max_line
        readline = self.fh.readline
        at_end = False
        while len(lines) < max_lines and size < max_bytes:
            try:
                raw: bytes = readline(limit)
            except (EOFError, gzip.BadGzipFile, zlib.error) as ex:
                # A compressed stream cut short or corrupt: the rest of the file cannot be
                # read, but the lines before can, so they are returned.
                self.error = ex
                break
            if not raw:
                at_end = True
                break
            if not raw.endswith(b"\n"):
                # Mid-line: a line longer than the limit, the end of the file, or a writer
                # that has not finished its line yet.
                self._hold(raw)
                continue
            if self.partial or self.skipped:
                size += self.pending + len(raw)
                if self.skipped:
                    # Only the line's start was kept: what came after it is gone.
                    line, real = self.partial, self.pending + len(raw.rstrip(b"\r\n"))
                else:
                    line = (self.partial + raw).rstrip(b"\r\n")
                    real = len(line)
                self.partial, self.skipped = b"", 0
                if real > limit:
                    if oversize is None:
                        oversize = {}
                    oversize[len(lines)] = real
                    line = line[:limit]
                lines.append(line)
                continue
            size += len(raw)
            lines.append(raw.rstrip(b"\r\n"))
        if at_end and not self.keep_partial and self.pending:
            # The end of a finished file (or of stdin) ends its last line.
            tail, tail_size, tail_over = self.take_pending()
            if tail_over is not None:
                if oversize is None:
                    oversize = {}
                oversize[len(lines)] = tail_size
            lines.extend(tail)
            size += tail_size
        return lines, size, oversize

    def _hold(self, raw: bytes) -> None:
        """Keep a fragment of an unfinished line, up to the limit; count the rest."""
        room = self.max_line - len(self.partial)
        if self.skipped or len(raw) > room:
            if room > 0:
                self.partial += raw[:room]
            self.skipped += len(raw) - max(room, 0)
        else:
            self.partial += raw


class PipeInput:
    """A pipe (stdin) read without blocking: ``readline`` returns what has arrived, b"" when nothing has.

    A blocking read waited for a whole batch of lines, or for the writer to close the pipe,
    before anything was applied, and a Ctrl-C was not seen meanwhile. ``eof`` tells the end
    of the input apart from a pause. Regular files given as stdin read the same way.
    """

    def __init__(self, fd: int, chunk: int = 1 << 20) -> None:
        self.fd = fd
        self.chunk = chunk
        self.buf = b""
        self.pos = 0  # where the unread part of buf starts
        self.eof = False

    def readline(self, limit: int = -1) -> bytes:
        """The next line (with its newline) of what has arrived, at most ``limit`` bytes of it; b"" if nothing waits."""
        end = self.buf.find(b"\n", self.pos)
        if end < 0 and not self.eof:
            self._fill()
            end = self.buf.find(b"\n", self.pos)
        stop = len(self.buf) if end < 0 else end + 1
        if 0 <= limit < stop - self.pos:
            stop = self.pos + limit
        line = self.buf[self.pos:stop]
        self.pos = stop
        return line

    def _fill(self) -> None:
        import os
        import select

        ready, _, _ = select.select([self.fd], [], [], 0)
        if not ready:
            return
        data = os.read(self.fd, self.chunk)
        if not data:
            self.eof = True
            return
        self.buf = self.buf[self.pos:] + data
        self.pos = 0

    def close(self) -> None:
        """Nothing to close: stdin belongs to the process."""
