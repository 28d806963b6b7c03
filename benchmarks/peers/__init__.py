"""Peers computing the same semantics on the same file: identity stitching + the `default` score.

The semantics (both peers, checked against leadstream's own warehouse on the same run):
- lines that are not valid events are dropped (bad JSON, unknown type, no identity, junk
  userId, timestamps outside 2000-2100, non-object properties/context, over 32 KB);
- duplicates (same messageId) count once;
- a device (anonymousId, or an alias's previousId) belongs to the first userId it was
  linked with; an event's contact is its userId, else its device's user, else the device;
- `default` score = page +1, each visit +5 (a page/screen event more than 30 min after the
  contact's previous one, or its first), Form Submitted +20, Webinar Registered +10,
  Webinar Attended +10, Email Opened +5, Email Link Clicked +10, Product Added +5,
  Order Completed +20, and -10 once if an identify's title contains "student".
`semantics.toml` is the same as a leadstream config: `make bench` runs it too and judges
the peer targets on that run (tests/benchmarks/test_peers.py checks it scores like the
DuckDB peer). Not modelled: score decay, workflows, caps other than the student one, re-linking of a
device to a second user (the generator never does that), late events' arrival order.
"""
