"""The engine: applies one event (or one merge) to one contact and returns the triggers it causes.

It is plain Python over plain data. Time comes in with the events; nothing here reads
a clock, does I/O or knows about Bytewax. The order of work per event is fixed:
bookkeeping, windows, scoring, then the derived state (grade, stage, segments) and
the rules (completion actions, automation rules), so the same inputs always give
the same triggers in the same order.
"""

from __future__ import annotations

from bisect import insort
from typing import Any, Iterable

from .actions import ActionSpec
from .conditions import Compiled, combine, explain
from .config import AutomationRule, CompletionAction, Config, ScoringRule
from .contact import ContactState
from .events import Event
from .triggers import Trigger, make_trigger

# Passed as `dirty` when everything must be re-derived: a new or merged contact.
EVERYTHING = None
_MAX_PASSES = 4  # actions that change state (set_trait, adjust_score) may cascade; bound it


def _event_key(event: Event) -> str:
    return event.name if event.type == "track" else "$" + event.type  # type: ignore[return-value]


class _EventIndex:
    """Finds the rules that can match an event without testing every rule.

    A rule whose top-level ``all`` pins ``event.type`` or ``event.name`` with ``eq``
    can only match events of that kind; the rest are tested on every event.
    """

    def __init__(self, items: Iterable[tuple[Compiled, Any]]) -> None:
        self._items = [self._split(cond) + (payload,) for cond, payload in items]
        self._cache: dict[tuple[str, str | None], list[tuple[Any, Any]]] = {}

    @staticmethod
    def _split(cond: Compiled) -> tuple[str | None, str | None, Any]:
        """Return (pinned type, pinned name, the test of what is left once the pins hold)."""
        node = cond.node
        pinned: dict[str, str] = {}
        rest = []
        if isinstance(node, dict) and "all" in node and len(cond.parts) == len(node["all"]):
            for leaf, part in zip(node["all"], cond.parts):
                if (
                    isinstance(leaf, dict)
                    and leaf.get("field") in ("event.type", "event.name")
                    and leaf.get("op") == "eq"
                    and not leaf.get("ignore_case")
                    and isinstance(leaf.get("value"), str)
                    and leaf["field"] not in pinned
                ):
                    pinned[leaf["field"]] = leaf["value"]
                else:
                    rest.append(part.fn)
            test = combine("all", tuple(rest))
        else:
            test = cond.fn
        return pinned.get("event.type"), pinned.get("event.name"), test

    def candidates(self, event: Event) -> list[tuple[Any, Any]]:
        """Return (test, payload) pairs that may match this event, in config order.

        The test is the condition minus the pins the index already checked.
        """
        key = (event.type, event.name)
        found = self._cache.get(key)
        if found is None:
            found = [
                (test, payload)
                for ptype, pname, test, payload in self._items
                if (ptype is None or ptype == event.type) and (pname is None or pname == event.name)
            ]
            if len(self._cache) < 10_000:  # event names come from the input; bound the cache
                self._cache[key] = found
        return found


class Engine:
    """Applies events and merges to contacts under one config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.settings
        self._scoring = _EventIndex(
            (rule.condition, (profile.name, rule)) for profile in config.profiles.values() for rule in profile.rules
        )
        self._completions = _EventIndex((ca.condition, ca) for ca in config.completion_actions)
        self._windows = list(config.windows.values())
        self._max_window = max((w.within_ms for w in self._windows), default=0)
        self._visit_events = frozenset(config.settings.visit_events)

    # ------------------------------------------------------------ entry points

    def new_contact(self, contact_id: str, user_id: str | None) -> ContactState:
        """Return a fresh contact: known when ``user_id`` is given, else an anonymous profile."""
        return ContactState(contact_id, user_id)

    def apply(self, contact: ContactState, event: Event) -> list[Trigger]:
        """Apply one event to a contact in place and return the triggers it causes."""
        now = event.ts
        dirty: set[str] = set()
        fresh = contact.events == 0
        self._bookkeep(contact, event, dirty)
        self._count_windows(contact, event, dirty)
        self._score(contact, event, dirty)
        triggers: list[Trigger] = []
        self._derive(contact, now, event.message_id, EVERYTHING if fresh else dirty, event, triggers)
        return triggers

    def merge_into(self, target: ContactState, other: ContactState, now: int, occurrence: str) -> list[Trigger]:
        """Merge ``other`` (an anonymous profile) into ``target`` in place; return the triggers."""
        target += other
        triggers: list[Trigger] = []
        self._derive(target, now, f"{occurrence}/merge", EVERYTHING, None, triggers)
        return triggers

    def evaluate(self, contact: ContactState, now: int, occurrence: str) -> list[Trigger]:
        """Re-derive a contact's state at ``now`` without an event (timers, retroactive rules)."""
        triggers: list[Trigger] = []
        self._derive(contact, now, occurrence, EVERYTHING, None, triggers)
        return triggers

    def retroactive(self, contact: ContactState, rule_ids: set[str], now: int) -> list[Trigger]:
        """Evaluate automation rules that are new since the last run against an existing contact.

        Rules are retroactive (like Pardot's automation rules): a contact that already
        matched before the rule existed is acted on once the rule appears.
        """
        triggers: list[Trigger] = []
        for rule in self.config.automation_rules:
            if rule.rule_id in rule_ids:
                contact.matching.discard(rule.rule_id)
                self._run_rule(contact, rule, now, "retroactive", triggers)
        self._apply_mutations(contact, triggers, now, set())
        return triggers

    # ------------------------------------------------------------ event bookkeeping

    def _bookkeep(self, c: ContactState, e: Event, dirty: set[str]) -> None:
        now = e.ts
        c.events += 1
        if c.first_seen is None or now < c.first_seen:
            c.first_seen = now
        if c.last_seen is None or now > c.last_seen:
            c.last_seen = now
        if c.updated_at is None or now > c.updated_at:
            c.updated_at = now
        if c.user_id is not None and e.anonymous_id is not None and e.anonymous_id not in c.anonymous_ids:
            insort(c.anonymous_ids, e.anonymous_id)
            dirty.add("identity")
        key = _event_key(e)
        c.counts[key] = c.counts.get(key, 0) + 1
        dirty.add("counts." + key)
        campaign = e.context.get("campaign") if e.context else None
        if isinstance(campaign, dict) and campaign and (c.first_campaign_at is None or now < c.first_campaign_at):
            c.first_campaign = {k: v for k, v in campaign.items() if isinstance(v, (str, int, float))}
            c.first_campaign_at = now
            dirty.add("first_campaign")
        if e.type in self._visit_events:
            last = c.last_visit_ts
            if last is None or now - last > self.settings.visit_timeout_ms:
                c.visits += 1
                c.visit_start = e.message_id
                dirty.add("visits")
            if last is None or now > last:
                c.last_visit_ts = now
        if e.traits and e.type != "group":
            changed = False
            for key, value in e.traits.items():
                if c.traits.get(key, _NOTHING) != value:
                    c.traits[key] = value
                    changed = True
            if changed:
                dirty.add("traits")

    def _count_windows(self, c: ContactState, e: Event, dirty: set[str]) -> None:
        now = e.ts
        for w in self._windows:
            if w.matches(c, e, now):
                stamps = c.windows.setdefault(w.id, [])
                if not stamps or now >= stamps[-1]:
                    stamps.append(now)
                else:
                    insort(stamps, now)
                # Keep only what any window can still count; the newest stamp is the horizon.
                horizon = stamps[-1] - w.within_ms
                if stamps[0] <= horizon:
                    cut = 0
                    while cut < len(stamps) and stamps[cut] <= horizon:
                        cut += 1
                    del stamps[:cut]
                dirty.add(f"window:{w.id}")

    def _score(self, c: ContactState, e: Event, dirty: set[str]) -> None:
        now = e.ts
        for test, (profile, rule) in self._scoring.candidates(e):
            if test(c, e, now) and self._within_cap(c, rule, now):
                c.scores[profile] = c.scores.get(profile, 0.0) + rule.points
                dirty.add(f"score.{profile}")

    @staticmethod
    def _within_cap(c: ContactState, rule: ScoringRule, now: int) -> bool:
        if rule.cap_max is None:
            return True
        bucket = 0 if rule.cap_period_ms is None else now // rule.cap_period_ms
        have = c.caps.get(rule.key)
        if have is not None and have[0] == bucket:
            if have[1] >= rule.cap_max:
                return False
            c.caps[rule.key] = (bucket, have[1] + 1)
        elif have is None or bucket > have[0]:
            c.caps[rule.key] = (bucket, 1)
        else:
            # A late event in an older period than the one recorded: the cap's
            # bookkeeping keeps only the newest period, so refuse rather than overcount.
            return False
        return True

    # ------------------------------------------------------------ derived state and rules

    def _derive(
        self,
        c: ContactState,
        now: int,
        occurrence: str,
        dirty: set[str] | None,
        event: Event | None,
        triggers: list[Trigger],
    ) -> None:
        for n in range(_MAX_PASSES):
            occ = occurrence if n == 0 else f"{occurrence}/{n}"
            start = len(triggers)
            self._grade(c, dirty)
            self._stage(c, now, occ, dirty, triggers)
            self._segments(c, now, occ, dirty, triggers)
            if n == 0 and event is not None:
                self._completion_actions(c, event, triggers)
            for rule in self.config.automation_rules:
                if dirty is None or not rule.condition.deps.isdisjoint(dirty):
                    self._run_rule(c, rule, now, occ, triggers)
            changed: set[str] = set()
            self._apply_mutations(c, triggers[start:], now, changed)
            if not changed:
                return
            dirty = changed

    def _grade(self, c: ContactState, dirty: set[str] | None) -> None:
        if dirty is not None and c.grade is not None and "traits" not in dirty and "first_campaign" not in dirty:
            return
        fit = 0.0
        for rule in self.config.grade.rules:
            if rule.condition.fn(c, None, 0):
                fit += rule.points
        grade = self.config.grade.grade_for(fit)
        if grade != c.grade or fit != c.fit:
            c.fit, c.grade = fit, grade
            if dirty is not None:
                dirty.add("grade")

    def _stage(self, c: ContactState, now: int, occ: str, dirty: set[str] | None, out: list[Trigger]) -> None:
        model = self.config.stages
        if dirty is not None and c.stage is not None and f"score.{model.profile}" not in dirty:
            return
        score = c.scores.get(model.profile, 0.0)
        stage = model.stage_for(score)
        if stage == c.stage:
            return
        old, c.stage, c.stage_since = c.stage, stage, now
        if dirty is not None:
            dirty.add("stage")
        if old is None:
            return  # a contact's first stage is where it starts, not a change
        minimum = dict(model.bands)[stage]
        out.append(
            make_trigger(
                "stage_changed",
                "stages",
                "0",
                c,
                now,
                occ,
                params={"from": old, "to": stage},
                reason={"profile": model.profile, "score": score, "band_min": minimum, "cause": occ},
            )
        )

    def _segments(self, c: ContactState, now: int, occ: str, dirty: set[str] | None, out: list[Trigger]) -> None:
        for seg in self.config.segments:
            if dirty is not None and seg.condition.deps.isdisjoint(dirty):
                continue
            member = seg.name in c.segments
            if seg.condition.fn(c, None, now) == member:
                continue
            if member:
                del c.segments[seg.name]
                action = "segment_exited"
            else:
                c.segments[seg.name] = now
                action = "segment_entered"
            if dirty is not None:
                dirty.add("segments")
            out.append(
                make_trigger(
                    action,
                    seg.rule_id,
                    "0",
                    c,
                    now,
                    occ,
                    params={"segment": seg.name},
                    reason={"values": explain(seg.condition, c, None, now), "cause": occ},
                )
            )

    def _completion_actions(self, c: ContactState, e: Event, out: list[Trigger]) -> None:
        for test, ca in self._completions.candidates(e):
            ca: CompletionAction
            if ca.since_ms is not None and e.ts < ca.since_ms:
                continue  # not retroactive: events before the action existed never fire it
            if test(c, e, e.ts):
                reason = {"values": explain(ca.condition, c, e, e.ts), "cause": e.message_id}
                self._emit(c, ca.rule_id, ca.actions, e.ts, e.message_id, reason, out)

    def _run_rule(self, c: ContactState, rule: AutomationRule, now: int, occ: str, out: list[Trigger]) -> None:
        rid = rule.rule_id
        holds = rule.condition.fn(c, None, now)
        was = rid in c.matching
        if not holds:
            if was:
                c.matching.discard(rid)
            return
        if was:
            return  # still matching: rules fire on the transition into the match
        c.matching.add(rid)
        if rid in c.fired and not rule.repeat:
            return
        c.fired[rid] = now
        reason = {"values": explain(rule.condition, c, None, now), "cause": occ}
        self._emit(c, rid, rule.actions, now, occ, reason, out)

    @staticmethod
    def _emit(
        c: ContactState,
        rule_id: str,
        actions: list[ActionSpec],
        now: int,
        occ: str,
        reason: dict[str, Any],
        out: list[Trigger],
    ) -> None:
        for slot, spec in enumerate(actions):
            out.append(make_trigger(spec.action, rule_id, str(slot), c, now, occ, spec.params, reason))

    def _apply_mutations(self, c: ContactState, fired: list[Trigger], now: int, changed: set[str]) -> None:
        """Apply the actions that change the contact itself; record what changed."""
        for t in fired:
            params = t.params
            if t.action == "set_trait":
                if c.traits.get(params["trait"], _NOTHING) != params["value"]:
                    c.traits[params["trait"]] = params["value"]
                    changed.add("traits")
            elif t.action == "adjust_score":
                profile = params.get("profile", "default")
                c.scores[profile] = c.scores.get(profile, 0.0) + params["points"]
                changed.add(f"score.{profile}")
            elif t.action == "add_to_list":
                if params["list"] not in c.lists:
                    c.lists[params["list"]] = now
                    changed.add("lists")
            elif t.action == "remove_from_list":
                if c.lists.pop(params["list"], None) is not None:
                    changed.add("lists")


_NOTHING = object()
