"""The engine: applies one event (or one merge) to one contact and returns the triggers it causes.

It is plain Python over plain data. Time comes in with the events; nothing here reads
a clock, does I/O or knows about Bytewax. The order of work per event is fixed:
bookkeeping, windows, scoring, then the derived state (grade, stage, segments) and
the rules (completion actions, automation rules), so the same inputs always give
the same triggers in the same order.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from sys import intern
from typing import Any, Final, Iterable, Sequence

from .actions import ActionSpec
from .conditions import Compiled, combine, explain
from .config import AutomationRule, Config, ScoringRule, Segment
from .contact import ContactState
from .events import EVENT_TYPES, Event
from .timeutil import format_ms
from .triggers import Trigger, make_trigger
from .workflows import ACTION, IF, JUMP, WAIT, WAIT_UNTIL, Run, Workflow, capture, fill, run_key

# Passed as `dirty` when everything must be re-derived: a new or merged contact.
EVERYTHING = None
# Up to this many segments (or rules), testing each one's deps against the changes is
# cheaper than looking the changes up in an index: the example config's 3 segments and 2
# rules ran about 5 % faster scanning; the 102 segments and 101 rules of `many_rules` 11 %
# faster with the index, and a third faster with the rule guards as well.
_SCAN_UP_TO = 32
_MAX_PASSES: Final = 4  # actions that change state (set_trait, adjust_score) may cascade; bound it
# The timer that wakes a contact for its count windows, under one of two names that say
# whether its derived state agrees with the counts (see Engine._schedule_windows). The
# lagging one keeps the name every window timer had before, so recovery state written
# then resumes as it was scheduled: at the next expiry.
WINDOW_LAGGING: Final = "window"
WINDOW_SETTLED: Final = "window:settled"


def _event_key(event: Event) -> str:
    """The counts key of an event: its name for a track, ``$type`` otherwise; interned."""
    if event.type == "track":
        return intern(event.name)  # type: ignore[arg-type]  # already interned by decoding: a flag check
    key = _TYPE_KEYS.get(event.type)
    return key if key is not None else intern("$" + event.type)


_TYPE_KEYS: Final[dict[str, str]] = {t: intern("$" + t) for t in EVENT_TYPES}


# Dirty-set names, built once per key: every event adds a count's and a score's name, and
# formatting them was a string allocation each (the names come from the config and the
# event names seen, so the maps stay small; bounded like the rule index's cache).
_COUNT_NAMES: Final[dict[str, str]] = {}
_SCORE_NAMES: Final[dict[str, str]] = {}


def _count_name(key: str) -> str:
    name = _COUNT_NAMES.get(key)
    if name is None:
        if len(_COUNT_NAMES) >= 10_000:
            _COUNT_NAMES.clear()
        name = _COUNT_NAMES[key] = "counts." + key
    return name


def _score_name(profile: str) -> str:
    name = _SCORE_NAMES.get(profile)
    if name is None:
        name = _SCORE_NAMES[profile] = "score." + profile
    return name


class _EventIndex:
    """Finds the rules that can match an event without testing every rule.

    A rule whose top-level ``all`` pins ``event.type`` or ``event.name`` with ``eq``
    can only match events of that kind; the rest are tested on every event.
    """

    def __init__(self, items: Iterable[tuple[Compiled, Any]]) -> None:
        self._items = [self._split(cond) + (payload,) for cond, payload in items]
        self._cache: dict[str, dict[str | None, list[tuple[Any, Any]]]] = {}

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
        # By type, then by name: no key tuple to build and hash per event.
        by_name = self._cache.get(event.type)
        if by_name is None:
            by_name = self._cache[event.type] = {}
        found = by_name.get(event.name)
        if found is None:
            found = [
                (test, payload)
                for ptype, pname, test, payload in self._items
                if (ptype is None or ptype == event.type) and (pname is None or pname == event.name)
            ]
            if len(by_name) < 10_000:  # event names come from the input; bound the cache
                by_name[event.name] = found
        return found


def _count_entry(c: ContactState, workflow: str, now: int) -> None:
    # No (0, now) default tuple built for every entry only to be dropped.
    seen = c.wf_entries.get(workflow)
    c.wf_entries[workflow] = (1, now) if seen is None else (seen[0] + 1, now)


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
        self._window_deps = frozenset(f"window:{w.id}" for w in self._windows)
        # When a skipped window wake-up cannot show (see _schedule_windows).
        self._edges_exact = not any(p.decay is not None and p.decay.half_life_ms for p in config.profiles.values())
        self._exit_checks = {wf.name: wf.exit_when.fn for wf in config.workflows if wf.exit_when is not None}
        self._visit_events = frozenset(config.settings.visit_events)
        # Which segments and rules read each piece of state, so a change looks at those only:
        # with 200 segments and 100 rules, testing every one's deps against the dirty set
        # cost more than evaluating the few that could have changed.
        self._segments_by_dep = _by_dep(seg.condition.deps for seg in config.segments)
        self._rules_by_dep = _by_dep(rule.condition.deps for rule in config.automation_rules)
        # A rule that needs a segment ("all" of a "segments contains X" and more) cannot start
        # to match while the contact is outside X: looked-up rules skip it unless it matched.
        self._rule_guards = [_required_segment(rule.condition.node) for rule in config.automation_rules]
        self._decays = {name: p.decay for name, p in config.profiles.items() if p.decay is not None}
        self._thresholds = {name: _thresholds(config, name) for name in self._decays}
        self._workflows = {wf.name: wf for wf in config.workflows}
        self._segment_names = frozenset(seg.name for seg in config.segments)
        self._wf_order = {wf.name: i for i, wf in enumerate(config.workflows)}
        # The run key of each workflow that holds one run per contact, made once rather
        # than formatted and interned at every entry.
        self._wf_single_keys = {wf.name: run_key(wf.name, "", True) for wf in config.workflows
                                if wf.entry != "every_time"}
        self._wf_by_event = _EventIndex((wf.trigger_event, wf) for wf in config.workflows if wf.trigger_event is not None)
        self._wf_by_state = [wf for wf in config.workflows if wf.trigger_event is None]

    # ------------------------------------------------------------ entry points

    def new_contact(self, contact_id: str, user_id: str | None) -> ContactState:
        """Return a fresh contact: known when ``user_id`` is given, else an anonymous profile."""
        return ContactState(contact_id, user_id)

    def apply(self, contact: ContactState, event: Event, late: bool = False) -> list[Trigger]:
        """Apply one event to a contact in place and return the triggers it causes.

        A deleted contact takes no more events (shards count them as suppressed), and
        the configured deletion event erases the contact and tells actioners to do the same.
        ``late``: the shard applies the event behind its watermark, at its own older time.
        """
        if contact.deleted:
            return []
        return self._apply(contact, event, late, False)

    def merge_into(self, target: ContactState, other: ContactState, now: int, occurrence: str,
                   late: bool = False, event: Event | None = None) -> list[Trigger]:
        """Merge ``other`` (an anonymous profile) into ``target`` in place; return the triggers.

        ``event`` is the one that caused the merge (an identify, an alias, an event with both
        ids): it is applied to the merged contact at once, and the contact is judged once,
        on its whole history and what the event brings. Judged before the event, a sales
        alert the merged score set off went out without the e-mail address that the very
        identify carried. Nothing joins a deleted contact, and a deleted profile brings
        nothing along.
        """
        if target.deleted:
            return []
        if other.deleted:
            return [] if event is None else self._apply(target, event, late, False)
        # Decaying scores only add up when both are valued at the same instant.
        self._settle(target, now, set())
        other = other.copy()
        self._settle(other, now, set())
        target += other
        if event is not None:
            return self._apply(target, event, late, True)
        # A merge recorded without its event (a recovery snapshot of an earlier version).
        triggers: list[Trigger] = []
        occ = f"{occurrence}/merge"
        self._derive(target, now, occ, EVERYTHING, None, triggers)
        self._workflows_after(target, now, None, occ, triggers)
        self._schedule(target, now, True, late)
        return triggers

    def _apply(self, contact: ContactState, event: Event, late: bool, merged: bool) -> list[Trigger]:
        now = event.ts
        occ = event.occurrence(contact.contact_id, contact.user_id is not None)
        if event.type == "track" and event.name == self.config.privacy.deletion_event:
            # Made before forgetting: actioners find the person by the e-mail address and the
            # devices it had (an e-mail tool knows no userId). The warehouse keeps neither.
            erased = make_trigger("contact_deleted", "privacy", "0", contact, now, occ,
                                  params={"anonymous_ids": sorted(contact.anonymous_ids)},
                                  reason={"cause": occ, "event": event.name})
            contact.forget(now)
            return [erased]
        dirty: set[str] = set()
        # After a merge every piece of state may have changed, as for a contact's first event.
        fresh = merged or contact.events == 0
        self._settle(contact, now, dirty)
        self._bookkeep(contact, event, dirty)
        self._count_windows(contact, event, dirty)
        self._score(contact, event, dirty)
        read = fresh or self._window_deps <= dirty
        triggers: list[Trigger] = []
        self._derive(contact, now, occ, EVERYTHING if fresh else dirty, event, triggers)
        self._workflows_after(contact, now, event, occ, triggers)
        self._schedule(contact, now, read, late)
        return triggers

    def on_timer(self, contact: ContactState, key: str, due: int) -> list[Trigger]:
        """Fire a contact's timer at its due time (event time); return the triggers.

        Triggers a timer causes carry the due time as their event time, and an
        occurrence key built from it, so a replay fires them with the same ids.
        """
        if contact.timers.get(key) != due:
            return []  # replaced or cancelled since it was scheduled
        del contact.timers[key]
        read = key == WINDOW_SETTLED or key == WINDOW_LAGGING
        # Both window timers name their triggers' occurrence "window", as before there were two.
        occ = f"timer:{WINDOW_LAGGING if read else key}@{due}"
        triggers: list[Trigger] = []
        # Conditions read time only through count windows, so a timer changes what
        # decay, window expiry and a resumed workflow's own actions change; re-derive that.
        dirty: set[str] = set()
        self._settle(contact, due, dirty)
        if read:
            dirty.update(self._window_deps)
        elif key.startswith("wf:"):
            run: Run | None = contact.runs.get(key)
            if run is not None and run.due == due:
                self._resume_run(contact, run, due, triggers)
                self._apply_mutations(contact, triggers, due, dirty)
        self._derive(contact, due, occ, dirty, None, triggers)
        self._workflows_after(contact, due, None, occ, triggers)
        self._schedule(contact, due, read)
        return triggers

    def reconfigured(self, contact: ContactState, now: int, occurrence: str) -> tuple[bool, list[Trigger]]:
        """Bring a contact saved under another config in line with this one; return (changed, triggers).

        Segments, scoring profiles and workflows the config no longer has leave no members,
        scores or runs behind (they stayed in the warehouse for ever), and what is derived is
        derived again, as of ``now``: a segment that is new or whose condition changed takes
        in the contacts that match, as a dynamic list does, and changed stage bands move
        contacts between stages, each with its trigger.
        """
        if contact.deleted:
            return False, []
        before = _derived(contact)
        for name in [n for n in contact.segments if n not in self._segment_names]:
            del contact.segments[name]
        for name in [n for n in contact.scores if n not in self.config.profiles]:
            del contact.scores[name]
            contact.score_at.pop(name, None)
            contact.decay_steps.pop(name, None)
        runs: dict[str, Run] = contact.runs
        for run in [r for r in runs.values() if r.workflow not in self._workflows]:
            self._end_run(contact, run)
        triggers: list[Trigger] = []
        self._settle(contact, now, set())
        self._derive(contact, now, occurrence, EVERYTHING, None, triggers)
        # Workflows entered on a segment or stage start here too, as after any other change.
        self._workflows_after(contact, now, None, occurrence, triggers)
        self._schedule(contact, now, True)
        return bool(triggers) or _derived(contact) != before, triggers

    def retroactive(self, contact: ContactState, rule_ids: set[str], now: int) -> list[Trigger]:
        """Evaluate automation rules that are new since the last run against an existing contact.

        Rules are retroactive (like Pardot's automation rules): a contact that already
        matched before the rule existed is acted on once the rule appears.
        """
        triggers: list[Trigger] = []
        for rule in self.config.automation_rules:
            if rule.rule_id in rule_ids:
                contact.matching.pop(rule.rule_id, None)
                self._run_rule(contact, rule, now, "retroactive", triggers)
        self._apply_mutations(contact, triggers, now, set())
        return triggers

    # ------------------------------------------------------------ event bookkeeping

    def _bookkeep(self, c: ContactState, e: Event, dirty: set[str]) -> None:
        now = e.ts
        c.events += 1
        if c.last_activity is None or now > c.last_activity:
            c.last_activity = now
            c.decay_steps.clear()
        if c.first_seen is None or now < c.first_seen:
            c.first_seen = now
        if c.last_seen is None or now > c.last_seen:
            c.last_seen = now
        if c.updated_at is None or now > c.updated_at:
            c.updated_at = now
        if c.user_id is not None and e.anonymous_id is not None and e.anonymous_id not in c.anonymous_ids:
            insort(c.anonymous_ids, e.anonymous_id)
            dirty.add("identity")
        # Interned: every contact's counts share one copy of each event name.
        key = _event_key(e)
        c.counts[key] = c.counts.get(key, 0) + 1
        dirty.add(_count_name(key))
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
        for test, payload in self._scoring.candidates(e):
            # Typed locals, not `test, (profile, rule)`: compiled, unpacking the untyped inner
            # pair went through the iterator protocol, and `rule.points` was a generic lookup.
            profile: str = payload[0]
            rule: ScoringRule = payload[1]
            if test(c, e, now) and self._within_cap(c, rule, now):
                c.scores[profile] = c.scores.get(profile, 0.0) + rule.points
                dirty.add(_score_name(profile))

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
                self._completion_actions(c, event, occ, triggers)
            rules = self.config.automation_rules
            if dirty is None or len(rules) <= _SCAN_UP_TO:
                for rule in rules:
                    if dirty is None or not rule.condition.deps.isdisjoint(dirty):
                        self._run_rule(c, rule, now, occ, triggers)
            else:
                guards, segments, matching = self._rule_guards, c.segments, c.matching
                for i in _reading(self._rules_by_dep, dirty):
                    need = guards[i]
                    if need is None or need in segments or rules[i].rule_id in matching:
                        self._run_rule(c, rules[i], now, occ, triggers)
            if len(triggers) == start:
                return  # nothing fired, so no action changed the contact
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
        if dirty is not None and c.stage is not None and _score_name(model.profile) not in dirty:
            return
        score = c.scores.get(model.profile, 0.0)
        stage = model.stage_for(score)
        if stage == c.stage:
            return
        old, c.stage, c.stage_since = c.stage, stage, now
        if dirty is not None:
            dirty.add("stage")
        if old is None:
            # Every contact starts where a score of 0 puts it: a first event that scores
            # above that band is a change from there (actioners mirroring stages, and
            # workflows entered on a stage, must see it), one that does not is the start.
            old = model.stage_for(0.0)
            if stage == old:
                return
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
        segments = self.config.segments
        if dirty is None or len(segments) <= _SCAN_UP_TO:
            for seg in segments:
                # "segments" joins dirty at the first change: segments further down see it.
                if dirty is not None and seg.condition.deps.isdisjoint(dirty):
                    continue
                if seg.condition.fn(c, None, now) != (seg.name in c.segments):
                    self._flip(c, seg, now, occ, dirty, out)
            return
        todo: Sequence[int] = _reading(self._segments_by_dep, dirty)
        membership_dirty = "segments" in dirty
        k = 0
        while k < len(todo):
            seg = segments[todo[k]]
            k += 1
            if seg.condition.fn(c, None, now) != (seg.name in c.segments):
                self._flip(c, seg, now, occ, dirty, out)
                if not membership_dirty:
                    membership_dirty = True
                    # Segments further down that read membership must now be looked at too.
                    later = [j for j in self._segments_by_dep.get("segments", ()) if j > todo[k - 1]]
                    if later:
                        todo, k = sorted({*todo[k:], *later}), 0

    @staticmethod
    def _flip(c: ContactState, seg: Segment, now: int, occ: str, dirty: set[str] | None, out: list[Trigger]) -> None:
        """Move the contact into or out of a segment whose condition changed, and say so."""
        if seg.name in c.segments:
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

    def _completion_actions(self, c: ContactState, e: Event, occ: str, out: list[Trigger]) -> None:
        for test, ca in self._completions.candidates(e):
            if ca.since_ms is not None and e.ts < ca.since_ms:
                continue  # not retroactive: events before the action existed never fire it
            if test(c, e, e.ts):
                reason = {"values": explain(ca.condition, c, e, e.ts), "cause": occ}
                self._emit(c, ca.rule_id, ca.actions, e.ts, occ, reason, out)

    def _run_rule(self, c: ContactState, rule: AutomationRule, now: int, occ: str, out: list[Trigger]) -> None:
        rid = rule.rule_id
        holds = rule.condition.fn(c, None, now)
        was = rid in c.matching
        if not holds:
            if was:
                c.matching.pop(rid, None)
            return
        if was:
            return  # still matching: rules fire on the transition into the match
        c.matching[rid] = None
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


    # ------------------------------------------------------------ time: decay and timers

    def _settle(self, c: ContactState, now: int, dirty: set[str]) -> None:
        """Bring decaying scores to their value at ``now``."""
        for name, decay in self._decays.items():
            at = c.score_at.get(name, now)
            if now < at:
                continue  # a late event: decay never runs backwards
            c.score_at[name] = now  # points added next are worth their full value now
            value = c.scores.get(name)
            if value is None:
                continue
            new, steps = decay.settle(value, at, now, c.last_activity, c.decay_steps.get(name, 0))
            if steps:
                c.decay_steps[name] = steps
            if new != value:
                c.scores[name] = new
                dirty.add(_score_name(name))

    def _schedule(self, c: ContactState, now: int, read: bool, late: bool = False) -> None:
        """Set the contact's maintenance timers: the next decay crossing or step, the next window wake-up."""
        due = None
        for name, decay in self._decays.items():
            value = c.scores.get(name)
            if not value:
                continue
            for t in (decay.crossing(value, now, self._thresholds[name]),
                      decay.next_step(c.last_activity, c.decay_steps.get(name, 0))):
                if t is not None and t > now and (due is None or t < due):
                    due = t
        _set_timer(c, "decay", due)
        if self._windows:
            self._schedule_windows(c, now, read, late)

    def _run_moves_at_wakeup(self, c: ContactState, now: int) -> bool:
        """True when a wake-up would move one of the contact's workflow runs: its exit condition
        or the condition its wait_until step awaits holds."""
        checks = self._exit_checks
        runs: dict[str, Run] = c.runs
        for run in runs.values():
            check = checks.get(run.workflow)
            if check is not None and check(c, None, now):
                return True
            wf = self._workflows.get(run.workflow)
            if wf is not None and run.pc < len(wf.program):
                step = wf.program[run.pc]
                if step.kind == WAIT_UNTIL and step.condition is not None and step.condition.fn(c, None, now):
                    return True
        return False

    def _schedule_windows(self, c: ContactState, now: int, read: bool, late: bool) -> None:
        """Set the timer that wakes the contact when a count window's events expire.

        Waking it at every expiry cost a thaw, a pass over the derived state and a contact
        row per event that leaves a window, and on `standard` nine wake-ups in ten changed
        nothing: a count of 1 or 2 falling, where 3 is the only edge. So when the derived
        state agrees with the counts, the contact sleeps until a count falls past an edge
        (see WindowSpec.edges); such a wake-up is the first that can change anything.

        It wakes at every expiry, as before, where a skipped wake-up could still show:
        - while the state lags the counts: after a late event (evaluated at its own, older
          instant, with newer stamps left out), or after a wake-up that an event or another
          timer of the same instant overtook. The next wake-up that reads every window
          (one at an expiry, or a merge) catches up;
        - while a workflow run's exit condition, or the condition its wait_until step
          awaits, holds: both are checked at every wake-up, and the run moves at the first
          one (it holds when the run started with it holding, or reads an event field as missing);
        - with a half-life decay: every wake-up settles and rounds the score.
        ``read``: this call evaluated every window's conditions at ``now``.
        """
        timers = c.timers
        lagging = timers.pop(WINDOW_LAGGING, None)
        settled = timers.pop(WINDOW_SETTLED, None)
        if not c.windows:
            return  # nothing counted: no wake-up, and no exit conditions to check for one
        behind = late or (not read and (lagging is not None or (settled is not None and settled <= now)))
        exact = not behind and self._edges_exact and not self._run_moves_at_wakeup(c, now)
        due = None
        for w in self._windows:
            stamps = c.windows.get(w.id)
            if stamps:
                t = _window_wakeup(stamps, now, w.within_ms, w.edges if exact else None)
                if t is not None and (due is None or t < due):
                    due = t
        if due is not None:
            timers[WINDOW_LAGGING if behind else WINDOW_SETTLED] = due

    # ------------------------------------------------------------ workflows

    def _workflows_after(
        self, c: ContactState, now: int, event: Event | None, occ: str, triggers: list[Trigger]
    ) -> None:
        """Move runs along (exits, awaited events, restarted waits), then start new ones."""
        if not self._workflows:
            return
        start = len(triggers)
        # Typed: a contact's runs are Any to contact.py, and reading an untyped run's
        # attributes (and everything found through them) went through getattr.
        runs: dict[str, Run] = c.runs
        if runs:
            for key in sorted(runs) if len(runs) > 1 else list(runs):
                run = runs.get(key)
                if run is None:
                    continue
                wf = self._workflows.get(run.workflow)
                if wf is None or (wf.exit_when is not None and wf.exit_when.fn(c, event, now)):
                    self._end_run(c, run)
                    continue
                if run.pc >= len(wf.program):
                    continue
                step = wf.program[run.pc]
                if step.condition is None:
                    continue  # a plain wait: only its timer moves it on
                # A wait_until is checked like exit_when, at every event and every wake-up:
                # what it waits for may be state that a timer changes (a score decaying out
                # of a segment), and the wait must end then, not at the next event or its timeout.
                if step.kind == WAIT_UNTIL and step.condition.fn(c, event, now):
                    run.pc += 1
                    run.since, run.due = now, None
                    c.timers.pop(run.key, None)
                    self._execute(c, wf, run, now, event, triggers)
                elif event is not None and step.kind == WAIT and step.condition.fn(c, event, now):
                    run.since, run.due = now, now + step.duration_ms
                    c.timers[run.key] = run.due
        entering: list[Workflow] = []
        if self._wf_by_state and start:
            entered: set[Any] = set()
            stages: set[Any] = set()
            for t in triggers[:start]:
                if t.action == "segment_entered":
                    entered.add(t.params.get("segment"))
                elif t.action == "stage_changed":
                    stages.add(t.params.get("to"))
            if entered or stages:
                entering = [wf for wf in self._wf_by_state
                            if (wf.trigger_segment in entered if wf.trigger_segment is not None
                                else wf.trigger_stage in stages)]
        if event is not None:
            for test, flow in self._wf_by_event.candidates(event):
                if test(c, event, now):
                    entering.append(flow)
        if len(entering) > 1:
            entering.sort(key=lambda wf: self._wf_order[wf.name])
        for wf in entering:
            self._enter(c, wf, now, event, occ, triggers)
        if len(triggers) > start:
            changed: set[str] = set()
            self._apply_mutations(c, triggers[start:], now, changed)
            if changed:
                self._derive(c, now, f"{occ}/workflows", changed, None, triggers)

    def _enter(self, c: ContactState, wf: Workflow, now: int, event: Event | None, occ: str,
               out: list[Trigger]) -> None:
        entry = wf.entry
        single_key = self._wf_single_keys.get(wf.name)
        key = single_key if single_key is not None else run_key(wf.name, occ, False)
        active: Run | None = c.runs.get(key) if single_key is not None else None
        if entry == "once" and wf.name in c.wf_entries:
            return
        if entry == "if_not_active" and active is not None:
            return
        if entry == "restart" and active is not None:
            first = wf.program[0] if wf.program else None
            if active.pc == 0 and first is not None and first.kind == WAIT:
                # The common case (every activity restarts a quiet-period wait): move the
                # waiting run and its timer instead of ending it and starting another.
                active.run_id, active.entered_at, active.since = occ, now, now
                active.vars = capture(wf.placeholders, c, event, now) if event and wf.placeholders else {}
                active.due = now + first.duration_ms
                c.timers[key] = active.due
                _count_entry(c, wf.name, now)
                return
            self._end_run(c, active)
        if key in c.runs:
            return
        run = c.runs[key] = Run(wf.name, occ, 0, now, now, None,
                                capture(wf.placeholders, c, event, now) if event else {}, key)
        _count_entry(c, wf.name, now)
        self._execute(c, wf, run, now, event, out)

    def _resume_run(self, c: ContactState, run: Run, due: int, out: list[Trigger]) -> None:
        wf = self._workflows.get(run.workflow)
        if wf is None or run.pc >= len(wf.program):
            self._end_run(c, run)
            return
        if wf.exit_when is not None and wf.exit_when.fn(c, None, due):
            self._end_run(c, run)
            return
        step = wf.program[run.pc]
        run.pc = run.pc + 1 if step.kind == WAIT else step.target  # a wait_until timed out
        run.since, run.due = due, None
        self._execute(c, wf, run, due, None, out)

    def _execute(self, c: ContactState, wf: Workflow, run: Run, now: int, event: Event | None,
                 out: list[Trigger]) -> None:
        """Run steps until the run waits or ends."""
        program = wf.program
        for _ in range(len(program) + 1):
            if run.pc >= len(program):
                self._end_run(c, run)
                return
            step = program[run.pc]
            if step.kind == ACTION:
                fired_key = intern(f"{wf.name}#{run.pc}")
                last = c.wf_fired.get(fired_key)
                if not (step.cooldown_ms and last is not None and now - last < step.cooldown_ms):
                    c.wf_fired[fired_key] = now
                    # Times in a trigger are ISO-8601, as its event_time is.
                    reason = {"workflow": wf.name, "step": step.name, "cause": run.run_id,
                              "entered_at": format_ms(run.entered_at)}
                    for slot, spec in enumerate(step.actions):
                        out.append(make_trigger(spec.action, wf.rule_id, f"{run.pc}.{slot}", c, now, run.run_id,
                                                fill(spec.params, run.vars), reason))
                run.pc += 1
                run.since = now
            elif step.kind == WAIT_UNTIL and step.condition is not None and step.condition.fn(c, None, now):
                # What it waits for already holds: the run goes on at once. Only the contact's
                # state can hold here; an awaited event is one that comes after this step.
                run.pc += 1
                run.since = now
            elif step.kind in (WAIT, WAIT_UNTIL):
                run.due = now + step.duration_ms if step.duration_ms else None
                if run.due is None:
                    c.timers.pop(run.key, None)
                else:
                    c.timers[run.key] = run.due
                return
            elif step.kind == IF:
                holds = step.condition is not None and step.condition.fn(c, event, now)
                run.pc = run.pc + 1 if holds else step.target
            elif step.kind == JUMP:
                run.pc = step.target
            else:  # EXIT
                self._end_run(c, run)
                return
        self._end_run(c, run)  # unreachable for valid programs: jumps only go forward

    @staticmethod
    def _end_run(c: ContactState, run: Run) -> None:
        c.runs.pop(run.key, None)
        c.timers.pop(run.key, None)


def _required_segment(node: Any) -> str | None:
    """A segment the condition cannot hold without (a plain ``segments contains X`` in a top-level ``all``)."""
    if not isinstance(node, dict) or set(node) != {"all"} or not isinstance(node["all"], list):
        return None
    for part in node["all"]:
        if (isinstance(part, dict) and part.get("field") == "segments" and part.get("op") == "contains"
                and isinstance(part.get("value"), str) and not part.get("ignore_case", False)):
            return part["value"]
    return None


def _by_dep(deps: Any) -> dict[str, tuple[int, ...]]:
    """State key -> the positions (in config order) of the conditions that read it."""
    out: dict[str, list[int]] = {}
    for i, keys in enumerate(deps):
        for key in keys:
            out.setdefault(key, []).append(i)
    return {key: tuple(found) for key, found in out.items()}


def _reading(by_dep: dict[str, tuple[int, ...]], dirty: set[str]) -> Sequence[int]:
    """The positions, in config order, of the conditions that read anything in ``dirty``."""
    hits = [found for key in dirty if (found := by_dep.get(key)) is not None]
    if not hits:
        return ()
    return hits[0] if len(hits) == 1 else sorted(set().union(*hits))


def _window_wakeup(stamps: list[int], now: int, within_ms: int, edges: frozenset[int] | None) -> int | None:
    """When a window's count, falling one expiry at a time from ``now``, first passes one of
    its ``edges``, if ever; with ``edges`` None, simply its next expiry."""
    i = bisect_right(stamps, now - within_ms)  # stamps[i:] are still inside the window
    if i == len(stamps):
        return None
    if edges is None:
        return stamps[i] + within_ms
    count = len(stamps) - i
    below = [n for n in edges if n <= count]
    if not below:
        return None
    return stamps[i + count - max(below)] + within_ms  # the expiry that falls past the highest edge


def _derived(c: ContactState) -> tuple[Any, ...]:
    """What a contact's warehouse row shows of its derived state and scores."""
    return (c.stage, c.grade, c.fit, sorted(c.segments), sorted(c.scores.items()), sorted(c.runs))


def _set_timer(c: ContactState, key: str, due: int | None) -> None:
    if due is None:
        c.timers.pop(key, None)
    else:
        c.timers[key] = due


def _thresholds(config: Config, profile: str) -> tuple[float, ...]:
    """Score values where a decaying profile's score changes something: stage bands, rule thresholds."""
    found: set[float] = set()
    if config.stages.profile == profile:
        found.update(float(m) for _, m in config.stages.bands[1:])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("field") == f"score.{profile}":
                values = node.get("value")
                for v in values if isinstance(values, list) else [values]:
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        found.add(float(v))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for cond in [s.condition for s in config.segments] + [r.condition for r in config.automation_rules]:
        walk(cond.node)
    for wf in config.workflows:
        walk([wf.trigger_event.node if wf.trigger_event else None, wf.exit_when.node if wf.exit_when else None,
              [step.condition.node for step in wf.program if step.condition is not None]])
    return tuple(sorted(found))


_NOTHING: Final = object()
