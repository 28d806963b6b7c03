"""Progress of a run, shared between the sources, the warehouse writer and the terminal display.

It also keeps the worker's time by step: how long the worker spent inside each of the
flow's steps (reading, decoding, the two shard stages, the warehouse step, the output
files, collector passes). Compiled modules hide from a sampling profiler's Python view,
so this split is what the summary and the benchmark report show. What no step claims is
Bytewax's own scheduling, the small routing steps between the stages, start-up and shut-down.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

R = TypeVar("R")

# The progress line's rate is over about this many seconds.
RATE_WINDOW_S = 10.0

# The steps in the order the summary shows them (the flow's order); "gc" is the
# collector passes of flows.runtime.checkpoint, wherever they ran.
STEPS = ("read", "decode", "identity", "contacts", "warehouse", "outputs", "gc")


@dataclass
class Progress:
    """Counters that sources and the writer update; the display reads them."""

    total_bytes: dict[str, int] = field(default_factory=dict)
    read_bytes: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    snapshots: int = 0
    last_snapshot: str = ""
    started: float = field(default_factory=time.monotonic)
    step_seconds: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (time, lines) as the display last asked, for a rate over the recent past.
    samples: list[tuple[float, int]] = field(default_factory=list)

    def reset(self) -> None:
        """Start over for a new run in this process (counters, clock and step times)."""
        with self.lock:
            self.total_bytes, self.read_bytes, self.step_seconds = {}, {}, {}
            self.lines = self.snapshots = 0
            self.last_snapshot = ""
            self.started = time.monotonic()
            self.samples = []

    def add_time(self, step: str, seconds: float) -> None:
        """Add the worker's time inside one call of a step."""
        with self.lock:
            self.step_seconds[step] = self.step_seconds.get(step, 0.0) + seconds

    def steps(self) -> dict[str, float]:
        """Seconds per step so far, in flow order (steps that never ran are left out)."""
        with self.lock:
            known = [(k, self.step_seconds[k]) for k in STEPS if k in self.step_seconds]
            extra = sorted((k, v) for k, v in self.step_seconds.items() if k not in STEPS)
        return dict(known + extra)

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

    def line(self, now: float | None = None) -> str:
        """One status line: percent read, lines, rate over the last RATE_WINDOW_S, snapshots.

        The percent is of the files' sizes when opened, so it is left out once a followed
        file has grown past them (it showed 531 %); the rate is recent, not the run's
        average, which kept falling while a followed input was quiet.
        """
        now = time.monotonic() if now is None else now
        with self.lock:
            total = sum(self.total_bytes.values())
            done = sum(self.read_bytes.values())
            lines, snaps = self.lines, self.snapshots
            if not self.samples:
                self.samples.append((self.started, 0))  # lines read before the first look count too
            self.samples.append((now, lines))
            while len(self.samples) > 1 and now - self.samples[1][0] >= RATE_WINDOW_S:
                self.samples.pop(0)
            since, before = self.samples[0]
        rate = (lines - before) / max(now - since, 1e-9)
        pct = f"{100 * done / total:5.1f}% " if total and done <= total else ""
        return f"{pct}{lines:,} lines  {rate:,.0f} lines/s  {snaps} snapshots"


PROGRESS = Progress()


def timed(step: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate a step's function or method so that each call's time counts for ``step``."""

    def wrap(fn: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> R:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                PROGRESS.add_time(step, time.perf_counter() - started)

        return call

    return wrap


def step_shares(steps: dict[str, float], elapsed: float) -> list[tuple[str, float, float]]:
    """(step, seconds, share of ``elapsed``) for each step, then "other": the rest of the run."""
    out = [(k, v, v / elapsed if elapsed > 0 else 0.0) for k, v in steps.items()]
    rest = max(0.0, elapsed - sum(steps.values()))
    out.append(("other", rest, rest / elapsed if elapsed > 0 else 0.0))
    return out


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
