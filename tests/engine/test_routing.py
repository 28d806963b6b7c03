"""Records travelling to the contact stage: grouped by the shard that owns their contact."""

from __future__ import annotations

import pytest

from engine.ids import shard_of
from engine.routing import EVENT, MERGE, Routed, by_contact_shard


@pytest.mark.parametrize("shards", [1, 4, 16])
def test_every_record_goes_to_its_contacts_shard_in_record_order(shards: int) -> None:
    """Groups partition the records: each holds only its shard's contacts, in the order they came."""
    records = [Routed(MERGE if i % 7 == 0 else EVENT, f"user-{i % 23}", 1_000 + i, f"m{i}") for i in range(200)]
    groups = by_contact_shard(records, shards)
    assert sorted(r.message_id for group in groups.values() for r in group) == sorted(r.message_id for r in records)
    for shard, group in groups.items():
        assert group and all(shard_of(r.contact_id, shards) == shard for r in group)
        assert [r.ts for r in group] == sorted(r.ts for r in group)  # records came in time order


def test_no_records_no_groups() -> None:
    """A shard with nothing to send gets no group (the flow then sends only its progress)."""
    assert by_contact_shard([], 16) == {}
