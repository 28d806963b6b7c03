"""The two condition backends agree: Python evaluator over contact state vs SQL over the warehouse."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engine.conditions import CompileContext, compile_condition
from engine.config import build_config
from engine.decode import decode_line
from engine.errors import Problems
from engine.events import Event
from engine.pipeline import LocalPipeline
from engine.sql import segment_query

from .conftest import CONFIG

pytestmark = pytest.mark.slow

# Leaves over every kind of field and operator the warehouse can answer.
LEAVES: list[dict[str, Any]] = [
    {"field": "traits.city", "op": "eq", "value": "Munich"},
    {"field": "traits.city", "op": "ne", "value": "Munich"},
    {"field": "traits.city", "op": "in", "value": ["Berlin", "Hamburg"]},
    {"field": "traits.city", "op": "not_in", "value": ["Berlin", "Hamburg"]},
    {"field": "traits.city", "op": "eq", "value": "munich", "ignore_case": True},
    {"field": "traits.title", "op": "contains", "value": "student", "ignore_case": True},
    {"field": "traits.title", "op": "matches", "value": "\\b(ceo|cto|vp)\\b", "ignore_case": True},
    {"field": "traits.title", "op": "starts_with", "value": "Director"},
    {"field": "traits.company_size", "op": "ge", "value": 50},
    {"field": "traits.company_size", "op": "lt", "value": 200},
    {"field": "traits.company_size", "op": "eq", "value": "50"},
    {"field": "traits.industry", "op": "exists", "value": True},
    {"field": "traits.industry", "op": "exists", "value": False},
    {"field": "traits.email", "op": "ends_with", "value": ".example"},
    {"field": "email", "op": "exists"},
    {"field": "score.default", "op": "gt", "value": 40},
    {"field": "score.decision_maker", "op": "ge", "value": 10},
    {"field": "score.end_user", "op": "le", "value": 3},
    {"field": "grade", "op": "in", "value": ["A", "B"]},
    {"field": "fit", "op": "ge", "value": 40},
    {"field": "stage", "op": "eq", "value": "interest"},
    {"field": "stage", "op": "ne", "value": "sales_ready"},
    {"field": "segments", "op": "contains", "value": "hot_leads"},
    {"field": "segments", "op": "contains", "value": "decision_makers"},
    {"field": "counts.Form Submitted", "op": "ge", "value": 1},
    {"field": "counts.$page", "op": "gt", "value": 10},
    {"field": "visits", "op": "ge", "value": 3},
    {"field": "known", "op": "eq", "value": True},
    {"field": "user_id", "op": "starts_with", "value": "user-1"},
    {"field": "first_campaign.source", "op": "eq", "value": "linkedin"},
    {"field": "first_campaign.medium", "op": "exists", "value": True},
    {"count": {"all": [{"field": "event.type", "op": "eq", "value": "page"},
                       {"field": "event.properties.path", "op": "starts_with", "value": "/pricing"}]},
     "within": "7d", "op": "ge", "value": 2},
    {"count": {"field": "event.name", "op": "eq", "value": "Email Opened"}, "within": "14d", "op": "ge", "value": 1},
    {"count": {"field": "event.context.campaign.source", "op": "in", "value": ["google", "linkedin"]},
     "within": "30d", "op": "eq", "value": 0},
]


def _random_condition(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth >= 2 or roll < 0.4:
        return rng.choice(LEAVES)
    if roll < 0.55:
        return {"not": _random_condition(rng, depth + 1)}
    kind = rng.choice(["all", "any"])
    return {kind: [_random_condition(rng, depth + 1) for _ in range(rng.randint(2, 3))]}


CASES = [{"all": [leaf]} for leaf in LEAVES] + [_random_condition(random.Random(i)) for i in range(40)]


@pytest.fixture(scope="module")
def both(clickstream: Path, baseline: Path) -> tuple[Any, dict[str, Any], int]:
    """The warehouse of the baseline run and the same contacts from the reference pipeline.

    The reference run also tracks the parity cases' count windows (as extra segments):
    contacts keep timestamps only for windows their config declares.
    """
    doc = tomllib.loads(CONFIG.read_text())
    for i, leaf in enumerate(leaf for leaf in LEAVES if "count" in leaf):
        doc["segments"][f"parity_window_{i}"] = {"all": [leaf]}
    config = build_config(doc, "parity.toml")
    events = [e for e in map(decode_line, clickstream.read_bytes().splitlines()) if isinstance(e, Event)]
    pipe = LocalPipeline(config)
    pipe.feed(events, batch=2000)
    pipe.finish()
    con = duckdb.connect(str(baseline / "warehouse.duckdb"), read_only=True)
    now = con.execute("SELECT epoch_ms(max(timestamp)) FROM events").fetchone()[0]
    yield con, pipe.contacts(), now, config
    con.close()


@pytest.mark.parametrize("node", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_sql_matches_python(both: Any, node: dict[str, Any]) -> None:
    """For each condition, the SQL query selects exactly the contacts the Python evaluator accepts."""
    con, contacts, now, config = both
    ctx = CompileContext(problems=Problems("parity"), profiles=frozenset(config.profiles),
                         stages=config.stages.names, segments=tuple(s.name for s in config.segments),
                         allow_event=False)
    compiled = compile_condition(node, "case", ctx)
    assert compiled is not None, ctx.problems.items
    python = {cid for cid, c in contacts.items() if compiled.fn(c, None, now)}
    sql = {r[0] for r in con.execute(segment_query(node, now)).fetchall()}
    assert sql == python, f"only SQL: {sorted(sql - python)[:5]}, only Python: {sorted(python - sql)[:5]}"


def test_parity_cases_are_not_trivial(both: Any) -> None:
    """The leaves select some but not all contacts, so agreement means something."""
    con, contacts, now, _ = both
    sizes = [len(con.execute(segment_query({"all": [leaf]}, now)).fetchall()) for leaf in LEAVES]
    assert sum(1 for n in sizes if 0 < n < len(contacts)) >= len(LEAVES) - 4, sizes


@pytest.mark.parametrize("segment", ["hot_leads", "pricing_interest", "decision_makers"])
def test_segment_command(both: Any, baseline: Path, segment: str) -> None:
    """`leadstream segment NAME` prints the contacts the SQL selects, one per line."""
    from .conftest import leadstream

    con, contacts, now, config = both
    res = leadstream("segment", segment, "--config", str(CONFIG), "--warehouse", str(baseline / "warehouse.duckdb"))
    printed = {line.split("\t")[0] for line in res.stdout.splitlines()[1:]}
    cond = next(s.condition for s in config.segments if s.name == segment)
    assert printed == {cid for cid, c in contacts.items() if cond.fn(c, None, now)}
    assert f"{len(printed)} contacts in {segment}" in res.stderr
    assert "warning" not in res.stderr  # the warehouse was written with these rules


@pytest.mark.parametrize(("flags", "message"), [
    (["--at", "yesterday"], "--at yesterday: expected an ISO-8601 instant such as 2026-01-05T08:00:00Z"),
    (["--out", "{tmp}/x.xlsx"], "--out {tmp}/x.xlsx: name a .csv or .parquet file"),
    (["--warehouse", "{tmp}"], "{tmp}: not a DuckDB warehouse that leadstream wrote"),
    (["--warehouse", "{tmp}/notes.txt"], "{tmp}/notes.txt: not a DuckDB warehouse that leadstream wrote"),
    (["--warehouse", "{tmp}/other.duckdb"], "{tmp}/other.duckdb: a DuckDB file, but not a leadstream warehouse"),
], ids=["at", "out-suffix", "warehouse-dir", "warehouse-text", "warehouse-other-duckdb"])
def test_segment_command_mistakes(baseline: Path, tmp_path: Path, flags: list[str], message: str) -> None:
    """Mistakes in `leadstream segment` are exit status 2 with what to do, never a traceback."""
    import duckdb

    from .conftest import leadstream

    (tmp_path / "notes.txt").write_text("not a database")
    duckdb.connect(str(tmp_path / "other.duckdb")).execute("CREATE TABLE t (x INT)").close()
    base = {"--config": str(CONFIG), "--warehouse": str(baseline / "warehouse.duckdb")}
    for i in range(0, len(flags), 2):
        base[flags[i]] = flags[i + 1].format(tmp=tmp_path)
    res = leadstream("segment", "hot_leads", *[x for kv in base.items() for x in kv], check=False)
    assert res.returncode == 2, res.stderr
    assert f"leadstream segment: {message.format(tmp=tmp_path)}" in res.stderr
    assert "Traceback" not in res.stderr


def test_segment_export_to_a_new_folder_and_a_quoted_name(baseline: Path, tmp_path: Path) -> None:
    """--out creates its folder, takes any file name (a quote included) and any case of the suffix."""
    import duckdb

    from .conftest import leadstream

    out = tmp_path / "new" / "it's hot.PARQUET"
    res = leadstream("segment", "hot_leads", "--config", str(CONFIG), "--warehouse", str(baseline / "warehouse.duckdb"),
                     "--out", str(out))
    printed = leadstream("segment", "hot_leads", "--config", str(CONFIG), "--warehouse", str(baseline / "warehouse.duckdb"))
    rows = duckdb.connect().execute("SELECT contact_id FROM read_parquet(?) ORDER BY 1", [str(out)]).fetchall()
    assert [r[0] for r in rows] == [line.split("\t")[0] for line in printed.stdout.splitlines()[1:]]
    assert f"{len(rows)} contacts in hot_leads -> {out}" in res.stderr


def test_segment_command_warns_when_the_warehouse_has_other_rules(baseline: Path, tmp_path: Path) -> None:
    """Stages, scores and segments in the warehouse follow the rules of the run that wrote it: say so."""
    from .conftest import leadstream

    other = tmp_path / "other.toml"
    other.write_text(CONFIG.read_text() + '\n[segments.many_visits]\nall = [{ field = "visits", op = "ge", value = 3 }]\n')
    res = leadstream("segment", "many_visits", "--config", str(other), "--warehouse", str(baseline / "warehouse.duckdb"))
    assert f"warning: {baseline / 'warehouse.duckdb'} was written with other rules than {other}" in res.stderr
    assert "contacts in many_visits" in res.stderr
