"""A shard's contacts: the ones in use as live objects, idle ones pickled to a fraction of the size.

Most contacts of a clickstream are idle most of the time: a visitor comes once or
twice a day. A live ContactState is a dozen small dicts (about 4-5 KB); pickled it is
about 0.9 KB. So at every snapshot cut a shard freezes the contacts that did not change
since the previous cut, and the first access thaws one again (tens of microseconds,
against the hundreds an event costs). Only one copy is ever live: a frozen contact is
bytes until it is thawed, so nothing can update a stale object.
"""

from __future__ import annotations

import pickle
from typing import Any, Iterable, Iterator

from .contact import ContactState


class ContactStore:
    """A dict-like map of contact id -> ContactState that keeps idle contacts pickled."""

    __slots__ = ("_hot", "_cold")

    def __init__(self) -> None:
        self._hot: dict[str, ContactState] = {}
        self._cold: dict[str, bytes] = {}

    def get(self, cid: str, default: Any = None) -> Any:
        """The contact, thawed if it was frozen; ``default`` when there is none."""
        c = self._hot.get(cid)
        if c is not None:
            return c
        blob = self._cold.pop(cid, None)
        if blob is None:
            return default
        c = self._hot[cid] = pickle.loads(blob)
        return c

    def __getitem__(self, cid: str) -> ContactState:
        c = self.get(cid)
        if c is None:
            raise KeyError(cid)
        return c

    def __setitem__(self, cid: str, contact: ContactState) -> None:
        self._cold.pop(cid, None)
        self._hot[cid] = contact

    def pop(self, cid: str, default: Any = None) -> Any:
        """Remove and return the contact (thawed), or ``default``."""
        c = self._hot.pop(cid, None)
        if c is not None:
            return c
        blob = self._cold.pop(cid, None)
        return default if blob is None else pickle.loads(blob)

    def __contains__(self, cid: object) -> bool:
        return cid in self._hot or cid in self._cold

    def __len__(self) -> int:
        return len(self._hot) + len(self._cold)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """Every contact id, live or frozen."""
        return [*self._hot, *self._cold]

    def values(self) -> list[ContactState]:
        """Every contact, thawing the frozen ones (for whole-shard passes such as retroactive rules)."""
        return [self[cid] for cid in self.keys()]

    def items(self) -> list[tuple[str, ContactState]]:
        """Every (id, contact), thawing the frozen ones."""
        return [(cid, self[cid]) for cid in self.keys()]

    def freeze_except(self, active: Iterable[str]) -> int:
        """Pickle every live contact whose id is not in ``active``; return how many."""
        keep = active if isinstance(active, (set, frozenset, dict)) else set(active)
        idle = [cid for cid in self._hot if cid not in keep]
        hot, cold, dumps = self._hot, self._cold, pickle.dumps
        for cid in idle:
            cold[cid] = dumps(hot.pop(cid), protocol=pickle.HIGHEST_PROTOCOL)
        return len(idle)

    @property
    def live(self) -> int:
        """How many contacts are live objects right now."""
        return len(self._hot)

    def as_dict(self) -> dict[str, ContactState]:
        """A plain dict of every contact, frozen ones decoded without thawing them here."""
        out = dict(self._hot)
        out.update((cid, pickle.loads(blob)) for cid, blob in self._cold.items())
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContactStore):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._hot, self._cold)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._hot, self._cold = state
