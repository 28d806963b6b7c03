"""The benchmark workloads are what they claim to be."""

from __future__ import annotations

from pathlib import Path

from benchmarks.workloads import workloads
from engine.config import load_config
from engine.decode import decode_line
from engine.events import Event
from engine.pipeline import run_events
from leadstream.generate import write_events

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "marketing.toml"


def test_late_events_puts_about_five_percent_beyond_the_lateness(tmp_path: Path) -> None:
    """Judged per 1,000-line batch, as the flow reads a file, 3-5% of the lines arrive beyond the watermark."""
    opts = workloads(quick=True)["late_events"].opts
    path = tmp_path / "late.jsonl"
    with path.open("wb") as fh:
        stats = write_events(opts, fh)
    events = [e for e in (decode_line(line) for line in path.read_bytes().splitlines()) if isinstance(e, Event)]
    pipe = run_events(load_config(EXAMPLE), events, batch=1000)
    assert stats.late >= 0.045 * opts.events
    assert 0.03 * opts.events <= pipe.counts["late"] <= stats.late
