"""Stable ids: shard numbers that never depend on the process or on what was cached."""

from __future__ import annotations

import subprocess
import sys

from engine import ids


def test_shard_of_is_the_stable_hash_whatever_the_cache_holds(monkeypatch) -> None:
    monkeypatch.setattr(ids, "SHARD_CACHE_SIZE", 8)
    monkeypatch.setattr(ids, "_SHARD_CACHES", {})
    names = [f"anon-{i:04x}" for i in range(50)]
    for _ in range(2):  # second round: some cached, most evicted
        for shards in (1, 7, 32):
            assert [ids.shard_of(n, shards) for n in names] == [ids.stable_hash(n) % shards for n in names]
    assert set(ids._SHARD_CACHES) == {1, 7, 32}
    assert all(len(cache) <= 8 for cache in ids._SHARD_CACHES.values())


def test_stable_hash_is_the_same_in_another_process() -> None:
    code = "from engine.ids import stable_hash; print(stable_hash('user-42'), stable_hash('ü-\\ud800'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [int(x) for x in other] == [ids.stable_hash("user-42"), ids.stable_hash("ü-\ud800")]


def test_ids_keep_their_values_across_releases() -> None:
    """Pinned digests: shards of stored state and ids of re-emitted triggers must not move."""
    assert ids.stable_hash("user-42") == 8043651368623730598
    assert ids.trigger_id("rules.hot#0", "user-42", "m-1") == "c475919fa2e28d0a81332f8bab1b3cb5"
