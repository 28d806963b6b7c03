"""Line sources: JSONL files, gzip'd JSONL, directories of them and stdin, replayed or followed.

Each partition emits ``SourceBatch`` items: raw lines with their positions, so the
decode step can name ``file:line`` in dead letters. A partition's snapshot is its read
position, so Bytewax recovery resumes exactly after the last line it handed out.
"""

from __future__ import annotations

import gzip
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from engine.decode import too_large_detail

from . import fingerprints
from .lines import LineReader, PipeInput
from .progress import PROGRESS, timed

# Big batches: every batch fans out to every shard, and every shard's batch to every
# shard of the next stage, so per-batch costs grow with the shard count squared.
MAX_BATCH_LINES = 10_000
MAX_BATCH_BYTES = 4 << 20
# One read() per MiB rather than per 8 KiB: every read lets go of the GIL, and the part
# writer's thread may then keep it until the interpreter switches back.
READ_BUFFER = 1 << 20
POLL = timedelta(milliseconds=50)
# How long a followed input must stay quiet before its watermark follows the wall clock.
IDLE_AFTER_S = 0.2
# Set by the CLI on SIGINT/SIGTERM: every partition ends its input as if the files ended
# there, so the run finishes cleanly (final snapshot, summary) instead of dying mid-batch.
STOP = threading.Event()
# Set once a worker lists the input's partitions, which Bytewax asks for after the processes
# of a cluster have connected: until then a stop signal cannot reach the flow.
STARTED = threading.Event()
# Partitions of this process that were read to their end (not stopped by STOP): a stop
# that comes after every one of them ended cut nothing short.
READ_TO_END: set[str] = set()


@dataclass(slots=True)
class SourceBatch:
    """Lines read from one partition, or a marker that it went idle or ended."""

    part: str
    first_line: int  # 1-based line number of lines[0] within `file`
    file: str
    lines: list[bytes] = field(default_factory=list)
    eof: bool = False
    idle_ms: int = 0  # wall time the partition has been idle (follow mode only)
    # Lines the source rejected itself, index -> (reason, detail): a line cut to
    # flows.lines.MAX_LINE_BYTES (too_large), or the rest of an unreadable file.
    judged: dict[int, tuple[str, str]] | None = None


def expand_inputs(paths: list[str], follow: bool) -> list[str]:
    """Turn --input arguments into partition names: one per file, one per followed path.

    Replay gives each file of a directory its own partition; follow mode keeps a
    directory as one partition that reads its files in name order and picks up new ones.
    """
    parts: list[str] = []
    for raw in paths:
        if raw == "-":
            parts.append("-")
            continue
        path = Path(raw)
        if path.is_dir():
            if follow:
                parts.append(str(path))
            else:
                parts.extend(str(p) for p in _dir_files(path))
        elif path.exists() or follow:
            # A followed path that does not exist yet is waited for, as a file or a directory.
            parts.append(str(path))
        else:
            raise FileNotFoundError(f"--input {raw}: no such file or directory")
    if len(set(parts)) != len(parts):
        raise ValueError("--input names the same file twice; each line would be read twice")
    return parts


# How many of a followed file's first bytes tell whether it was truncated and written again.
HEAD_BYTES = 64

# What a directory's files must end with to be read; anything else in it is left alone.
INPUT_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".ndjson", ".gz")


def _dir_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(INPUT_SUFFIXES))


def ignored_files(paths: list[str]) -> dict[str, list[str]]:
    """Per --input directory, the files in it that are not read (not JSONL by name); hidden ones aside."""
    out: dict[str, list[str]] = {}
    for raw in paths:
        path = Path(raw)
        if raw != "-" and path.is_dir():
            names = sorted(p.name for p in path.iterdir()
                           if p.is_file() and not p.name.startswith(".") and not p.name.endswith(INPUT_SUFFIXES))
            if names:
                out[raw] = names
    return out


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - the partition owns the handle


def _too_large(lines: list[bytes], oversize: dict[int, int] | None) -> dict[int, tuple[str, str]] | None:
    """SourceBatch.judged for the lines LineReader cut to its limit (index -> real size)."""
    if oversize is None:
        return None
    return {i: ("too_large", too_large_detail(real, len(lines[i]))) for i, real in oversize.items()}


class _LinePartition(StatefulSourcePartition[SourceBatch, Any]):
    """Reads one file (or a followed directory, or stdin) in batches of lines."""

    def __init__(self, name: str, follow: bool, resume: Any) -> None:
        self.name = name
        self.follow = follow
        self.is_dir = name != "-" and Path(name).is_dir()
        # Resume state: (current file, lines consumed in it, byte offset in it), and for a
        # followed directory the fingerprints of the files it finished.
        self.file: str | None
        self.line_no: int
        self.offset: int
        self.file, self.line_no, self.offset = resume[:3] if resume is not None else (None, 0, 0)
        self.finished: set[str] = set(resume[3]) if resume is not None and len(resume) > 3 else set()
        self.fingerprints = fingerprints.Fingerprints()
        self.current_fp: str | None = None  # the current file's, once its first line is known
        # A followed plain file's first bytes: when they change, the file was truncated and
        # written again (copytruncate) even if it grew back past the read position meanwhile.
        self.head: bytes | None = None
        self.fh: BinaryIO | None = None
        self.reader: LineReader | None = None
        # Nothing more can be read from the current file (a compressed stream cut short or
        # corrupt, already dead-lettered): a directory moves on, a replay ends.
        self.unreadable = False
        # A followed compressed file that ended mid-stream (still being written): its size
        # then, so it is read again only once it has grown.
        self.stalled_at: int | None = None
        self.done = False
        self.sent_eof = False
        self.last_data = time.monotonic()
        self.pipe: PipeInput | None = None  # stdin, read without blocking
        self.waiting = False  # the last read found nothing new: poll rather than spin
        self.busy = False  # the last read handed out lines or moved on: read again at once
        self._open_current()

    # -- file handling

    def _candidates(self) -> list[str]:
        return [str(p) for p in _dir_files(Path(self.name))] if self.is_dir else [self.name]

    def _open_current(self) -> None:
        if self.name == "-":
            self.file = "-"
            self.pipe = PipeInput(sys.stdin.fileno())
            self.fh = self.pipe  # type: ignore[assignment]
            # A pause in the pipe is not its end: an unfinished line waits for its rest.
            self.reader = LineReader(self.fh, keep_partial=True)
            return
        if not self.is_dir and self.file in (None, self.name) and Path(self.name).is_dir():
            # A followed path that did not exist when the run started was taken for a file,
            # and was created as a directory: read it as one (opening it stopped the run).
            self.is_dir, self.file, self.line_no, self.offset = True, None, 0, 0
        files = self._candidates()
        if self.file is None:
            if not files:
                return
            self.file = (self._pending_files() or files)[0]
        path = Path(self.file)
        if not path.exists():
            return
        self.fh = _open(path)
        if (self.is_dir or self.follow) and self.line_no:
            self.current_fp = self.fingerprints.of(self.file)  # resumed past its first line
        # A followed file's writer may be mid-line: its fragment waits for the rest.
        self.reader = LineReader(self.fh, keep_partial=self.follow)
        if path.name.endswith(".gz"):
            # gzip streams cannot seek cheaply to a byte offset: skip whole lines. Where
            # that fails, the unreadable rest was dead-lettered before the snapshot.
            if self.line_no:
                self.unreadable = not self.reader.skip(self.line_no)
        elif self.offset:
            self.fh.seek(self.offset)
            self._note_head()
        PROGRESS.add_total(self.name, path.stat().st_size)

    def _pending(self) -> int:
        return self.reader.pending if self.reader is not None else 0

    def _pending_files(self) -> list[str]:
        """A followed directory's files still to read, in name order: neither the current one nor finished ones.

        Files are told apart by fingerprint (flows.fingerprints): a rotated or compressed
        copy of a file read is not read again, a new file under an old name is. A file
        without a complete first line yet waits.
        """
        if not self.is_dir:
            return []
        out = []
        for f in self._candidates():
            if self._is_current(f):
                continue
            fp = self.fingerprints.of(f)
            if fp is not None and fp != self.current_fp and fp not in self.finished:
                out.append(f)
        return out

    def _is_current(self, path: str) -> bool:
        """Whether ``path`` is the file being read, even renamed, or under its name a new one."""
        if self.fh is None:
            return path == self.file
        try:
            here, there = os.fstat(self.fh.fileno()), os.stat(path)
        except OSError:
            return path == self.file
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def _finish_current(self) -> None:
        """Remember the current file as read, so no copy of it is read again."""
        if self.current_fp is not None:
            self.finished.add(self.current_fp)
        self.current_fp = None

    def _note_head(self) -> None:
        """Remember a followed plain file's first bytes (see ``head``)."""
        fh = self._plain_file()
        if fh is None or not self.follow:
            return
        try:
            self.head = os.pread(fh.fileno(), HEAD_BYTES, 0) or None
        except OSError:
            self.head = None

    def _head_changed(self) -> bool:
        """True when a followed plain file no longer starts with the bytes it started with."""
        fh = self._plain_file()
        if fh is None or self.head is None:
            return False
        try:
            return os.pread(fh.fileno(), len(self.head), 0) != self.head
        except OSError:
            return False

    def _copy_of_current(self) -> str | None:
        """After a copytruncate: the copy that holds what was not read yet, if it is there.

        logrotate's copytruncate copies the file (a new file with the same first line, so
        the same fingerprint) and then empties it: the lines written between the last read
        and the copy are in the copy only. A copy at least as long as what was read is read
        on from there, then the emptied file from its start; a copy compressed already
        cannot be, and its rest is lost. A followed file's copy is looked for beside it,
        under a name that starts with its own.
        """
        if self.current_fp is None or self.file is None:
            return None
        want = self.offset
        # Any name: logrotate names the copy events.jsonl.1, which a directory's reading skips.
        here = Path(self.name) if self.is_dir else Path(self.file).parent
        prefix = "" if self.is_dir else Path(self.name).name
        try:
            names = sorted(str(f) for f in here.iterdir() if f.name.startswith(prefix) and f.is_file())
        except OSError:
            return None
        for f in names:
            if f.endswith(".gz") or self._is_current(f):
                continue
            try:
                size = os.stat(f).st_size
            except OSError:
                continue
            if size >= want and self.fingerprints.of(f) == self.current_fp:
                return f
        return None

    def _truncated(self) -> None:
        """The current followed file was truncated (and maybe written again): read on in its copy, or from its start."""
        assert self.fh is not None
        if self.file is not None:
            self.fingerprints.forget(self.file)  # its content, and so its first line, is new
        copy = self._copy_of_current()
        if copy is not None:
            self.fh.close()
            self.file = copy
            self.fh = _open(Path(copy))
            self.fh.seek(self.offset)
            self.reader = LineReader(self.fh, keep_partial=True)
            self._note_head()
            return
        # The lines now in it are new ones, from its start. Its unfinished last line went with
        # the old content.
        self.fh.seek(0)
        self.line_no, self.offset, self.head = 0, 0, None
        self.reader = LineReader(self.fh, keep_partial=True)
        self._finish_current()  # what it held was read; a copy of it is not new

    def _in_copy(self) -> bool:
        """Whether a followed file is being read in its copy (a copy is complete: its last line is one)."""
        return not self.is_dir and self.file not in (None, self.name)

    def _back_from_copy(self) -> bool:
        """A followed file's copy, read after a copytruncate, is read to its end: back to the file, from its start."""
        if self.is_dir or self.file in (None, self.name) or self.fh is None:
            return False
        self.fh.close()
        self.fh, self.reader, self.file, self.line_no, self.offset = None, None, self.name, 0, 0
        self.head, self.current_fp = None, None
        self._open_current()
        return True

    def _note_first_line(self, line: bytes) -> None:
        """The current file's fingerprint, from its first line as handed out."""
        self._note_head()
        if not (self.is_dir or (self.follow and self._plain_file() is not None)) or self.current_fp is not None:
            return
        try:
            st = os.fstat(self.fh.fileno()) if self.fh is not None else os.stat(self.file or "")
        except OSError:
            return
        self.current_fp = fingerprints.of_line(line, st.st_dev, st.st_ino)

    def _plain_file(self) -> BinaryIO | None:
        """The open handle when it is a plain file (not stdin, not gzip), else None."""
        if self.fh is None or self.file is None or self.name == "-" or self.file.endswith(".gz"):
            return None
        return self.fh

    def _rotated_in_place(self) -> bool:
        """True when the followed file is now shorter than what was read from it."""
        fh = self._plain_file()
        try:
            return fh is not None and os.fstat(fh.fileno()).st_size < self.offset + self._pending()
        except OSError:
            return False

    def _replaced(self) -> bool:
        """True when a followed single file's name now points to another file (rotation by rename)."""
        fh = self._plain_file()
        if fh is None or self.is_dir or not self.follow or self.file is None:
            return False
        try:
            return os.stat(self.file).st_ino != os.fstat(fh.fileno()).st_ino
        except OSError:
            return False  # not recreated yet: the old file stays open until it is

    def _reopen_replaced(self) -> bool:
        """Follow a single file's name to its new file, once the old one is read to its end."""
        if not self._replaced() or self.fh is None:
            return False
        self.fh.close()
        self.fh, self.reader, self.line_no, self.offset = None, None, 0, 0
        self._open_current()
        return True

    def _next_file(self) -> bool:
        """Move a directory partition to its next file, if one exists."""
        later = self._pending_files()
        if not later:
            return False
        self._finish_current()
        if self.fh is not None:
            self.fh.close()
        self.fh, self.reader, self.unreadable, self.stalled_at = None, None, False, None
        self.file, self.line_no, self.offset = later[0], 0, 0
        self._open_current()
        return True

    # -- Bytewax API

    @timed("read")
    def next_batch(self) -> list[SourceBatch]:
        """Return up to a batch of complete lines, an idle/EOF marker, or nothing yet."""
        if self.sent_eof:
            raise StopIteration
        if STOP.is_set():
            self.sent_eof = True
            return [SourceBatch(self.name, self.line_no + 1, self.file or self.name, [], eof=True)]
        if self.fh is None and not self._still_stalled():
            self._open_current()
        reader = self.reader
        if self.fh is None or reader is None:
            return self._idle_or_eof()
        first = self.line_no + 1
        lines: list[bytes] = []
        size, judged = 0, None
        if not self.unreadable:
            lines, size, oversize = reader.read(MAX_BATCH_LINES, MAX_BATCH_BYTES)
            judged = _too_large(lines, oversize)
            if reader.error is not None:
                lines, size, judged = self._read_error(reader, lines, size, judged)
        if self.follow and ((not lines and self._rotated_in_place()) or (lines and first > 1 and self._head_changed())):
            # Truncated (logrotate's copytruncate), even if written past the read position
            # again meanwhile: what was just read is the new content at the old position,
            # and is dropped; it is read again from the new content's start.
            self._truncated()
            self.busy = True
            return []
        self.offset += size
        if not lines and reader.pending and (self._pending_files() or self._replaced() or self._in_copy()
                                             or (self.pipe is not None and self.pipe.eof)):
            # The writer has moved on to a newer file, so this one is finished, and its last
            # line is a line even without a newline (as at the end of a replayed file): it
            # goes on like any other, to be applied or dead-lettered, never dropped unseen.
            lines, size, oversize = reader.take_pending()
            judged = _too_large(lines, oversize)
            self.offset += size
        if lines:
            if first == 1:
                self._note_first_line(lines[0])
            self.line_no += len(lines)
            self.last_data = time.monotonic()
            PROGRESS.add_read(self.name, size, len(lines))
            self.busy = True
            return [SourceBatch(self.name, first, self.file or self.name, lines, judged=judged)]
        if self._next_file() or self._reopen_replaced() or self._back_from_copy():
            self.busy = True
            return []
        return self._idle_or_eof()

    def _read_error(self, reader: LineReader, lines: list[bytes], size: int,
                    judged: dict[int, tuple[str, str]] | None) -> tuple[list[bytes], int, dict[int, tuple[str, str]] | None]:
        """A compressed file could not be read further: wait for it to grow, or dead-letter its rest."""
        error, reader.error = reader.error, None
        if self.follow and isinstance(error, EOFError) and not self._pending_files():
            # Most likely still being written (a rotation compressing it, a copy in progress):
            # read it again from its start once it grows, past the lines handed out. The
            # unfinished line goes with this handle and is read again then.
            self.stalled_at = self._file_size()
            reader.fh.close()
            self.fh, self.reader = None, None
            return lines, size, judged
        # Cut short or corrupt for good: the lines before count, the rest is one dead letter
        # (its raw the start of the line being read), and nothing more is read from it.
        fragment, frag_size, _ = reader.take_pending()
        self.unreadable = True
        judged = dict(judged or {})
        judged[len(lines)] = ("unreadable_input", f"{self.file} cannot be read past line {self.line_no + len(lines)}: "
                              f"{type(error).__name__}: {error}; the lines before were read, the rest of "
                              "the file was not (replace it with a complete copy and replay it)")
        lines = [*lines, fragment[0] if fragment else b""]
        return lines, size + frag_size, judged

    def _file_size(self) -> int | None:
        try:
            return os.stat(self.file).st_size if self.file not in (None, "-") else None  # type: ignore[arg-type]
        except OSError:
            return None

    def _still_stalled(self) -> bool:
        """True while a followed compressed file that ended mid-stream has not grown (and nothing came after it)."""
        if self.stalled_at is None:
            return False
        if self._file_size() != self.stalled_at or self._pending_files():
            self.stalled_at = None
            return False
        return True

    def _idle_or_eof(self) -> list[SourceBatch]:
        pipe = self.pipe
        if pipe is not None and not pipe.eof and not self.follow:
            self.waiting = True  # a replay of a pipe ends where the pipe does, not at a pause
            return []
        if not self.follow or (pipe is not None and pipe.eof):  # a closed pipe has nothing more to follow
            self.sent_eof = True
            READ_TO_END.add(self.name)
            return [SourceBatch(self.name, self.line_no + 1, self.file or self.name, [], eof=True)]
        idle = time.monotonic() - self.last_data
        if idle >= IDLE_AFTER_S:
            return [SourceBatch(self.name, self.line_no + 1, self.file or self.name, [], idle_ms=int(idle * 1000))]
        return []

    def next_awake(self) -> datetime | None:
        """Poll followed inputs every 50 ms instead of spinning, and a pipe that had nothing new.

        A followed input that just handed out lines or moved to its next file is read again at
        once: waiting after each one read a directory of small files at a few files a second.
        """
        busy, self.busy = self.busy, False
        if (self.follow and not busy) or self.waiting:
            self.waiting = False
            return datetime.now(timezone.utc) + POLL
        return None

    def snapshot(self) -> Any:
        """The read position: (file, lines consumed, byte offset), plus a followed directory's finished files."""
        # The offset counts the lines handed out only: a followed writer's unfinished line
        # (LineReader.partial) starts there, and is read again whole on resume.
        if self.is_dir:
            return (self.file, self.line_no, self.offset, tuple(sorted(self.finished)))
        return (self.file, self.line_no, self.offset)

    def close(self) -> None:
        """Close the file (never stdin)."""
        if self.fh is not None:
            self.fh.close()  # a PipeInput leaves stdin open


class LineSource(FixedPartitionedSource[SourceBatch, Any]):
    """A fixed set of line partitions (files, followed directories, stdin)."""

    def __init__(self, parts: list[str], follow: bool = False) -> None:
        self.parts = parts
        self.follow = follow

    def list_parts(self) -> list[str]:
        """One partition per input file (or followed path)."""
        STARTED.set()
        return list(self.parts)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _LinePartition:
        """Open a partition, resuming at its snapshot position."""
        return _LinePartition(for_part, self.follow, resume_state)
