"""The rules language: load a TOML config, validate every key, compile it into a Config.

Every mistake is reported with the file, the key path and what was expected, and an
unknown key anywhere is an error, so a typo can never silently disable a rule.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from hashlib import blake2b
from pathlib import Path
from typing import Any, Final

import orjson

from .actions import ActionSpec, compile_actions
from .conditions import CompileContext, Compiled, WindowSpec, compile_inline
from .decay import Decay
from .workflows import Workflow, compile_workflows
from .errors import ConfigError, Problems, did_you_mean
from .timeutil import parse_iso_ms

# Each shard of each stage keeps its own stores and buffers: thousands took minutes and
# gigabytes to start on a small input. A shard is the unit of parallelism, and 256 is
# more workers than one Bytewax cluster runs here.
MAX_SHARDS: Final = 256
# Floats, as the bands a config gives are: compiled code turns the ints into floats, and
# a compiled and a pure run wrote `40.0` and `40` into the same trigger.
DEFAULT_STAGES = (("awareness", 0.0), ("interest", 11.0), ("marketing_qualified", 30.0), ("sales_ready", 40.0))
DEFAULT_GRADE_BANDS = (("A", 80.0), ("B", 60.0), ("C", 40.0), ("D", 20.0), ("E", 10.0))
GRADES = ("A", "B", "C", "D", "E", "F")
TOP_LEVEL = (
    "settings",
    "scoring",
    "grade",
    "stages",
    "segments",
    "completion_actions",
    "automation_rules",
    "workflows",
    "privacy",
)


@dataclass(frozen=True)
class Settings:
    """Engine and flow settings from the ``[settings]`` table."""

    visit_timeout_ms: int = 30 * 60_000
    visit_events: tuple[str, ...] = ("page", "screen")
    allowed_lateness_ms: int = 5_000
    shards: int = 16
    dedupe_window_ms: int = 24 * 3_600_000


@dataclass(frozen=True)
class Privacy:
    """Consent and deletion: what the ``[privacy]`` table sets."""

    # Anonymous events (no userId) are tracked only with this consent category granted in
    # context.consent.categoryPreferences; None tracks every event.
    consent_category: str | None = None
    # The track event that deletes a contact (GDPR erasure); later events are suppressed.
    deletion_event: str = "Contact Deleted"


@dataclass
class ScoringRule:
    """``condition -> points`` within a scoring profile, with an optional cap."""

    key: str  # "scoring.<profile>.<name>": names the rule in caps and reasons
    name: str
    points: float
    condition: Compiled
    cap_max: int | None = None
    cap_period_ms: int | None = None  # None with cap_max set: a lifetime cap


@dataclass
class Profile:
    """A named scoring profile: its rules, indexed by the event kind they can match."""

    name: str
    description: str
    rules: list[ScoringRule]
    decay: Decay | None = None


@dataclass
class GradeRule:
    """Fit points for contacts whose traits match."""

    name: str
    points: float
    condition: Compiled


@dataclass
class GradeModel:
    """Fit points from traits, banded into grades A-F."""

    rules: list[GradeRule] = field(default_factory=list)
    bands: tuple[tuple[str, float], ...] = DEFAULT_GRADE_BANDS

    def grade_for(self, fit: float) -> str:
        """Return the grade for a fit score: the first band whose minimum it reaches, else F."""
        for grade, minimum in self.bands:
            if fit >= minimum:
                return grade
        return "F"


@dataclass
class StageModel:
    """Lifecycle stages as bands over one profile's score."""

    profile: str = "default"
    bands: tuple[tuple[str, float], ...] = DEFAULT_STAGES

    @property
    def names(self) -> tuple[str, ...]:
        """Stage names from the lowest band up."""
        return tuple(name for name, _ in self.bands)

    def stage_for(self, score: float) -> str:
        """Return the stage for a score; anything below the second band is the first stage."""
        bands = self.bands
        current = bands[0][0]
        for i in range(1, len(bands)):  # by index: a slice of the bands was a new tuple per event
            name, minimum = bands[i]
            if score >= minimum:
                current = name
        return current


@dataclass
class Segment:
    """A dynamic list: membership follows the condition, never manual edits."""

    name: str
    description: str
    condition: Compiled

    @cached_property
    def rule_id(self) -> str:
        """The rule id segment triggers carry."""
        return f"segments.{self.name}"


@dataclass
class CompletionAction:
    """Actions that fire when a matching event arrives; never for events before ``since``."""

    name: str
    description: str
    condition: Compiled
    actions: list[ActionSpec]
    since_ms: int | None = None

    @cached_property
    def rule_id(self) -> str:
        """The rule id its triggers carry."""
        return f"completion_actions.{self.name}"


@dataclass
class AutomationRule:
    """Actions for contacts whose state matches; once per contact unless ``repeat``."""

    name: str
    description: str
    condition: Compiled
    actions: list[ActionSpec]
    repeat: bool = False

    @cached_property
    def rule_id(self) -> str:
        """The rule id its triggers carry."""
        return f"automation_rules.{self.name}"


@dataclass
class Config:
    """A validated, compiled config; build it with ``load_config`` or ``parse_config``."""

    file: str
    settings: Settings
    profiles: dict[str, Profile]
    grade: GradeModel
    stages: StageModel
    segments: list[Segment]
    completion_actions: list[CompletionAction]
    automation_rules: list[AutomationRule]
    windows: dict[str, WindowSpec]
    document: dict[str, Any]
    workflows: list[Workflow] = field(default_factory=list)
    privacy: Privacy = field(default_factory=Privacy)

    @property
    def fingerprint(self) -> str:
        """A hash of the config's content, to tell whether two runs used the same rules."""
        return blake2b(orjson.dumps(self.document, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()

    def context_keys(self) -> frozenset[str] | None:
        """The keys of an event's ``context`` that the rules read; None when they may read any.

        The engine itself reads ``campaign`` (a contact's first touch). The rest is whatever
        a condition field or an action placeholder names as ``event.context.<key>...``.
        Decoders keep only these as a dict and the whole context as JSON text (see
        ``decode.decode_line``): most of a context (page, library, user agent, ip) only
        ever reaches the events table, and dropping its objects early is cheaper.
        """
        keys = {"campaign"}
        for text in _strings(self.document):
            for ref in _CONTEXT_REF.finditer(text):
                if ref.group(1) is None:
                    return None  # the context as a whole
                keys.add(ref.group(1))
        return frozenset(keys)

    def profile_decays(self) -> tuple[tuple[str, int | None, int | None, float | None], ...]:
        """Each scoring profile and how it decays: (name, half_life_ms, inactive_after_ms, factor), by name."""
        out = []
        for name, profile in sorted(self.profiles.items()):
            d = profile.decay
            out.append((name, d.half_life_ms if d else None, d.inactive_after_ms if d else None,
                        d.factor if d and d.inactive_after_ms else None))
        return tuple(out)

    def rule_fingerprints(self) -> dict[str, str]:
        """Per automation rule, a hash of its definition: a changed rule counts as new."""
        rules = self.document.get("automation_rules", {})
        return {
            f"automation_rules.{name}": blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
            for name, body in rules.items()
        }


# A reference to an event's context, with its first key when there is one. Matching every
# string of the document (descriptions too) can only keep more keys than needed.
_CONTEXT_REF = re.compile(r"event\.context(?:\.([^.\s\"'{}]+))?")


def _strings(value: Any) -> list[str]:
    """Every string value in a parsed document, however deeply nested."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# ---------------------------------------------------------------- loading


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; raise ConfigError listing every mistake."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (pass --config with the path of a TOML rules file)"]) from None
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError([f"{path}: cannot read: {ex}"]) from None
    return parse_config(text, str(path))


def parse_config(text: str, file: str = "<config>") -> Config:
    """Parse and validate config text; ``file`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as ex:
        raise ConfigError([f"{file}: invalid TOML: {ex}"]) from None
    return build_config(doc, file)


def _non_finite(value: Any, path: str, p: Problems) -> None:
    """Report every nan and inf (valid TOML floats) wherever they are: no setting means them, and a
    nan score or band minimum compares false with everything, so stages and segments never move."""
    if isinstance(value, float) and not math.isfinite(value):
        p.add(path or "(top)", f"expected a finite number, got {value}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _non_finite(item, f"{path}.{key}" if path else str(key), p)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _non_finite(item, f"{path}[{i}]", p)


def build_config(doc: dict[str, Any], file: str = "<config>") -> Config:
    """Validate and compile an already-parsed config document."""
    p = Problems(file)
    _non_finite(doc, "", p)
    _unknown_keys(doc, TOP_LEVEL, "", p)
    settings = _settings(_table(doc, "settings", "", p), p)
    windows: dict[str, WindowSpec] = {}
    profiles_doc = _table(doc, "scoring", "", p)
    profile_names = frozenset(profiles_doc) | {"default"}
    stages = _stages(_table(doc, "stages", "", p), profile_names, p)

    def ctx(**kw: Any) -> CompileContext:
        return CompileContext(problems=p, profiles=profile_names, stages=stages.names, windows=windows, **kw)

    profiles = {name: _profile(name, body, ctx(), p) for name, body in profiles_doc.items()}
    profiles.setdefault("default", Profile("default", "", []))
    grade = _grade(_table(doc, "grade", "", p), p, ctx)
    segments: list[Segment] = []
    for name, body in _table(doc, "segments", "", p).items():
        path = f"segments.{name}"
        if not _is_table(body, path, p):
            continue
        _unknown_keys(body, ("description", "all", "any"), path, p)
        cond = compile_inline(body, path, ctx(allow_event=False, segments=tuple(s.name for s in segments)))
        if cond is not None:
            segments.append(Segment(name, _description(body, path, p), cond))
    all_segments = tuple(segments_doc for segments_doc in _table(doc, "segments", "", p))
    completions = []
    for name, body in _table(doc, "completion_actions", "", p).items():
        path = f"completion_actions.{name}"
        if not _is_table(body, path, p):
            continue
        _unknown_keys(body, ("description", "since", "all", "any", "actions"), path, p)
        cond = compile_inline(body, path, ctx(segments=all_segments))
        actions = compile_actions(body.get("actions"), f"{path}.actions", p, profile_names)
        since = _since(body, path, p)
        if cond is not None and actions is not None:
            completions.append(CompletionAction(name, _description(body, path, p), cond, actions, since))
    rules = []
    for name, body in _table(doc, "automation_rules", "", p).items():
        path = f"automation_rules.{name}"
        if not _is_table(body, path, p):
            continue
        _unknown_keys(body, ("description", "all", "any", "actions", "repeat"), path, p)
        cond = compile_inline(body, path, ctx(allow_event=False, segments=all_segments))
        actions = compile_actions(body.get("actions"), f"{path}.actions", p, profile_names)
        repeat = body.get("repeat", False)
        if not isinstance(repeat, bool):
            p.add(f"{path}.repeat", f"expected true or false, got {repeat!r}")
        if cond is not None and actions is not None:
            rules.append(AutomationRule(name, _description(body, path, p), cond, actions, bool(repeat)))
    for name in sorted(set(_table(doc, "segments", "", p)) & set(_table(doc, "automation_rules", "", p))):
        p.add(f"automation_rules.{name}", f"a segment is named {name!r} too; `leadstream segment {name}` could not "
              "tell them apart: rename one")
    for section in ("scoring", "segments", "completion_actions", "automation_rules", "workflows"):
        for name in _table(doc, section, "", p):
            if not name.strip() or name != name.strip():
                p.add(f"{section}.{name!r}", "expected a name without leading or trailing blanks, and not empty")
    workflows = compile_workflows(
        _table(doc, "workflows", "", p), p, lambda **kw: ctx(segments=all_segments, **kw), profile_names,
        all_segments, stages.names,
    )
    privacy = _privacy(_table(doc, "privacy", "", p), p)
    p.raise_if_any()
    return Config(file, settings, profiles, grade, stages, segments, completions, rules, windows, doc, workflows, privacy)


# ---------------------------------------------------------------- sections


def _settings(body: dict[str, Any], p: Problems) -> Settings:
    keys = ("visit_timeout", "visit_events", "allowed_lateness", "shards", "dedupe_window")
    _unknown_keys(body, keys, "settings", p)
    out: dict[str, Any] = {}
    for key, attr in (("visit_timeout", "visit_timeout_ms"), ("allowed_lateness", "allowed_lateness_ms"),
                      ("dedupe_window", "dedupe_window_ms")):
        if key in body:
            # No lateness is a choice (every event out of order is late); no visit timeout
            # or dedupe window is not.
            ms = p.duration(body[key], f"settings.{key}", positive=key != "allowed_lateness")
            if ms is not None:
                out[attr] = ms
    if "visit_events" in body:
        ev = body["visit_events"]
        allowed = ("page", "screen", "track")
        if not isinstance(ev, list) or not ev or any(x not in allowed for x in ev):
            p.add("settings.visit_events", f"expected a non-empty list drawn from {', '.join(allowed)}, got {ev!r}")
        else:
            out["visit_events"] = tuple(ev)
    if "shards" in body:
        n = body["shards"]
        if not (type(n) is int and 1 <= n <= MAX_SHARDS):
            p.add("settings.shards", f"expected a whole number from 1 to {MAX_SHARDS}, got {n!r}")
        else:
            out["shards"] = n
    return Settings(**out)


def _privacy(body: dict[str, Any], p: Problems) -> Privacy:
    _unknown_keys(body, ("consent_category", "deletion_event"), "privacy", p)
    out: dict[str, Any] = {}
    for key in ("consent_category", "deletion_event"):
        if key in body:
            if not isinstance(body[key], str) or not body[key].strip():
                p.add(f"privacy.{key}", f"expected a non-empty string, got {body[key]!r}")
            else:
                out[key] = body[key]
    return Privacy(**out)


def _profile(name: str, body: Any, ctx: CompileContext, p: Problems) -> Profile:
    path = f"scoring.{name}"
    if not _is_table(body, path, p):
        return Profile(name, "", [])
    _unknown_keys(body, ("description", "rules", "decay"), path, p)
    decay = _decay(body.get("decay"), f"{path}.decay", p)
    rules_doc = body.get("rules", [])
    if not isinstance(rules_doc, list):
        p.add(f"{path}.rules", f"expected an array of rule tables ([[{path}.rules]]), got {type(rules_doc).__name__}")
        rules_doc = []
    rules: list[ScoringRule] = []
    seen: set[str] = set()
    for i, rule in enumerate(rules_doc):
        rpath = f"{path}.rules[{i}]"
        if not _is_table(rule, rpath, p):
            continue
        _unknown_keys(rule, ("name", "points", "all", "any", "cap", "description"), rpath, p)
        rname = rule.get("name")
        if not isinstance(rname, str) or not rname:
            p.add(f"{rpath}.name", "expected a rule name string (caps and trigger reasons refer to it)")
            rname = f"#{i}"
        elif rname in seen:
            p.add(f"{rpath}.name", f"duplicate rule name {rname!r} in profile {name!r}")
        seen.add(rname)
        points = rule.get("points")
        if not _is_number(points):
            p.add(f"{rpath}.points", f"expected a number of points (negative subtracts), got {points!r}")
            points = 0
        cap_max, cap_period = _cap(rule.get("cap"), f"{rpath}.cap", p)
        cond = compile_inline(rule, rpath, ctx)
        if cond is not None:
            rules.append(ScoringRule(f"{path}.{rname}", rname, float(points), cond, cap_max, cap_period))
    return Profile(name, _description(body, path, p), rules, decay)


def _decay(body: Any, path: str, p: Problems) -> Decay | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        p.add(path, 'expected a table like { half_life = "30d" } or { inactive_after = "30d", factor = 0.5 }')
        return None
    _unknown_keys(body, ("half_life", "inactive_after", "factor"), path, p)
    out: dict[str, Any] = {}
    for key, attr in (("half_life", "half_life_ms"), ("inactive_after", "inactive_after_ms")):
        if key in body:
            ms = p.duration(body[key], f"{path}.{key}", positive=True)
            if ms is None:
                return None  # said above; "expected half_life and/or inactive_after" would mislead
            out[attr] = ms
    if "factor" in body:
        factor = body["factor"]
        if not _is_number(factor) or not 0 <= factor < 1:
            p.add(f"{path}.factor", f"expected a number from 0 up to (not including) 1, got {factor!r}")
        else:
            out["factor"] = float(factor)
        if "inactive_after" not in body:
            p.add(f"{path}.factor", "factor applies per inactive_after period; set inactive_after too")
    if not out.get("half_life_ms") and not out.get("inactive_after_ms"):
        p.add(path, "expected half_life and/or inactive_after")
        return None
    return Decay(**out)


def _cap(body: Any, path: str, p: Problems) -> tuple[int | None, int | None]:
    if body is None:
        return None, None
    if not isinstance(body, dict):
        p.add(path, f"expected a table like {{ max = 1, per = \"1d\" }}, got {body!r}")
        return None, None
    _unknown_keys(body, ("max", "per"), path, p)
    cap_max = body.get("max")
    if not (type(cap_max) is int and cap_max >= 1):
        p.add(f"{path}.max", f"expected a whole number >= 1, got {cap_max!r}")
        return None, None
    period = None
    if "per" in body:
        period = p.duration(body["per"], f"{path}.per", positive=True)
    return cap_max, period


def _grade(body: dict[str, Any], p: Problems, ctx: Any) -> GradeModel:
    _unknown_keys(body, ("bands", "rules"), "grade", p)
    bands: tuple[tuple[str, float], ...] = DEFAULT_GRADE_BANDS
    if "bands" in body:
        b = body["bands"]
        if not isinstance(b, dict) or not b or any(k not in GRADES[:-1] or not _is_number(v) for k, v in b.items()):
            p.add("grade.bands", f"expected a table of minimum fit points per grade, keys from A-E, got {b!r}")
        else:
            bands = tuple(sorted(((k, float(v)) for k, v in b.items()), key=lambda kv: GRADES.index(kv[0])))
            mins = [v for _, v in bands]
            if mins != sorted(mins, reverse=True):
                p.add("grade.bands", f"expected minimums that fall from A down to E, got {b!r}")
    rules = []
    for i, rule in enumerate(body.get("rules", [])):
        rpath = f"grade.rules[{i}]"
        if not _is_table(rule, rpath, p):
            continue
        _unknown_keys(rule, ("name", "points", "all", "any", "description"), rpath, p)
        points = rule.get("points")
        if not _is_number(points):
            p.add(f"{rpath}.points", f"expected a number of fit points, got {points!r}")
            points = 0
        c = ctx(allow_event=False)
        cond = compile_inline(rule, rpath, c)
        if cond is not None:
            bad = sorted(cond.deps - {"traits", "first_campaign"})
            if bad:
                p.add(rpath, f"grade rules may only read traits and first_campaign, not {', '.join(bad)}")
            else:
                rules.append(GradeRule(str(rule.get("name", f"#{i}")), float(points), cond))
    return GradeModel(rules, bands)


def _stages(body: dict[str, Any], profiles: frozenset[str], p: Problems) -> StageModel:
    _unknown_keys(body, ("profile", "bands"), "stages", p)
    profile = body.get("profile", "default")
    if profile not in profiles:
        p.add("stages.profile", f"unknown scoring profile {profile!r} (expected one of {', '.join(sorted(profiles))})")
        profile = "default"
    bands: tuple[tuple[str, float], ...] = DEFAULT_STAGES
    if "bands" in body:
        raw = body["bands"]
        parsed = []
        if not isinstance(raw, list) or not raw:
            p.add("stages.bands", "expected a non-empty array of { name, min } tables, lowest first")
        else:
            for i, band in enumerate(raw):
                bpath = f"stages.bands[{i}]"
                if not _is_table(band, bpath, p):
                    continue
                _unknown_keys(band, ("name", "min"), bpath, p)
                name, minimum = band.get("name"), band.get("min")
                if not isinstance(name, str) or not name:
                    p.add(f"{bpath}.name", "expected a stage name string")
                elif not _is_number(minimum):
                    p.add(f"{bpath}.min", f"expected the band's minimum score, got {minimum!r}")
                else:
                    parsed.append((name, float(minimum)))
            mins = [m for _, m in parsed]
            if mins != sorted(mins) or len(set(mins)) != len(mins):
                p.add("stages.bands", f"expected strictly rising minimums, lowest band first, got {mins}")
            elif len({n for n, _ in parsed}) != len(parsed):
                p.add("stages.bands", "stage names must be unique")
            elif parsed:
                bands = tuple(parsed)
    return StageModel(profile, bands)


def _since(body: dict[str, Any], path: str, p: Problems) -> int | None:
    if "since" not in body:
        return None
    value = body["since"]
    if hasattr(value, "isoformat"):  # TOML datetimes arrive as datetime objects
        value = value.isoformat()
    try:
        return parse_iso_ms(str(value))
    except ValueError:
        p.add(f"{path}.since", f"expected an ISO-8601 instant such as 2026-01-01T00:00:00Z, got {body['since']!r}")
        return None


# ---------------------------------------------------------------- helpers


def _unknown_keys(body: Any, allowed: tuple[str, ...], path: str, p: Problems) -> None:
    if not isinstance(body, dict):
        return
    for key in body:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            p.add(where, f"unknown key {key!r}{did_you_mean(key, allowed)} (expected one of {', '.join(allowed)})")


def _table(doc: dict[str, Any], key: str, path: str, p: Problems) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        p.add(f"{path}.{key}" if path else key, f"expected a table, got {type(value).__name__}")
        return {}
    return value


def _is_table(body: Any, path: str, p: Problems) -> bool:
    if isinstance(body, dict):
        return True
    p.add(path, f"expected a table, got {type(body).__name__} {body!r}")
    return False


def _description(body: dict[str, Any], path: str, p: Problems) -> str:
    text = body.get("description", "")
    if not isinstance(text, str):
        p.add(f"{path}.description", "expected a string")
        return ""
    return text


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
