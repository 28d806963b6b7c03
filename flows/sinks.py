"""The trigger and dead-letter file sinks: line files that are durable at every recovery snapshot.

Bytewax's own FileSink calls fsync after every batch it writes. A replay writes a
batch per shard step, and a disk sync each time stalls the worker (on a busy disk
for tens of milliseconds, which is most of a live trigger's latency budget beyond
the allowed lateness). Durability only matters at a recovery snapshot: that is the
offset a resumed run truncates the file back to. So this sink flushes every batch
(readers tailing the file see it at once) and syncs to disk when Bytewax takes a
snapshot and when the run ends. Resume semantics are FileSink's: the file is cut back
to the snapshot's offset, so a resumed run writes no line twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from .progress import timed


class _LineFilePartition(StatefulSinkPartition[str, int]):
    """The one partition of a line file: append, flush per batch, sync at snapshots."""

    def __init__(self, path: Path, resume_state: Optional[int]) -> None:
        self._f = open(path, "at", encoding="utf-8")
        self._f.seek(0 if resume_state is None else resume_state)
        self._f.truncate()

    @timed("outputs")
    def write_batch(self, values: List[str]) -> None:
        """Append the lines and make them visible to readers (not yet durable)."""
        write = self._f.write
        for value in values:
            write(value)
            write("\n")
        self._f.flush()

    def snapshot(self) -> int:
        """Make everything written durable; a resume starts from this offset."""
        self._f.flush()
        os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        """Sync and close at the end of the run."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


class LineFileSink(FixedPartitionedSink[str, int]):
    """Write string items to one file, a line each; only one worker writes it."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def list_parts(self) -> List[str]:
        """One partition, named by the file."""
        return [str(self._path)]

    def part_fn(self, item_key: str) -> int:
        """Every item goes to the one partition."""
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _LineFilePartition:
        """Open the file, cut back to the resumed offset if any."""
        if for_part != str(self._path):
            msg = f"step {step_id!r}: cannot resume writing {for_part!r} into a different file {self._path}"
            raise ValueError(msg)
        return _LineFilePartition(self._path, resume_state)
