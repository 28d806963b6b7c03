"""Per-contact state: plain, picklable and mergeable, so anonymous history can join a known contact."""

from __future__ import annotations

from heapq import merge as _merge_sorted
from typing import Any, Sequence


def _copy_run(run: Any) -> Any:
    # Copied so merged states never share a run. Run (engine/workflows.py) copies itself:
    # this module cannot import it (workflows -> conditions reads contacts), and one
    # method call costs less than reading eight attributes of an untyped object.
    return run.copy()


def _first_set(a: Any, b: Any) -> Any:
    return a if a is not None else b


def _min_set(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max_set(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


# The state of a contact, in this order: pickling, freezing (engine/store.py) and equality
# go by it. A module constant rather than ContactState.__slots__, which classes compiled
# by mypyc do not have (see leadstream/native.py).
FIELDS = (
    "contact_id",
    "user_id",
    "anonymous_ids",
    "traits",
    "scores",
    "fit",
    "grade",
    "stage",
    "stage_since",
    "segments",
    "lists",
    "first_seen",
    "last_seen",
    "first_campaign",
    "first_campaign_at",
    "visits",
    "last_visit_ts",
    "visit_start",
    "counts",
    "windows",
    "caps",
    "fired",
    "matching",
    "events",
    "updated_at",
    "score_at",
    "last_activity",
    "decay_steps",
    "timers",
    "runs",
    "wf_entries",
    "wf_fired",
    "deleted",
)


class ContactState:
    """Everything the engine knows about one contact (known) or one device (anonymous).

    ``contact_id`` is the userId of a known contact and the anonymousId of an
    anonymous profile. Derived fields (grade, stage, segments) are recomputed by the
    engine; the rest is history that ``merge`` combines.
    """

    __slots__ = FIELDS

    def __init__(self, contact_id: str, user_id: str | None = None, state: Sequence[Any] | None = None) -> None:
        if state is not None:  # restoring: pickle and thaw pass the fields in FIELDS order
            self.__setstate__(state)
            return
        self.contact_id = contact_id
        self.user_id = user_id
        self.anonymous_ids: list[str] = [] if user_id is not None else [contact_id]
        self.traits: dict[str, Any] = {}
        self.scores: dict[str, float] = {}
        self.fit: float = 0.0
        self.grade: str | None = None
        self.stage: str | None = None
        self.stage_since: int | None = None
        self.segments: dict[str, int] = {}  # segment -> since (event time)
        self.lists: dict[str, int] = {}  # static list -> since, from add_to_list actions
        self.first_seen: int | None = None
        self.last_seen: int | None = None
        self.first_campaign: dict[str, Any] | None = None
        self.first_campaign_at: int | None = None
        self.visits: int = 0
        self.last_visit_ts: int | None = None
        self.visit_start: str | None = None  # messageId of the event that opened the current visit
        self.counts: dict[str, int] = {}  # "$page", "$identify", ..., or a track event name
        self.windows: dict[str, list[int]] = {}  # window id -> sorted event times
        self.caps: dict[str, tuple[int, int]] = {}  # scoring rule -> (period bucket, uses)
        self.fired: dict[str, int] = {}  # automation rule -> event time it last fired
        # Automation rules whose condition holds now. A dict used as a set: an empty
        # dict is 64 bytes against an empty set's 216, and most contacts match nothing.
        self.matching: dict[str, None] = {}
        self.events: int = 0
        self.updated_at: int | None = None
        self.score_at: dict[str, int] = {}  # profile -> the instant its decaying score was settled to
        self.last_activity: int | None = None  # newest event time applied: inactivity decay counts from it
        self.decay_steps: dict[str, int] = {}  # profile -> inactivity steps applied since last_activity
        self.timers: dict[str, int] = {}  # timer name -> due (event time)
        self.runs: dict[str, Any] = {}  # workflow run key -> workflows.Run
        self.wf_entries: dict[str, tuple[int, int]] = {}  # workflow -> (entries, last entry time)
        self.wf_fired: dict[str, int] = {}  # "workflow#step" -> when an action step last fired
        self.deleted = False  # erased on request: only the ids remain, to suppress later events

    # -- identity

    @property
    def email(self) -> str | None:
        """The contact's e-mail address, from the ``email`` trait."""
        value = self.traits.get("email")
        return value if isinstance(value, str) and value else None

    @property
    def known(self) -> bool:
        """True once the contact has a userId."""
        return self.user_id is not None

    # -- pickling: slots classes need explicit state

    def __getstate__(self) -> tuple[Any, ...]:
        # Spelt out in FIELDS order (a test holds it to it): compiled, this reads the
        # slots directly, 1.2 us faster per freeze than operator.attrgetter(*FIELDS).
        return (
            self.contact_id, self.user_id, self.anonymous_ids, self.traits, self.scores, self.fit, self.grade,
            self.stage, self.stage_since, self.segments, self.lists, self.first_seen, self.last_seen,
            self.first_campaign, self.first_campaign_at, self.visits, self.last_visit_ts, self.visit_start,
            self.counts, self.windows, self.caps, self.fired, self.matching, self.events, self.updated_at,
            self.score_at, self.last_activity, self.decay_steps, self.timers, self.runs, self.wf_entries,
            self.wf_fired, self.deleted,
        )

    def __setstate__(self, state: Sequence[Any]) -> None:
        # Every thaw comes through here: one unpacking, not 33 setattr calls by name.
        (
            self.contact_id, self.user_id, self.anonymous_ids, self.traits, self.scores, self.fit, self.grade,
            self.stage, self.stage_since, self.segments, self.lists, self.first_seen, self.last_seen,
            self.first_campaign, self.first_campaign_at, self.visits, self.last_visit_ts, self.visit_start,
            self.counts, self.windows, self.caps, self.fired, self.matching, self.events, self.updated_at,
            self.score_at, self.last_activity, self.decay_steps, self.timers, self.runs, self.wf_entries,
            self.wf_fired, self.deleted,
        ) = state

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor: compiled classes cannot be made with __new__ alone.
        return (ContactState, (self.contact_id, self.user_id, self.__getstate__()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContactState):
            return NotImplemented
        return self.__getstate__() == other.__getstate__()

    def __repr__(self) -> str:
        return f"ContactState({self.contact_id!r}, user_id={self.user_id!r}, scores={self.scores!r}, stage={self.stage!r})"

    def copy(self) -> ContactState:
        """Return a deep-enough copy: containers are copied, scalars shared."""
        new = ContactState(self.contact_id, self.user_id, self.__getstate__())
        new.anonymous_ids = list(self.anonymous_ids)
        new.traits = dict(self.traits)
        new.scores = dict(self.scores)
        new.segments = dict(self.segments)
        new.lists = dict(self.lists)
        new.first_campaign = None if self.first_campaign is None else dict(self.first_campaign)
        new.counts = dict(self.counts)
        new.windows = {k: list(v) for k, v in self.windows.items()}
        new.caps = dict(self.caps)
        new.fired = dict(self.fired)
        new.matching = dict(self.matching)
        new.score_at = dict(self.score_at)
        new.decay_steps = dict(self.decay_steps)
        new.timers = dict(self.timers)
        new.runs = {k: _copy_run(r) for k, r in self.runs.items()}
        new.wf_entries = dict(self.wf_entries)
        new.wf_fired = dict(self.wf_fired)
        return new

    # -- merging

    def merge(self, other: ContactState) -> ContactState:
        """Return a new state holding both histories; neither input changes.

        The identity is the first known one (self's, else other's); on conflicting
        traits self wins. Merge is associative, which lets several devices of one
        person join in any grouping with the same result.
        """
        out = self.copy()
        out += other
        return out

    def __iadd__(self, other: ContactState) -> ContactState:
        """Merge ``other`` into self in place (see ``merge``)."""
        if self.user_id is None and other.user_id is not None:
            self.contact_id, self.user_id = other.contact_id, other.user_id
        self.anonymous_ids = sorted(set(self.anonymous_ids) | set(other.anonymous_ids))
        for key, value in other.traits.items():
            self.traits.setdefault(key, value)
        for name, points in other.scores.items():
            self.scores[name] = self.scores.get(name, 0.0) + points
        for name, since in other.lists.items():
            self.lists[name] = min(since, self.lists.get(name, since))
        self.first_seen = _min_set(self.first_seen, other.first_seen)
        self.last_seen = _max_set(self.last_seen, other.last_seen)
        if other.first_campaign_at is not None and (
            self.first_campaign_at is None or other.first_campaign_at < self.first_campaign_at
        ):
            self.first_campaign, self.first_campaign_at = dict(other.first_campaign or {}), other.first_campaign_at
        self.visits += other.visits
        if other.last_visit_ts is not None and (self.last_visit_ts is None or other.last_visit_ts > self.last_visit_ts):
            self.last_visit_ts, self.visit_start = other.last_visit_ts, other.visit_start
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        for wid, stamps in other.windows.items():
            mine = self.windows.get(wid)
            self.windows[wid] = list(_merge_sorted(mine, stamps)) if mine else list(stamps)
        for key, (bucket, uses) in other.caps.items():
            have = self.caps.get(key)
            if have is None or bucket > have[0]:
                self.caps[key] = (bucket, uses)
            elif bucket == have[0]:
                self.caps[key] = (bucket, have[1] + uses)
        for name, at in other.score_at.items():
            self.score_at[name] = max(at, self.score_at.get(name, at))
        self.last_activity = _max_set(self.last_activity, other.last_activity)
        for name, n in other.decay_steps.items():
            self.decay_steps[name] = min(n, self.decay_steps.get(name, n))
        for key, due in other.timers.items():
            if key not in other.runs:  # workflow timers follow the runs kept below
                self.timers[key] = min(due, self.timers.get(key, due))
        for key, run in other.runs.items():
            if key not in self.runs:
                # A workflow holding one run per contact keeps self's run when both have one.
                self.runs[key] = _copy_run(run)
                if run.due is not None:
                    self.timers[key] = run.due
        for name, (n, last) in other.wf_entries.items():
            have = self.wf_entries.get(name)
            self.wf_entries[name] = (n, last) if have is None else (have[0] + n, max(have[1], last))
        for key, at in other.wf_fired.items():
            self.wf_fired[key] = max(at, self.wf_fired.get(key, at))
        self.deleted = self.deleted or other.deleted
        self.events += other.events
        self.updated_at = _max_set(self.updated_at, other.updated_at)
        # What is derived from the state (grade, stage, segments, the automation rules it
        # matches and has fired) stays self's: the engine derives it again after a merge, and
        # what changes for self is announced under self's id. Taken from the anonymous
        # profile, a person who identified was in its segments and stage without a trigger
        # for the known contact, and a sales alert sent for the profile, without an e-mail
        # address, was never sent for the contact.
        return self

    def forget(self, now: int) -> None:
        """Erase everything but the identifiers (GDPR): they stay only to suppress later events."""
        keep = (self.contact_id, self.user_id, list(self.anonymous_ids))
        self.__init__(keep[0], keep[1])  # type: ignore[misc]
        self.anonymous_ids = keep[2]
        self.deleted = True
        self.updated_at = now

    def to_row(self) -> dict[str, Any]:
        """Return the contact as plain data (for the warehouse and golden tests)."""
        return {
            "contact_id": self.contact_id,
            "user_id": self.user_id,
            "email": self.email,
            "anonymous_ids": list(self.anonymous_ids),
            "traits": dict(self.traits),
            "scores": dict(self.scores),
            "fit": self.fit,
            "grade": self.grade,
            "stage": self.stage,
            "stage_since": self.stage_since,
            "segments": dict(self.segments),
            "lists": dict(self.lists),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "first_campaign": self.first_campaign,
            "visits": self.visits,
            "counts": dict(self.counts),
            "events": self.events,
            "updated_at": self.updated_at,
            "deleted": self.deleted,
            "timers": dict(self.timers),
            "workflows": sorted((r.workflow, r.pc, r.since, r.due) for r in self.runs.values()),
        }


