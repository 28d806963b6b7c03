"""DuckDB peer: the whole file recomputed in one SQL batch (see peers/__init__.py for the semantics)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb

LOAD = """
CREATE TABLE raw AS SELECT * FROM read_json({path}, format = 'newline_delimited', ignore_errors = true,
    maximum_object_size = 1048576,
    columns = {{type: 'VARCHAR', event: 'VARCHAR', messageId: 'VARCHAR', timestamp: 'VARCHAR',
               anonymousId: 'VARCHAR', userId: 'JSON', previousId: 'VARCHAR', traits: 'JSON',
               properties: 'JSON', context: 'JSON'}})
"""

SCORE = """
CREATE TABLE peer AS
WITH ev AS (
  SELECT DISTINCT ON (messageId) type, event, messageId,
         epoch_ms(TRY_CAST(timestamp AS TIMESTAMPTZ)) AS ts,
         NULLIF(trim(anonymousId), '') AS anon,
         CASE WHEN lower(trim(userId->>'$')) IN ('', 'anonymous', 'null', 'undefined', '0', 'none', 'nil')
              THEN NULL ELSE userId->>'$' END AS uid,
         coalesce(json_type(userId), 'VARCHAR') AS uid_type,
         previousId, traits, properties, context
  FROM raw
  WHERE type IN ('identify', 'track', 'page', 'screen', 'alias', 'group') AND messageId IS NOT NULL
),
ok AS (
  SELECT * FROM ev
  WHERE ts BETWEEN epoch_ms(TIMESTAMPTZ '2000-01-01') AND epoch_ms(TIMESTAMPTZ '2100-01-01')
    AND (anon IS NOT NULL OR uid IS NOT NULL) AND uid_type IN ('VARCHAR', 'NULL')
    AND coalesce(json_type(properties), 'OBJECT') = 'OBJECT' AND coalesce(json_type(context), 'OBJECT') = 'OBJECT'
    AND strlen(coalesce(properties::VARCHAR, '')) < 32768
),
links AS (
  SELECT device, arg_min(uid, ts) AS linked_to FROM (
    SELECT anon AS device, uid, ts FROM ok WHERE anon IS NOT NULL AND uid IS NOT NULL AND type <> 'alias'
    UNION ALL
    SELECT previousId, uid, ts FROM ok WHERE type = 'alias' AND previousId IS NOT NULL AND uid IS NOT NULL
  ) GROUP BY device
),
pts AS (
  SELECT coalesce(ok.uid, l.linked_to, ok.anon) AS contact_id, ok.ts, ok.messageId, ok.type,
    CASE WHEN ok.type = 'page' THEN 1
         WHEN ok.type = 'track' THEN CASE ok.event WHEN 'Form Submitted' THEN 20 WHEN 'Webinar Registered' THEN 10
              WHEN 'Webinar Attended' THEN 10 WHEN 'Email Opened' THEN 5 WHEN 'Email Link Clicked' THEN 10
              WHEN 'Product Added' THEN 5 WHEN 'Order Completed' THEN 20 ELSE 0 END
         ELSE 0 END AS points,
    coalesce(ok.type = 'identify' AND contains(lower(ok.traits->>'title'), 'student'), false) AS student
  FROM ok LEFT JOIN links l ON l.device = ok.anon
),
visits AS (
  SELECT contact_id, count(*) FILTER (WHERE prev IS NULL OR ts - prev > 1800000) AS visits FROM (
    SELECT contact_id, ts, lag(ts) OVER (PARTITION BY contact_id ORDER BY ts, messageId) AS prev
    FROM pts WHERE type IN ('page', 'screen')
  ) GROUP BY contact_id
)
SELECT p.contact_id, count(*) AS events,
       sum(points) + 5 * coalesce(any_value(v.visits), 0) - 10 * (bool_or(student)::INT) AS score
FROM pts p LEFT JOIN visits v USING (contact_id) GROUP BY p.contact_id
"""


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _one(con: duckdb.DuckDBPyConnection, query: str) -> tuple[Any, ...]:
    """The one row an aggregate query returns."""
    row = con.execute(query).fetchone()
    if row is None:
        msg = f"no row from: {query}"
        raise RuntimeError(msg)
    return row


def run(path: Path) -> tuple[dict[str, Any], duckdb.DuckDBPyConnection]:
    """Recompute scores for `path`; return (figures, the connection holding table `peer`)."""
    con = duckdb.connect()
    threads = _one(con, "SELECT current_setting('threads')")[0]
    started = time.perf_counter()
    con.execute(LOAD.format(path=_lit(path)))
    loaded = time.perf_counter()
    con.execute(SCORE)
    done = time.perf_counter()
    contacts, events = _one(con, "SELECT count(*), sum(events) FROM peer")
    con.execute("DROP TABLE raw")
    return {
        "threads": threads,
        "load_s": loaded - started,
        "compute_s": done - loaded,
        "total_s": done - started,
        "contacts": contacts,
        "events": int(events or 0),
    }, con


def agreement(con: duckdb.DuckDBPyConnection, peer_table_sql: str, warehouse: Path) -> dict[str, Any]:
    """Compare a peer's (contact_id, score) rows with leadstream's `default` scores."""
    con.execute(f"ATTACH {_lit(warehouse)} AS ls (READ_ONLY)")
    try:
        total, same, only_ls, only_peer = _one(con, f"""
            SELECT count(*), count(*) FILTER (WHERE p.score = s.score),
                   count(*) FILTER (WHERE p.contact_id IS NULL), count(*) FILTER (WHERE s.contact_id IS NULL)
            FROM ({peer_table_sql}) p
            FULL JOIN (SELECT contact_id, score FROM ls.contact_scores WHERE profile = 'default') s USING (contact_id)
        """)
        ls_contacts = _one(con, "SELECT count(*) FROM ls.contacts")[0]
    finally:
        con.execute("DETACH ls")
    return {"leadstream_contacts": ls_contacts, "compared": total, "same_score": same,
            "only_leadstream": only_ls, "only_peer": only_peer,
            "share_same": same / total if total else 0.0}
