"""What travels between the flow's steps: source ticks, shard packets and warehouse exports."""

from __future__ import annotations

import pickle
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


class Sealed:
    """A record on its way to a step in another process, pickled there at most once.

    Bytewax hands an item that crosses processes to timely, which serializes it twice:
    once to learn its size and once to write it, and each time that is a whole
    ``pickle.dumps`` (a 2-process run pickled every router packet twice and unpickled
    it once). A sealed record keeps the bytes of its first pickle for the second, and
    unpickles as the record itself, so a step in another process receives the record.
    A step in the same process receives the wrapper and takes the record out with
    ``unseal``. Seal only what nothing changes after it is emitted.
    """

    __slots__ = ("payload", "_blob")

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self._blob: bytes | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        blob = self._blob
        if blob is None:
            blob = self._blob = pickle.dumps(self.payload, protocol=pickle.HIGHEST_PROTOCOL)
        return (pickle.loads, (blob,))


def seal(key_value: tuple[str, Any]) -> tuple[str, Any]:
    """A (key, record) item with its record sealed: the key stays readable for routing."""
    return (key_value[0], Sealed(key_value[1]))


def unseal(value: Any) -> Any:
    """The record itself, whether it came through another process or as a Sealed wrapper."""
    return value.payload if isinstance(value, Sealed) else value
