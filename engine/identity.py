"""Stage one: identity resolution, deduplication and anonymous profiles, for one shard of devices.

Policy (like PostHog's): a device links to the userId it identifies as, and its
anonymous history merges into that contact once. A device already linked to
contact A that identifies as B is re-linked for later events, but A and B are never
merged: a client-side identify must not join two known people.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from .contact import ContactState
from .dedupe import Deduper
from .engine import Engine
from .events import Event
from .ordering import NEVER, ReorderBuffer
from .routing import EVENT, MERGE, Routed, ShardOutput
from .store import ContactStore
from .timers import TimerQueue, advance_in_time


class Late(NamedTuple):
    """A late event in the reorder buffer, placed at ``at``: just past the watermark it arrived behind."""

    event: Event
    at: int


def _content_order(item: Event | Late) -> tuple[str, bytes, bool]:
    """A total order of records that share a time and a messageId: by device, then content."""
    e: Event = item.event if type(item) is Late else item  # type: ignore[union-attr,assignment]
    content = orjson.dumps(e.to_segment(), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return (e.device_id, content, type(item) is Late)


# Named fields, not __dict__, which classes compiled by mypyc do not have; a dict is
# what snapshots written before held.
_STATE = ("shard", "links", "profiles", "dedupe", "buffer", "timers", "changed_links", "changed_profiles",
          "removed_profiles")


class IdentityShard:
    """Keyed state of stage one: device links, anonymous profiles, seen messageIds, the reorder buffer."""

    def __init__(self, shard: int, dedupe_window_ms: int) -> None:
        self.shard = shard
        self.links: dict[str, tuple[str, int]] = {}  # device id -> (userId, linked at)
        self.profiles = ContactStore()  # anonymousId -> anonymous profile
        self.dedupe = Deduper(dedupe_window_ms)
        self.buffer = ReorderBuffer()
        self.timers = TimerQueue()
        self.changed_links: set[str] = set()
        self.changed_profiles: set[str] = set()
        self.removed_profiles: dict[str, tuple[str, int]] = {}  # anonymousId -> (merged into, at)

    @property
    def watermark(self) -> int:
        """The event time up to which this shard has applied everything."""
        return self.buffer.watermark

    def receive(self, engine: Engine, events: list[Event], out: ShardOutput, late_before: int = NEVER) -> None:
        """Take new events: drop repeats of applied ones, buffer on-time ones, and place late ones just past the watermark.

        An event is late when its time is at or behind the watermark: the shard's own, or
        ``late_before``, the watermark of the ticks that came before these events (the flow
        passes it; it does not depend on how far the shard has advanced). A late event is
        applied after everything up to that watermark and before anything newer, like any
        event of time watermark + 1, but keeps its own time. Applying it on arrival instead
        made its effects depend on when the shard last advanced, so two replays of one file
        could differ by a trigger.
        """
        watermark = max(self.buffer.watermark, late_before)  # pushing never moves it
        dedupe = self.dedupe
        for e in events:
            # Only repeats of events already applied are known here; repeats of buffered ones
            # are found as they come out of the buffer (see _apply).
            if dedupe.known(e.message_id, e.device_id):
                out.count("duplicates")
                continue
            if e.ts <= watermark:
                out.count("late")
                self.buffer.push(watermark + 1, e.message_id, EVENT, Late(e, watermark + 1))
            else:
                self.buffer.push(e.ts, e.message_id, EVENT, e)

    def advance(self, engine: Engine, watermark: int, out: ShardOutput) -> None:
        """Apply buffered events and fire timers up to the watermark, in event-time order.

        At equal times events go first: a deadline has not passed while events of
        its very instant are still arriving.
        """
        def fire(profile: ContactState, key: str, due: int) -> None:
            out.triggers.extend(engine.on_timer(profile, key, due))
            self.changed_profiles.add(profile.contact_id)

        advance_in_time(self.buffer, self.timers, watermark, self.profiles, lambda e: self._apply(engine, e, out), fire)
        self.dedupe.expire(self.buffer.watermark)

    # ------------------------------------------------------------ one event

    def _apply(self, engine: Engine, item: Event | Late, out: ShardOutput) -> None:
        e: Event = item.event if type(item) is Late else item  # type: ignore[union-attr,assignment]
        ties = self.buffer.take_ties(item.at if type(item) is Late else e.ts, e.message_id, EVENT)  # type: ignore[union-attr]
        if not ties:
            self._apply_one(engine, item, out)
            return
        # Records of one time and messageId (copies of an event that differ, or one id shared by
        # devices): the buffer kept them in arrival order, so they are applied in an order of
        # what they hold instead, and of copies from one device the first in it is the event.
        for one in sorted([item, *ties], key=_content_order):
            self._apply_one(engine, one, out)

    def _apply_one(self, engine: Engine, item: Event | Late, out: ShardOutput) -> None:
        # Records sent on sort by where the event was applied: a late one by its place, not its time.
        e: Event
        if type(item) is Late:
            e, at, late = item.event, item.at, True
        else:
            e = item  # type: ignore[assignment]
            at, late = e.ts, False
        # Repeats are judged in (time, messageId) order, as events come out of the buffer:
        # of two copies that differ (a retry with another timestamp or payload), the one
        # that sorts first wins whatever order they arrived in.
        if self.dedupe.seen(e.message_id, e.ts, e.device_id):
            out.count("duplicates")
            return
        out.count("accepted")
        user_id = e.user_id
        if e.type == "alias":
            # Decoding holds an alias to a previousId and a userId.
            merged = self._link(e.previous_id, user_id, e, out)  # type: ignore[arg-type]
            self._forward(user_id, e, at, out, late, merged)  # type: ignore[arg-type]
        elif user_id is not None:
            # An event without an anonymousId lands in the shard of its userId as a device:
            # an anonymous profile of that very id is this person's (see _link).
            merged = self._link(e.anonymous_id if e.anonymous_id is not None else user_id, user_id, e, out)
            self._forward(user_id, e, at, out, late, merged)
        else:
            device: str = e.anonymous_id  # type: ignore[assignment]  # decoding: no userId means an anonymousId
            link = self.links.get(device)
            if link is not None:
                self._forward(link[0], e, at, out, late)
                return
            profile = self.profiles.get(device)
            if profile is None:
                profile = self.profiles[device] = engine.new_contact(device, None)
            if profile.deleted:
                out.count("suppressed")
                return
            out.triggers.extend(engine.apply(profile, e, late))
            out.applied.append((device, e))
            self.changed_profiles.add(device)
            self.timers.sync(device, profile.timers)

    def _link(self, device: str, user_id: str, e: Event, out: ShardOutput) -> ContactState | None:
        """Link a device to a known contact; return its anonymous profile when that is to merge into it."""
        current = self.links.get(device)
        if current is not None and current[0] == user_id:
            return None
        if device == user_id:
            # A device id that is also the userId (trackers that reuse one id for both):
            # the anonymous profile of that id, if there is one, is the known contact's past.
            # It merges into the contact of the same id and the device links to it; no
            # tombstone, which would remove the known contact's own row in the warehouse.
            # Without a profile the link is made all the same, so that anonymous events of
            # that id later go to the known contact; it is not a device to list in identities.
            if current is not None:
                return None
            self.links[device] = (user_id, e.ts)
            if device not in self.profiles:
                return None
            self.changed_links.add(device)
            profile = self.profiles.pop(device)
            self.changed_profiles.discard(device)
            if profile.deleted:
                return None
            out.count("merges")
            return profile
        if current is not None:
            out.count("relinks")
        self.links[device] = (user_id, e.ts)
        self.changed_links.add(device)
        profile = self.profiles.pop(device, None)
        if profile is not None and profile.deleted:
            # An erased anonymous profile never joins anyone; the device starts afresh.
            self.changed_profiles.discard(device)
            self.removed_profiles[device] = (user_id, e.ts)
        elif profile is not None:
            # The anonymous history joins the contact once; the profile stops existing here.
            self.changed_profiles.discard(device)
            self.removed_profiles[device] = (user_id, e.ts)
            out.count("merges")
            return profile
        return None

    @staticmethod
    def _forward(contact_id: str, e: Event, at: int, out: ShardOutput, late: bool,
                 merged: ContactState | None = None) -> None:
        """Send an event on to its contact; with the anonymous profile it merges, as one record."""
        out.routed.append(Routed(EVENT if merged is None else MERGE, contact_id, at, e.message_id, event=e,
                                 profile=merged, late=late))

    # ------------------------------------------------------------ warehouse deltas

    def take_changes(
        self,
    ) -> tuple[dict[str, tuple[str, int]], dict[str, ContactState], dict[str, tuple[str, int]]]:
        """Return and forget what changed since the last call: links, profiles, merged-away profiles."""
        links = {d: self.links[d] for d in self.changed_links}
        profiles = {a: self.profiles[a] for a in self.changed_profiles if a in self.profiles}
        removed = self.removed_profiles
        # A cut is where profiles idle for a few cuts are frozen (see engine/store.py).
        self.profiles.cut(self.changed_profiles)
        self.changed_links, self.changed_profiles, self.removed_profiles = set(), set(), {}
        return links, profiles, removed

    def __reduce__(self) -> tuple[Any, ...]:
        return (IdentityShard, (self.shard, 0), {name: getattr(self, name) for name in _STATE})

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
