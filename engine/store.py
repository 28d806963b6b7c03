"""A shard's contacts: the ones in use as live objects, idle ones frozen to a fraction of the size.

Most contacts of a clickstream are idle most of the time: a visitor comes once or
twice a day. A live ContactState is a dozen small dicts (about 4-5 KB); frozen it is
about 0.65 KB. So at snapshot cuts a shard freezes the contacts that stayed idle for
a few cuts, and the first access thaws one again. Only one copy is ever live: a
frozen contact is bytes until it is thawed, so nothing can update a stale object.

Frozen contacts of one shard repeat the same keys, workflow names and id prefixes, so
once a store holds enough of them it trains a zstd dictionary on them and compresses
every frozen contact with it: about 625 bytes become 130, for 3 us to compress and
1.6 us to decompress (a freeze or thaw itself costs about 20 us).
"""

from __future__ import annotations

import marshal
import pickle
from collections import deque
from itertools import islice
from typing import Any, Iterable, Iterator

import zstandard

from .contact import FIELDS, ContactState
from .workflows import Run

# A contact is frozen once it has stayed idle for this many consecutive cuts. When a
# freeze cost 50 us, one cut cost about 17% of a run in thaws of contacts between two
# sessions of a visit, and three cuts were kept. At 25-35 us, freezing and thawing take
# about 10% of a `standard` run's samples with one cut against 5% with three (too little
# for wall-clock runs to tell apart), while the live set (3-5 KB per contact) of three
# cuts held 40-60 MB more at the peak of a 1M-line run of `scale` (about 250k contacts).
IDLE_CUTS = 1

_RUNS = FIELDS.index("runs")
_PICKLED = 0x80  # pickle's PROTO opcode; no marshal type code starts with it
# Version 2: no back-references. Versions 3 and 4 look every object up in a table to
# write repeats as references, which made dumping a contact 7.9 us instead of 4.7; the
# compressed blob is the same size (zstd finds the repeats anyway: 247 against 252
# bytes), and loading is as fast. Blobs of any version thaw alike.
_MARSHAL_VERSION = 2
_ZSTD = 0x01  # tag of a compressed blob; neither marshal nor pickle output starts with it
_ZSTD_TAG = bytes([_ZSTD])

TRAIN_AFTER = 512  # frozen contacts a store holds before it trains its dictionary
TRAIN_SAMPLES = 1024  # frozen contacts the dictionary is trained on (5-10 ms)
DICTIONARY_BYTES = 4096


def freeze(contact: ContactState) -> bytes:
    """Encode a contact compactly: marshal of its fields, workflow runs as tuples.

    marshal reads back 2.7x faster than pickle and keeps interned keys interned; it
    handles builtin types only, so a contact holding anything else is pickled.
    """
    state: Any = contact.__getstate__()
    if contact.runs:
        state = list(state)
        runs: dict[str, Run] = contact.runs
        state[_RUNS] = {key: run.fields() for key, run in runs.items()}
    try:
        return marshal.dumps(state, _MARSHAL_VERSION)
    except ValueError:  # a trait value of a type marshal does not know
        return pickle.dumps(contact, protocol=pickle.HIGHEST_PROTOCOL)


def thaw(blob: bytes) -> ContactState:
    """Decode what ``freeze`` wrote."""
    if blob[0] == _PICKLED:
        return pickle.loads(blob)
    state = marshal.loads(blob)
    c = ContactState(state[0], state[1], state)
    if c.runs:
        c.runs = {key: Run(*args) for key, args in c.runs.items()}
    return c


class BlobCodec:
    """Compresses one store's frozen contacts with a zstd dictionary trained on its own contacts.

    Only the dictionary is state (it is pickled with the store); the zstd contexts,
    about 200 KB per store, are rebuilt from it.
    """

    __slots__ = ("dictionary", "_compress", "_decompress")

    def __init__(self, dictionary: bytes | None = None) -> None:
        self.dictionary = dictionary
        self._compress: Any = None
        self._decompress: Any = None
        if dictionary is not None:
            d = zstandard.ZstdCompressionDict(dictionary)
            # Magicless frames without checksum or dictionary id: 10 bytes less per
            # contact; the tag byte and the store's own dictionary make them unambiguous.
            params = zstandard.ZstdCompressionParameters.from_level(
                1, window_log=12, format=zstandard.FORMAT_ZSTD1_MAGICLESS,
                write_content_size=True, write_checksum=False, write_dict_id=False)
            self._compress = zstandard.ZstdCompressor(dict_data=d, compression_params=params).compress
            self._decompress = zstandard.ZstdDecompressor(
                dict_data=d, format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompress

    @classmethod
    def train(cls, samples: list[bytes]) -> BlobCodec | None:
        """A codec with a dictionary trained on ``samples``, or None when zstd finds too little to learn."""
        try:
            # Fixed cover parameters: the default search over k and d took 4-9x as long
            # (about 80 ms per store) and settled on these for frozen contacts anyway.
            # f=16 sizes fastCover's frequency table at 64k entries instead of 1M: the
            # default spent most of its 20-30 ms clearing it, and every store of a
            # process trains at about the same cut, a stall in the output. Same sizes.
            trained = zstandard.train_dictionary(DICTIONARY_BYTES, samples, k=512, d=8, f=16, steps=1)
            return cls(trained.as_bytes())
        except zstandard.ZstdError:
            return None

    def pack(self, raw: bytes) -> bytes:
        """Compress one frozen contact (unchanged while there is no dictionary)."""
        return raw if self._compress is None else _ZSTD_TAG + self._compress(raw)

    def unpack(self, blob: bytes) -> bytes:
        """Undo ``pack``."""
        if blob[0] != _ZSTD:
            return blob
        if self._decompress is None:
            msg = "a compressed contact in a store without a dictionary: the store's state is corrupt"
            raise ValueError(msg)
        return self._decompress(memoryview(blob)[1:])


class ContactStore:
    """A dict-like map of contact id -> ContactState that keeps idle contacts frozen."""

    __slots__ = ("_hot", "_cold", "_recent", "_codec", "_train_at")

    def __init__(self) -> None:
        self._hot: dict[str, ContactState] = {}
        self._cold: dict[str, bytes] = {}
        self._codec = BlobCodec()
        self._train_at = TRAIN_AFTER
        # The ids active at the last IDLE_CUTS - 1 cuts: policy, not state, so not pickled.
        self._recent: deque[Any] = deque(maxlen=IDLE_CUTS - 1)

    def get(self, cid: str, default: Any = None) -> Any:
        """The contact, thawed if it was frozen; ``default`` when there is none."""
        c = self._hot.get(cid)
        if c is not None:
            return c
        blob = self._cold.pop(cid, None)
        if blob is None:
            return default
        c = self._hot[cid] = thaw(self._codec.unpack(blob))
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
        return default if blob is None else thaw(self._codec.unpack(blob))

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
        """Freeze every live contact whose id is not in ``active``; return how many."""
        keep = active if isinstance(active, (set, frozenset, dict)) else set(active)
        return self._freeze([cid for cid in self._hot if cid not in keep])

    def cut(self, active: set[str]) -> int:
        """A snapshot cut: freeze the live contacts idle for IDLE_CUTS cuts; return how many.

        ``active`` holds the ids that changed since the previous cut; the store keeps
        a reference to it.
        """
        recent = self._recent
        idle = [cid for cid in self._hot if cid not in active]
        for ids in recent:  # one pass per cut remembered, not a generator per contact
            idle = [cid for cid in idle if cid not in ids]
        recent.append(active)
        return self._freeze(idle)

    def _freeze(self, idle: list[str]) -> int:
        hot, cold, pack = self._hot, self._cold, self._codec.pack
        for cid in idle:
            cold[cid] = pack(freeze(hot.pop(cid)))
        if self._codec.dictionary is None and len(cold) >= self._train_at:
            self._train()
        return len(idle)

    def _train(self) -> None:
        """Train the dictionary on the frozen contacts so far, and compress them with it."""
        cold = self._cold
        samples = list(islice(cold.values(), TRAIN_SAMPLES))
        codec = BlobCodec.train(samples)
        if codec is None:
            self._train_at *= 2  # too uniform or too small to learn from yet: try again later
            return
        self._codec = codec
        for cid, blob in cold.items():
            cold[cid] = codec.pack(blob)

    @property
    def live(self) -> int:
        """How many contacts are live objects right now."""
        return len(self._hot)

    def as_dict(self) -> dict[str, ContactState]:
        """A plain dict of every contact, frozen ones decoded without thawing them here."""
        out = dict(self._hot)
        unpack = self._codec.unpack
        out.update((cid, thaw(unpack(blob))) for cid, blob in self._cold.items())
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContactStore):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    @property
    def frozen_bytes(self) -> int:
        """Bytes the frozen contacts take, compressed."""
        return sum(map(len, self._cold.values()))

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._hot, self._cold, self._codec.dictionary)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        # Recovery state written before compression has no dictionary.
        self._hot, self._cold, dictionary = state if len(state) == 3 else (*state, None)
        self._codec = BlobCodec(dictionary)
        self._train_at = TRAIN_AFTER
        self._recent = deque(maxlen=IDLE_CUTS - 1)
