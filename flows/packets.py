"""What travels between the flow's steps: source ticks, shard packets and warehouse exports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.events import Event, Rejection
from engine.pickling import ByFields
from engine.routing import Routed


@dataclass(slots=True)
class Tick(ByFields):
    """A source partition's progress: newest event time, idle wall time, end of input."""

    part: str
    max_ts: int
    idle_ms: int = 0
    eof: bool = False


@dataclass(slots=True)
class ToIdentity(ByFields):
    """Router -> identity shard: events of this shard, rejections to account for, ticks, a cut."""

    shard: int  # the destination: Bytewax does not tell a logic its key
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    cut: int | None = None


@dataclass(slots=True)
class ToContacts(ByFields):
    """Identity shard -> contact shard: records released up to ``watermark``, maybe a cut."""

    src: int
    dest: int
    records: list[Routed]
    watermark: int
    cut: int | None = None
    final: bool = False  # the sender has applied all of its input


@dataclass(slots=True)
class Export(ByFields):
    """One shard's rows for one snapshot cut: what changed since its previous cut.

    The rows travel as Arrow tables (``rows.export_tables``), built by the shard: in a
    cluster the writer may sit in another process, and a table crosses it as a few
    buffers instead of thousands of pickled objects. Following a live stream in a single
    process they travel as ``rows.PendingRows`` that the writer's part thread turns into
    tables (see ``StageContext.defer_tables``).
    """

    cut: int
    stage: str  # "identity" or "contacts"
    shard: int
    tables: dict[str, Any] = field(default_factory=dict)  # part name -> pyarrow.Table or PendingRows, non-empty
    counts: dict[str, int] = field(default_factory=dict)
    buffered: int = 0
    final: bool = False  # the export at the end of input
