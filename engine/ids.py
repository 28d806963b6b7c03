"""Stable identifiers: shard keys and trigger ids that never depend on process, salt or clock."""

from __future__ import annotations

from hashlib import blake2b


def stable_hash(text: str) -> int:
    """Return a 64-bit hash of ``text`` that is the same in every process and run.

    Python's ``hash()`` is salted per process, so it must never pick a shard.
    """
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def shard_of(identifier: str, shards: int) -> int:
    """Return the shard number of an identifier for a fixed shard count."""
    return stable_hash(identifier) % shards


def trigger_id(rule: str, contact_id: str, occurrence: str) -> str:
    """Return the deterministic id of a trigger: a hash of rule, contact and occurrence key.

    The occurrence key comes from the input (a messageId, a timer's due time), so a
    trigger re-emitted after a crash and resume carries the same id.
    """
    payload = "\x1f".join((rule, contact_id, occurrence)).encode("utf-8", "surrogatepass")
    return blake2b(payload, digest_size=16).hexdigest()
