"""Config validation: every mistake names the file, the key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config, parse_config
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SEG = '[segments.hot_leads]\nall = [{ field = "stage", op = "eq", value = "sales_ready" }, %s]\n'

BAD = [
    ("score_against_text", '[scoring.default]\n[segments.s]\nall = [{ field = "score.default", op = "gt", value = "150" }]\n',
     "cfg.toml: segments.s.all[0].value: score.default is a number, and str '150' is not: the test would never match, "
     "as types never coerce (write 150)"),
    ("visits_against_text", '[segments.s]\nall = [{ field = "visits", op = "in", value = [1, "3"] }]\n',
     "segments.s.all[0].value: visits is a number, and str '3' is not"),
    ("known_against_text", '[segments.s]\nall = [{ field = "known", op = "eq", value = "true" }]\n',
     "segments.s.all[0].value: known is true or false, and str 'true' is not: the test would never match, as types "
     "never coerce (write true)"),
    ("known_ordered", '[segments.s]\nall = [{ field = "known", op = "gt", value = false }]\n',
     "segments.s.all[0].op: known is true or false: compare it with eq or ne"),
    ("starts_visit_against_text", '[completion_actions.c]\nall = [{ field = "event.starts_visit", op = "eq", value = "true" }]\n'
     'actions = [{ action = "notify_sales" }]\n', "completion_actions.c.all[0].value: event.starts_visit is true or false"),
    ("unknown_event_type", '[completion_actions.c]\nall = [{ field = "event.type", op = "eq", value = "pageview" }]\n'
     'actions = [{ action = "notify_sales" }]\n',
     "completion_actions.c.all[0].value: unknown event type 'pageview' (expected one of identify, track, page, screen"),
    ("count_against_text", '[segments.s]\nall = [{ field = "counts.Form Submitted", op = "ge", value = "3" }]\n',
     "segments.s.all[0].value: counts.Form Submitted is a number, and str '3' is not"),
    ("text_op_on_a_number", '[segments.s]\nall = [{ field = "fit", op = "contains", value = "1" }]\n',
     "segments.s.all[0].op: fit is a number, and 'contains' tests text: it would never match"),
    ("name_against_a_number", '[completion_actions.c]\nall = [{ field = "event.name", op = "eq", value = 3 }]\n'
     'actions = [{ action = "notify_sales" }]\n', "completion_actions.c.all[0].value: event.name is text, and int 3 is not"),
    ("unknown_operator", SEG % '{ field = "score.default", op = "greather", value = 3 }',
     "cfg.toml: segments.hot_leads.all[1].op: unknown operator 'greather' (expected one of eq, ne,"),
    ("unknown_top_level", "[segmnts.x]\nall = []\n", "cfg.toml: segmnts: unknown key 'segmnts'"),
    ("unknown_setting", '[settings]\nvisit_timout = "30m"\n',
     "cfg.toml: settings.visit_timout: unknown key 'visit_timout' (did you mean 'visit_timeout'?) (expected one of"),
    ("unknown_top_level_near_miss", "[segment.x]\nall = []\n", "cfg.toml: segment: unknown key 'segment' (did you mean 'segments'?)"),
    ("segment_and_rule_share_a_name", '[segments.x]\nall = [{ field = "visits", op = "ge", value = 1 }]\n'
     '[automation_rules.x]\nall = [{ field = "visits", op = "ge", value = 2 }]\nactions = [{ action = "notify_sales" }]\n',
     "cfg.toml: automation_rules.x: a segment is named 'x' too"),
    ("empty_segment_name", '[segments.""]\nall = [{ field = "visits", op = "ge", value = 1 }]\n',
     "cfg.toml: segments.'': expected a name without leading or trailing blanks, and not empty"),
    ("duplicate_step_name", '[workflows.w]\ntrigger = { event = { all = [{ field = "event.type", op = "eq", value = "identify" }] } }\n'
     'steps = [{ name = "a", wait = "1d" }, { name = "a", action = "notify_sales" }]\n',
     "cfg.toml: workflows.w.steps[1].name: step name 'a' is used twice in this workflow"),
    ("empty_step_name", '[workflows.w]\ntrigger = { event = { all = [{ field = "event.type", op = "eq", value = "identify" }] } }\n'
     'steps = [{ name = "", wait = "1d" }]\n', "cfg.toml: workflows.w.steps[0].name: expected a non-empty string, got ''"),
    ("zero_window", '[segments.s]\nall = [{ count = { field = "event.type", op = "eq", value = "page" }, within = "0d", op = "ge", value = 3 }]\n',
     "segments.s.all[0].within: expected a positive duration like '7d' (a window of no time counts nothing), got '0d'"),
    ("zero_visit_timeout", '[settings]\nvisit_timeout = "0s"\n',
     "cfg.toml: settings.visit_timeout: expected a positive duration like '30m' or '7d', got '0s'"),
    ("zero_dedupe_window", '[settings]\ndedupe_window = "0m"\n', "settings.dedupe_window: expected a positive duration"),
    ("absurd_duration", '[settings]\nvisit_timeout = "99999999999d"\n',
     "settings.visit_timeout: expected a duration of at most 100 years (36500d), got '99999999999d'"),
    ("zero_half_life", '[scoring.default]\ndecay = { half_life = "0s" }\n',
     "cfg.toml: scoring.default.decay.half_life: expected a positive duration like '30m' or '7d', got '0s'"),
    ("bad_duration", '[settings]\nvisit_timeout = "30 minutes"\n', "cfg.toml: settings.visit_timeout: expected a duration"),
    ("template_typo", '[workflows.hi]\ntrigger = { event = { all = [{ field = "event.type", op = "eq", value = "identify" }] } }\n'
     'steps = [{ action = "send_email", params = { template = "t_{evnt.properties.topic}_{event.properties.topic" } }]\n',
     "cfg.toml: workflows.hi.steps[0].params: 't_{evnt.properties.topic}_{event.properties.topic': braces must enclose "
     "a placeholder {event.<field>}"),
    ("bad_shards", "[settings]\nshards = 0\n", "cfg.toml: settings.shards: expected a whole number from 1 to 256"),
    ("nan_value", SEG % '{ field = "score.default", op = "lt", value = nan }',
     "cfg.toml: segments.hot_leads.all[1].value: expected a finite number, got nan"),
    ("inf_points", '[scoring.default]\n[[scoring.default.rules]]\nname = "p"\npoints = inf\nall = [{ field = "event.type", op = "eq", value = "page" }]\n',
     "cfg.toml: scoring.default.rules[0].points: expected a finite number, got inf"),
    ("nan_band", '[stages]\nbands = [{ name = "a", min = 0 }, { name = "b", min = -nan }]\n',
     "cfg.toml: stages.bands[1].min: expected a finite number, got nan"),
    ("unknown_field", SEG % '{ field = "trait.city", op = "eq", value = "Munich" }', "segments.hot_leads.all[1].field: unknown field 'trait.city'"),
    ("event_field_in_segment", SEG % '{ field = "event.name", op = "eq", value = "x" }',
     "segments.hot_leads.all[1].field: field 'event.name' reads the event, but this condition is evaluated on contact state"),
    ("unknown_profile", SEG % '{ field = "score.nope", op = "gt", value = 1 }', "segments.hot_leads.all[1].field: unknown scoring profile 'nope'"),
    ("unknown_stage", '[segments.s]\nall = [{ field = "stage", op = "eq", value = "hot" }]\n', "segments.s.all[0].value: unknown stage 'hot'"),
    ("later_segment", '[segments.a]\nall = [{ field = "segments", op = "contains", value = "b" }]\n[segments.b]\nall = [{ field = "visits", op = "ge", value = 1 }]\n',
     "segments.a.all[0].value: unknown segment 'b'"),
    ("bad_regex", SEG % '{ field = "traits.title", op = "matches", value = "(" }', "segments.hot_leads.all[1].value: invalid regular expression"),
    ("in_needs_list", SEG % '{ field = "traits.city", op = "in", value = "Munich" }', "segments.hot_leads.all[1].value: in expects a non-empty list"),
    ("eq_needs_scalar", SEG % '{ field = "traits.city", op = "eq", value = ["a"] }', "segments.hot_leads.all[1].value: eq expects a string, number or boolean"),
    ("missing_value", SEG % '{ field = "traits.city", op = "eq" }', "segments.hot_leads.all[1]: missing key 'value'"),
    ("leaf_extra_key", SEG % '{ field = "traits.city", op = "eq", value = "M", vaule = 1 }', "segments.hot_leads.all[1].vaule: unknown key 'vaule'"),
    ("empty_all", "[segments.s]\nall = []\n", "segments.s.all: expected a non-empty list of conditions"),
    ("all_and_any", '[segments.s]\nall = [{ field = "visits", op = "ge", value = 1 }]\nany = [{ field = "visits", op = "ge", value = 1 }]\n',
     "segments.s: expected exactly one of 'all' or 'any'"),
    ("count_bad_within", '[segments.s]\nall = [{ count = { field = "event.type", op = "eq", value = "page" }, within = "7 days", op = "ge", value = 3 }]\n',
     "segments.s.all[0].within: expected a duration"),
    ("count_state_inside", '[segments.s]\nall = [{ count = { field = "stage", op = "eq", value = "interest" }, within = "7d", op = "ge", value = 3 }]\n',
     "segments.s.all[0].count.field: field 'stage' reads contact state, but only event.* fields are allowed here"),
    ("count_negative", '[segments.s]\nall = [{ count = { field = "event.type", op = "eq", value = "page" }, within = "7d", op = "ge", value = -1 }]\n',
     "segments.s.all[0].value: expected a whole number of events >= 0"),
    ("unknown_action", '[automation_rules.r]\nall = [{ field = "visits", op = "ge", value = 1 }]\nactions = [{ action = "send_fax" }]\n',
     "automation_rules.r.actions[0].action: unknown action 'send_fax' (expected one of send_email"),
    ("missing_param", '[automation_rules.r]\nall = [{ field = "visits", op = "ge", value = 1 }]\nactions = [{ action = "send_email", params = { tempate = "x" } }]\n',
     "automation_rules.r.actions[0].params: send_email needs params.template"),
    ("unknown_param", '[automation_rules.r]\nall = [{ field = "visits", op = "ge", value = 1 }]\nactions = [{ action = "send_email", params = { template = "x", tempate = "x" } }]\n',
     "automation_rules.r.actions[0].params.tempate: unknown parameter 'tempate' for send_email"),
    ("no_actions", '[automation_rules.r]\nall = [{ field = "visits", op = "ge", value = 1 }]\n', "automation_rules.r.actions: expected a non-empty array of actions"),
    ("repeat_not_bool", '[automation_rules.r]\nrepeat = "yes"\nall = [{ field = "visits", op = "ge", value = 1 }]\nactions = [{ action = "notify_sales" }]\n',
     "automation_rules.r.repeat: expected true or false"),
    ("rule_needs_name", '[[scoring.default.rules]]\npoints = 1\nall = [{ field = "event.type", op = "eq", value = "page" }]\n',
     "scoring.default.rules[0].name: expected a rule name string"),
    ("points_not_number", '[[scoring.default.rules]]\nname = "p"\npoints = "one"\nall = [{ field = "event.type", op = "eq", value = "page" }]\n',
     "scoring.default.rules[0].points: expected a number of points"),
    ("duplicate_rule", '[[scoring.default.rules]]\nname = "p"\npoints = 1\nall = [{ field = "event.type", op = "eq", value = "page" }]\n'
     '[[scoring.default.rules]]\nname = "p"\npoints = 1\nall = [{ field = "event.type", op = "eq", value = "page" }]\n',
     "scoring.default.rules[1].name: duplicate rule name 'p'"),
    ("bad_cap", '[[scoring.default.rules]]\nname = "p"\npoints = 1\ncap = { max = 0 }\nall = [{ field = "event.type", op = "eq", value = "page" }]\n',
     "scoring.default.rules[0].cap.max: expected a whole number >= 1"),
    ("stage_bands_unsorted", '[stages]\nbands = [{ name = "a", min = 10 }, { name = "b", min = 0 }]\n', "stages.bands: expected strictly rising minimums"),
    ("stage_profile", '[stages]\nprofile = "x"\n', "stages.profile: unknown scoring profile 'x'"),
    ("grade_reads_score", '[[grade.rules]]\npoints = 1\nall = [{ field = "score.default", op = "gt", value = 1 }]\n',
     "grade.rules[0]: grade rules may only read traits and first_campaign"),
    ("bad_since", '[completion_actions.c]\nsince = "last year"\nall = [{ field = "event.type", op = "eq", value = "page" }]\nactions = [{ action = "notify_sales" }]\n',
     "completion_actions.c.since: expected an ISO-8601 instant"),
    ("webhook_url", '[completion_actions.c]\nall = [{ field = "event.type", op = "eq", value = "page" }]\nactions = [{ action = "webhook", params = { url = "ftp://x" } }]\n',
     "completion_actions.c.actions[0].params.url: expected an http:// or https:// URL"),
    ("invalid_toml", "[segments\n", "cfg.toml: invalid TOML"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD], ids=[n for n, _, _ in BAD])
def test_config_errors_name_file_path_and_expectation(text: str, message: str) -> None:
    """Each mistake is reported with file, key path and what was expected."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.toml")
    assert any(message in line for line in info.value.problems), info.value.problems
    assert all(line.startswith("cfg.toml: ") for line in info.value.problems)


def test_all_mistakes_are_reported_at_once() -> None:
    """One check lists every problem, not just the first."""
    text = '[settings]\nshards = 0\nvisit_timout = "1m"\n' + SEG % '{ field = "score.default", op = "greather", value = 3 }'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.toml")
    assert len(info.value.problems) == 3


def test_example_config_is_valid() -> None:
    """The shipped example implements the brief and validates."""
    cfg = load_config(ROOT / "examples" / "marketing.toml")
    assert set(cfg.profiles) == {"default", "decision_maker", "end_user"}
    assert cfg.stages.names == ("awareness", "interest", "marketing_qualified", "sales_ready")
    assert [s.name for s in cfg.segments] == ["hot_leads", "pricing_interest", "decision_makers"]
    points = {r.name: r.points for r in cfg.profiles["default"].rules}
    assert points == {
        "page_view": 1, "new_visit": 5, "form_submitted": 20, "webinar_registered": 10, "webinar_attended": 10,
        "email_opened": 5, "email_link_clicked": 10, "product_added": 5, "order_completed": 20, "student": -10,
    }


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    """A wrong path is a config error that tells the user to pass --config."""
    with pytest.raises(ConfigError, match="file not found .*--config"):
        load_config(tmp_path / "nope.toml")


def test_empty_config_gets_the_act_on_defaults() -> None:
    """With no stages table, the Act-On bands apply to the default profile."""
    cfg = parse_config("", "empty.toml")
    assert cfg.stages.stage_for(10) == "awareness"
    assert cfg.stages.stage_for(11) == "interest"
    assert cfg.stages.stage_for(39) == "marketing_qualified"
    assert cfg.stages.stage_for(40) == "sales_ready"
    assert cfg.stages.stage_for(-5) == "awareness"


@pytest.mark.parametrize(
    ("extra", "keys"),
    [
        ("", {"campaign"}),
        ('[segments.paid]\nall = [{ field = "traits.plan", op = "eq", value = "paid" }]\n', {"campaign"}),
        ('[[scoring.default.rules]]\nname = "de"\npoints = 1\n'
         'all = [{ field = "event.context.locale", op = "eq", value = "de-DE" }]\n', {"campaign", "locale"}),
        ('[[scoring.default.rules]]\nname = "deep"\npoints = 1\n'
         'all = [{ field = "event.context.page.path", op = "exists" }]\n', {"campaign", "page"}),
        ('[workflows.hi]\ntrigger = { event = { all = [{ field = "event.type", op = "eq", value = "identify" }] } }\n'
         'steps = [{ action = "send_email", params = { template = "hi_{event.context.app.name}" } }]\n',
         {"campaign", "app"}),
    ],
    ids=["default", "state_only", "condition", "nested_path", "placeholder"],
)
def test_context_keys_are_what_conditions_and_placeholders_name(extra: str, keys: set[str]) -> None:
    """Events keep these context keys as a dict (the rest only as text): campaign for the first
    touch, plus every event.context.<key> a condition or an action placeholder reads."""
    assert parse_config(extra).context_keys() == frozenset(keys)


def test_the_example_config_reads_only_the_campaign() -> None:
    assert load_config(Path(__file__).parents[2] / "examples" / "marketing.toml").context_keys() == {"campaign"}


@pytest.mark.parametrize("test", [
    '{ field = "event.type", op = "eq", value = "TRACK", ignore_case = true }',
    '{ field = "stage", op = "in", value = ["Interest", "SALES_READY"], ignore_case = true }',
    '{ field = "grade", op = "eq", value = "a", ignore_case = true }',
], ids=["event-type", "stage", "grade"])
def test_names_checked_under_ignore_case_compare_as_the_test_does(test: str) -> None:
    """A name the check knows, written in another case with ignore_case, matches: it is not refused as unknown."""
    field = "event" if "event.type" in test else "state"
    toml = (f'[completion_actions.c]\nall = [{test}]\nactions = [{{ action = "notify_sales" }}]\n' if field == "event"
            else f'[segments.s]\nall = [{test}]\n')
    parse_config(toml, "cfg.toml")

