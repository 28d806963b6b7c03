"""Progress of a run, shared between the sources, the warehouse writer and the terminal display."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Counters that sources and the writer update; the display reads them."""

    total_bytes: dict[str, int] = field(default_factory=dict)
    read_bytes: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    snapshots: int = 0
    last_snapshot: str = ""
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_total(self, part: str, size: int) -> None:
        """Record the size of a file a partition opened."""
        with self.lock:
            self.total_bytes[part] = self.total_bytes.get(part, 0) + size

    def add_read(self, part: str, size: int, lines: int) -> None:
        """Record bytes and lines a partition handed out."""
        with self.lock:
            self.read_bytes[part] = self.read_bytes.get(part, 0) + size
            self.lines += lines

    def published(self, text: str) -> None:
        """Record that a warehouse snapshot was published."""
        with self.lock:
            self.snapshots += 1
            self.last_snapshot = text

    def line(self) -> str:
        """One status line: percent read, lines, rate, snapshots."""
        with self.lock:
            total = sum(self.total_bytes.values())
            done = sum(self.read_bytes.values())
            lines, snaps = self.lines, self.snapshots
        elapsed = max(time.monotonic() - self.started, 1e-9)
        pct = f"{100 * done / total:5.1f}% " if total else ""
        return f"{pct}{lines:,} lines  {lines / elapsed:,.0f} lines/s  {snaps} snapshots"


PROGRESS = Progress()


class ProgressDisplay:
    """Redraws one status line on stderr while a long replay runs (only on a terminal)."""

    def __init__(self, interval: float = 0.5, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.stream.isatty():
            self._thread = threading.Thread(target=self._run, name="leadstream-progress", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.stream.write("\r\x1b[K" + PROGRESS.line())
            self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()
