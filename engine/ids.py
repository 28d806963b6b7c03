"""Stable identifiers: shard keys and trigger ids that never depend on process, salt or clock."""

from __future__ import annotations

from hashlib import blake2b


def stable_hash(text: str) -> int:
    """Return a 64-bit hash of ``text`` that is the same in every process and run.

    Python's ``hash()`` is salted per process, so it must never pick a shard.
    """
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


_SHARD_CACHE: dict[tuple[str, int], int] = {}


def shard_of(identifier: str, shards: int) -> int:
    """Return the shard number of an identifier for a fixed shard count."""
    # Every event is routed twice and ids repeat across a contact's events: remember them.
    key = (identifier, shards)
    shard = _SHARD_CACHE.get(key)
    if shard is None:
        if len(_SHARD_CACHE) > 1_000_000:
            _SHARD_CACHE.clear()
        shard = _SHARD_CACHE[key] = stable_hash(identifier) % shards
    return shard


def trigger_id(rule: str, contact_id: str, occurrence: str) -> str:
    """Return the deterministic id of a trigger: a hash of rule, contact and occurrence key.

    The occurrence key comes from the input (a messageId, a timer's due time), so a
    trigger re-emitted after a crash and resume carries the same id.
    """
    payload = "\x1f".join((rule, contact_id, occurrence)).encode("utf-8", "surrogatepass")
    return blake2b(payload, digest_size=16).hexdigest()
