"""The warehouse: readable by another process while the flow runs, consistent in every snapshot."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from leadstream.generate import GenerateOptions, write_events

from .conftest import CONFIG, ROOT, last_snapshot, leadstream, run_into, tables

pytestmark = pytest.mark.slow


def _check_consistent(con: duckdb.DuckDBPyConnection) -> dict:
    """Assert a snapshot's tables agree with its own snapshots row; return that row."""
    cur = con.execute("SELECT * FROM snapshots ORDER BY snapshot_id DESC LIMIT 1")
    row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    assert row["lines_read"] == row["accepted"] + row["dead_lettered"] + row["duplicates"] + row["buffered"]
    assert con.execute("SELECT count(*) FROM contacts").fetchone()[0] == row["contacts"]
    # One row per contact: the DDL does not declare the key (schemas/warehouse.sql), builds keep it so.
    assert con.execute("SELECT count(DISTINCT contact_id) FROM contacts").fetchone()[0] == row["contacts"]
    assert con.execute("SELECT count(*) FROM triggers").fetchone()[0] == row["triggers"]
    # Every trigger and every event belongs to a contact of the same snapshot.
    assert con.execute("SELECT count(*) FROM events WHERE contact_id NOT IN (SELECT contact_id FROM contacts)").fetchone()[0] == 0
    assert con.execute("""SELECT count(*) FROM triggers WHERE contact_id NOT IN (SELECT contact_id FROM contacts)
                          AND contact_id NOT IN (SELECT anonymous_id FROM merges)""").fetchone()[0] == 0
    return row


def test_read_while_writing(tmp_path: Path) -> None:
    """A second process opens the warehouse read-only during the run and always sees a whole snapshot."""
    data = tmp_path / "events.jsonl"
    with data.open("wb") as fh:
        write_events(GenerateOptions(events=150_000, contacts=8_000, seed=3), fh)
    warehouse = tmp_path / "out" / "warehouse.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(CONFIG), "--input", str(data),
         "--warehouse", str(warehouse), "--triggers", str(tmp_path / "out" / "t.jsonl"), "--snapshot-interval", "0.5",
         "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if warehouse.exists():
                con = duckdb.connect(str(warehouse), read_only=True)
                try:
                    seen.add(_check_consistent(con)["snapshot_id"])
                finally:
                    con.close()
            time.sleep(0.05)
    finally:
        out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert len(seen) >= 2, f"saw snapshots {sorted(seen)} while the run went on"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        final = _check_consistent(con)
    finally:
        con.close()
    assert final["buffered"] == 0 and final["lines_read"] == 150_000


def test_retroactive_rule(clickstream: Path, tmp_path: Path) -> None:
    """An automation rule added since the previous run over the same state acts on existing contacts."""
    full = CONFIG.read_text()
    without = tmp_path / "without_munich.toml"
    without.write_text(full[: full.index("[automation_rules.munich_webinar_owner]")])
    out, recovery = tmp_path / "out", tmp_path / "recovery"
    run_into(out, [clickstream], "--recovery", str(recovery), config=without)
    before = tables(out / "warehouse.duckdb")["triggers"]
    assert not [t for t in before if t[1] == "assign_owner"]
    run_into(out, [clickstream], "--recovery", str(recovery))
    after = tables(out / "warehouse.duckdb")["triggers"]
    owners = [t for t in after if t[1] == "assign_owner"]
    # Exactly the contacts that match now: webinar attendees whose city is Munich.
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        matching = {r[0] for r in con.execute(
            """SELECT contact_id FROM contacts WHERE traits->>'city' = 'Munich'
               AND COALESCE(CAST(counts->>'$."Webinar Attended"' AS INT), 0) >= 1""").fetchall()}
    finally:
        con.close()
    assert matching and {t[3] for t in owners} == matching
    assert len(owners) == len(matching)
    assert set(before) <= set(after), "the earlier triggers stay"
    assert last_snapshot(out / "warehouse.duckdb")["lines_read"] == 20_000, "the resumed run read nothing twice"
    # A third run with the same rules fires nothing new.
    run_into(out, [clickstream], "--recovery", str(recovery))
    assert tables(out / "warehouse.duckdb")["triggers"] == after


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "nope.jsonl"], "--input nope.jsonl: no such file or directory"),
        (["--input", "examples/marketing.toml", "--config", "nope.toml"], "nope.toml: file not found"),
    ],
    ids=["missing_input", "missing_config"],
)
def test_usage_errors_say_what_to_do(tmp_path: Path, args: list[str], message: str) -> None:
    """Mistakes on the command line exit 2 with a message naming the problem."""
    base = {"--config": str(CONFIG), "--warehouse": str(tmp_path / "w.duckdb"), "--triggers": str(tmp_path / "t.jsonl")}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    res = leadstream("run", *flat, check=False)
    assert res.returncode == 2
    assert message in res.stderr


def test_erasure_and_consent_reach_the_warehouse(tmp_path: Path) -> None:
    """An erased contact keeps only its ids in the warehouse, its events are gone, and anonymous
    events without consent are dead-lettered without their payload."""
    import orjson

    config = tmp_path / "privacy.toml"
    # A segment that what erasure leaves of a contact (no e-mail address) would match.
    config.write_text(CONFIG.read_text() + '\n[segments.no_email]\nall = [{ field = "email", op = "exists", value = false }]\n'
                      '\n[privacy]\nconsent_category = "analytics"\n')
    ok = {"consent": {"categoryPreferences": {"analytics": True}}}
    lines = [
        # Still anonymous 30 s into its visit: d1 gets the survey overlay before it identifies as u1.
        {"type": "page", "anonymousId": "d1", "context": ok, "timestamp": "2026-01-05T07:59:00Z"},
        {"type": "identify", "userId": "u1", "traits": {"email": "gone@example.com"}, "timestamp": "2026-01-05T08:00:00Z"},
        {"type": "page", "userId": "u1", "properties": {"path": "/"}, "timestamp": "2026-01-05T08:01:00Z"},
        {"type": "page", "anonymousId": "d1", "context": ok, "timestamp": "2026-01-05T08:01:30Z"},
        {"type": "identify", "userId": "u1", "anonymousId": "d1", "timestamp": "2026-01-05T08:01:40Z"},
        {"type": "track", "event": "Contact Deleted", "userId": "u1", "timestamp": "2026-01-05T08:02:00Z"},
        {"type": "page", "userId": "u1", "properties": {"path": "/"}, "timestamp": "2026-01-05T08:03:00Z"},
        {"type": "page", "anonymousId": "d2", "properties": {"path": "/secret"}, "timestamp": "2026-01-05T08:04:00Z"},
        {"type": "identify", "userId": "u2", "traits": {"email": "kept@example.com"}, "timestamp": "2026-01-05T08:05:00Z"},
    ]
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"".join(orjson.dumps(dict(x, messageId=f"m{i}")) + b"\n" for i, x in enumerate(lines)))
    run_into(tmp_path / "out", [data], config=config)
    con = duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT deleted, email, traits::VARCHAR, segments FROM contacts WHERE contact_id = 'u1'").fetchone()
        assert row == (True, None, "{}", [])
        assert con.execute("SELECT count(*) FROM contacts_per_stage WHERE stage IS NULL").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM events WHERE contact_id = 'u1'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # u2's identify
        assert con.execute("SELECT count(*) FROM contact_scores WHERE contact_id = 'u1'").fetchone()[0] == 0
        # The warehouse keeps the erasure's record (its reason), not what it told the actioners ...
        assert con.execute("SELECT email, params, reason->>'event' FROM triggers WHERE action = 'contact_deleted'"
                           ).fetchall() == [(None, None, "Contact Deleted")]
        # Its earlier triggers still count in the reports, but say nothing about the person:
        # no e-mail address, no parameters, no reasons (which quote traits and properties).
        # That covers the anonymous profile d1 merged into it, too.
        erased = con.execute("SELECT contact_id, action, email, params, reason FROM triggers "
                             "WHERE contact_id IN ('u1', 'd1') AND action <> 'contact_deleted'").fetchall()
        assert {cid for cid, *_ in erased} == {"u1", "d1"}
        assert any(action == "send_email" for _, action, *_ in erased)  # the welcome mail
        assert all(rest == [None, None, None] for _, _, *rest in erased), erased
        reports = dict(con.execute("SELECT action, sum(triggers) FROM triggers_per_action_per_day GROUP BY 1").fetchall())
        assert reports["send_email"] >= 1
        kept = con.execute("SELECT email, params, reason FROM triggers WHERE contact_id = 'u2'").fetchall()
        assert kept and all(None not in row for row in kept), kept
        assert ("kept@example.com", '{"template":"welcome"}') in [row[:2] for row in kept]
        dead = con.execute("SELECT reason, raw, source FROM dead_letters").fetchall()
        assert dead == [("no_consent", "", f"{data}:8")]
    finally:
        con.close()
    # And on disk: no Parquet part left holds the e-mail address or u1's and d1's events.
    parts = sorted((tmp_path / "out" / "warehouse.duckdb.parts").rglob("*.parquet"))
    assert any(p.stem.endswith(".e1") for p in parts), "the erasure rewrote parts"
    con = duckdb.connect()
    try:
        for part in parts:
            text = str(con.execute(f"SELECT * FROM read_parquet('{part}')").fetchall())
            assert "gone@example.com" not in text, part
            if part.parent.name == "events":
                owners = {r[0] for r in con.execute(f"SELECT contact_id FROM read_parquet('{part}')").fetchall()}
                assert not owners & {"u1", "d1"}, part
    finally:
        con.close()
    # ... which is the address and every device, for tools that know the person by those.
    erasure = [t for t in map(orjson.loads, (tmp_path / "out" / "triggers.jsonl").read_bytes().splitlines())
               if t["action"] == "contact_deleted"]
    assert [(t["contact_id"], t["email"], t["params"]) for t in erasure] == [
        ("u1", "gone@example.com", {"anonymous_ids": ["d1"]})]
    snap = last_snapshot(tmp_path / "out" / "warehouse.duckdb")
    assert snap["lines_read"] == 9 and snap["dead_lettered"] == 1 and snap["accepted"] == 8
    # u1's page after the erasure: accepted, applied to nothing, and said so.
    assert snap["suppressed"] == 1
    # One-time segmentation leaves erased contacts out, as the stream does.
    from .conftest import leadstream

    res = leadstream("segment", "no_email", "--config", str(config), "--warehouse", str(tmp_path / "out" / "warehouse.duckdb"))
    printed = {line.split("\t")[0] for line in res.stdout.splitlines()[1:]}
    assert printed == set(), res.stdout  # u2 has an address; u1's is gone with u1
    assert "0 contacts in no_email" in res.stderr



def test_a_resumed_run_applies_input_older_than_its_watermark(clickstream: Path, tmp_path: Path) -> None:
    """Lines read after the state's end of input, all behind its watermark, are applied (late) at the new end,
    not left in the buffer: a finite run applies everything it read."""
    import orjson

    out, recovery = tmp_path / "out", tmp_path / "recovery"
    run_into(out, [clickstream], "--recovery", str(recovery))
    first = last_snapshot(out / "warehouse.duckdb")
    older = tmp_path / "older.jsonl"
    older.write_bytes(b"".join(orjson.dumps({
        "type": "page", "anonymousId": f"late-device-{n}", "messageId": f"late-{n}", "name": "Pricing",
        "properties": {"path": "/pricing"}, "timestamp": "2025-12-01T00:00:00Z"}) + b"\n" for n in range(50)))
    res = run_into(out, [clickstream, older], "--recovery", str(recovery))
    snap = last_snapshot(out / "warehouse.duckdb")
    assert snap["buffered"] == 0, res.stderr
    assert f"resuming from --recovery {recovery}: earlier runs read {first['lines_read']:,} lines" in res.stderr
    assert f"(50 lines this run, resumed after {first['lines_read']:,})" in res.stdout
    assert (snap["lines_read"], snap["accepted"]) == (first["lines_read"] + 50, first["accepted"] + 50)
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM contacts WHERE contact_id LIKE 'late-device-%'").fetchone() == (50,)
    finally:
        con.close()


def test_a_fresh_run_keeps_the_earlier_warehouse_readable_and_starts_its_line_files_empty(
        clickstream: Path, tmp_path: Path) -> None:
    """A reader with the earlier warehouse open can still query it after a fresh run over the same
    path published its own (its parts go only after the grace period), and the new run's trigger
    file holds only the new run's triggers, none at all here."""
    import orjson

    out = tmp_path / "out"
    run_into(out, [clickstream])
    reader = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        before = reader.execute("SELECT count(*) FROM triggers").fetchone()
        assert before is not None and before[0] > 0
        quiet = tmp_path / "quiet.jsonl"  # one anonymous page view that fires nothing
        quiet.write_bytes(orjson.dumps({"type": "screen", "anonymousId": "q1", "messageId": "q1",
                                        "timestamp": "2026-01-05T08:00:00Z"}) + b"\n")
        run_into(out, [quiet])
        assert reader.execute("SELECT count(*) FROM triggers").fetchone() == before
    finally:
        reader.close()
    assert (out / "triggers.jsonl").read_bytes() == b""
    assert (out / "dead_letters.jsonl").read_bytes() == b""
    assert last_snapshot(out / "warehouse.duckdb")["lines_read"] == 1


def test_a_contacts_activity_log_includes_its_anonymous_part(tmp_path: Path) -> None:
    """Triggers fired while a person was anonymous show in their activity log after they identify,
    and the person counts once per day as a targeted contact; the triggers table keeps them as emitted."""
    import orjson

    lines = [
        {"type": "page", "anonymousId": "d1", "properties": {"path": "/pricing"}, "timestamp": "2026-01-05T07:59:00Z"},
        {"type": "page", "anonymousId": "d1", "properties": {"path": "/pricing"}, "timestamp": "2026-01-05T07:59:40Z"},
        {"type": "identify", "userId": "u1", "anonymousId": "d1", "traits": {"email": "u1@example.com"},
         "timestamp": "2026-01-05T08:00:00Z"},
    ]
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"".join(orjson.dumps(dict(x, messageId=f"m{i}")) + b"\n" for i, x in enumerate(lines)))
    run_into(tmp_path / "out", [data])
    con = duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)
    try:
        anonymous = con.execute("SELECT trigger_id FROM triggers WHERE contact_id = 'd1' "
                                "AND action NOT IN ('stage_changed', 'segment_entered', 'segment_exited')").fetchall()
        known = con.execute("SELECT count(*) FROM triggers WHERE contact_id = 'u1' "
                            "AND action NOT IN ('stage_changed', 'segment_entered', 'segment_exited')").fetchone()
        assert anonymous and known and known[0] > 0, "both parts of the person were targeted"
        log = {r[0] for r in con.execute("SELECT id FROM activity_log WHERE contact_id = 'u1' AND kind = 'trigger'").fetchall()}
        assert {t for (t,) in anonymous} <= log
        assert con.execute("SELECT count(*) FROM activity_log WHERE contact_id = 'd1'").fetchone() == (0,)
        assert con.execute("SELECT day::VARCHAR, contacts FROM targeted_contacts_per_day").fetchall() == [("2026-01-05", 1)]
        # "E-mails sent" counts the send_email triggers that have an address to send to.
        per_day = con.execute("SELECT sum(triggers), sum(with_email) FROM triggers_per_action_per_day "
                              "WHERE action = 'send_email'").fetchone()
        direct = con.execute("SELECT count(*), count(*) FILTER (email IS NOT NULL) FROM triggers "
                             "WHERE action = 'send_email'").fetchone()
        assert per_day == direct and direct[1] >= 1
    finally:
        con.close()


def test_a_workflow_counts_a_person_once_across_their_anonymous_part(tmp_path: Path) -> None:
    """A workflow that reached a visitor before and after they identified reached one person that day."""
    import orjson

    config = tmp_path / "nudge.toml"
    config.write_text('[workflows.nudge]\ntrigger = { event = { all = [{ field = "event.type", op = "eq", value = "page" }] } }\n'
                      'entry = "every_time"\nsteps = [{ action = "show_overlay", params = { overlay = "tip" } }]\n')
    lines = [
        {"type": "page", "anonymousId": "d1", "timestamp": "2026-01-05T07:59:00Z"},
        {"type": "identify", "userId": "u1", "anonymousId": "d1", "timestamp": "2026-01-05T08:00:00Z"},
        {"type": "page", "userId": "u1", "timestamp": "2026-01-05T08:01:00Z"},
    ]
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"".join(orjson.dumps(dict(x, messageId=f"m{i}")) + b"\n" for i, x in enumerate(lines)))
    run_into(tmp_path / "out", [data], config=config)
    con = duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT DISTINCT contact_id FROM triggers ORDER BY 1").fetchall() == [("d1",), ("u1",)]
        assert con.execute("SELECT day::VARCHAR, workflow, contacts, actions FROM targeted_contacts_per_day_per_workflow"
                           ).fetchall() == [("2026-01-05", "nudge", 1, 2)]
    finally:
        con.close()


def test_a_resume_under_a_changed_config_brings_the_contacts_in_line(clickstream: Path, tmp_path: Path) -> None:
    """Resumed with a segment and a scoring profile removed and a segment added, the warehouse holds no members
    or scores of what is gone (they stayed for ever), and the new segment's members, each with its trigger."""
    full = CONFIG.read_text()
    out, recovery = tmp_path / "out", tmp_path / "recovery"
    run_into(out, [clickstream], "--recovery", str(recovery))
    start = full.index("[scoring.end_user]")
    changed = full[:start] + full[full.index("[grade]"):]
    start = changed.index("[segments.decision_makers]")
    changed = changed[:start] + changed[changed.index("[completion_actions.form_autoresponder]"):]
    changed += '\n[segments.regulars]\nall = [{ field = "visits", op = "ge", value = 3 }]\n'
    config = tmp_path / "changed.toml"
    config.write_text(changed)
    before = tables(out / "warehouse.duckdb")
    assert [r for r in before["segment_members"] if r[0] == "decision_makers"]
    assert [r for r in before["contact_scores"] if r[1] == "end_user"]
    run_into(out, [clickstream], "--recovery", str(recovery), config=config)
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM segment_members WHERE segment = 'decision_makers'").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM contacts WHERE list_contains(segments, 'decision_makers')"
                           ).fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM contact_scores WHERE profile = 'end_user'").fetchone() == (0,)
        regulars = {r[0] for r in con.execute("SELECT contact_id FROM segment_members WHERE segment = 'regulars'"
                                              ).fetchall()}
        should = {r[0] for r in con.execute("SELECT contact_id FROM contacts WHERE visits >= 3 AND deleted IS NOT TRUE"
                                            ).fetchall()}
        entered = {r[0] for r in con.execute("SELECT contact_id FROM triggers WHERE action = 'segment_entered' "
                                             "AND rule = 'segments.regulars'").fetchall()}
    finally:
        con.close()
    assert should and regulars == should == entered
    assert last_snapshot(out / "warehouse.duckdb")["lines_read"] == 20_000, "the resumed run read nothing twice"


def test_half_life_scores_are_shown_as_of_the_snapshot(tmp_path: Path) -> None:
    """A half-life score fades between the contact's events and timers: contact_scores shows it at the snapshot's
    watermark (it showed the value at the last threshold crossing, about 11 points where 0.04 was right), and
    scoring_profiles says how each profile decays."""
    import orjson

    config = tmp_path / "fading.toml"
    config.write_text('[scoring.default]\ndecay = { half_life = "1d" }\n[[scoring.default.rules]]\nname = "form"\n'
                      'points = 45\nall = [{ field = "event.name", op = "eq", value = "Form" }]\n'
                      '[scoring.steady]\n[[scoring.steady.rules]]\nname = "form"\npoints = 3\n'
                      'all = [{ field = "event.name", op = "eq", value = "Form" }]\n')
    lines = [{"type": "track", "event": "Form", "userId": "u1", "timestamp": "2026-01-05T08:00:00Z"},
             {"type": "group", "userId": "clock", "groupId": "g", "timestamp": "2026-01-15T08:00:00Z"}]
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"".join(orjson.dumps(dict(x, messageId=f"m{i}")) + b"\n" for i, x in enumerate(lines)))
    run_into(tmp_path / "out", [data], config=config)
    con = duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)
    try:
        shown = dict(con.execute("SELECT profile, score FROM contact_scores WHERE contact_id = 'u1'").fetchall())
        settled = con.execute("SELECT score FROM contact_score_values WHERE contact_id = 'u1' AND profile = 'default'"
                              ).fetchone()
        profiles = con.execute("SELECT * FROM scoring_profiles ORDER BY profile").fetchall()
    finally:
        con.close()
    assert shown["default"] == pytest.approx(45 * 2 ** -10, abs=1e-8) and shown["steady"] == 3.0
    assert settled is not None and settled[0] > 10  # the last crossing (awareness at 11) settled it there
    assert profiles == [("default", 86_400_000, None, None), ("steady", None, None, None)]
