"""DuckDB peer: the whole file recomputed in one SQL batch (see peers/__init__.py for the semantics)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb

# The JSON columns are only checked (and a title taken) while the file is read, so the
# table and everything after it carry short strings: with properties, context and traits
# carried through DISTINCT ON and the joins, the SQL took 1.5-1.7 s of a 2.3-2.5 s run of
# 1M lines of `standard`; now 0.8-0.9 s of 1.5-1.7 s, with the same scores.
LOAD = """
CREATE TABLE raw AS
SELECT type, event, messageId, timestamp, anonymousId, userId, previousId,
       CASE WHEN type = 'identify' THEN traits->>'title' END AS title,
       coalesce(json_type(properties), 'OBJECT') = 'OBJECT' AND coalesce(json_type(context), 'OBJECT') = 'OBJECT'
         AND strlen(coalesce(properties::VARCHAR, '')) < 32768 AS shape_ok
FROM read_json({path}, format = 'newline_delimited', ignore_errors = true,
    maximum_object_size = 1048576,
    columns = {{type: 'VARCHAR', event: 'VARCHAR', messageId: 'VARCHAR', timestamp: 'VARCHAR',
               anonymousId: 'VARCHAR', userId: 'JSON', previousId: 'VARCHAR', traits: 'JSON',
               properties: 'JSON', context: 'JSON'}})
"""

# Visits: a page or screen more than 30 minutes after the contact's previous one (or its
# first), found with lag() within the contact's views; one group-by per contact sums it all.
SCORE = """
CREATE TABLE peer AS
WITH ev AS (
  SELECT DISTINCT ON (messageId) type, event, messageId,
         epoch_ms(TRY_CAST(timestamp AS TIMESTAMPTZ)) AS ts,
         NULLIF(trim(anonymousId), '') AS anon,
         CASE WHEN lower(trim(userId->>'$')) IN ('', 'anonymous', 'null', 'undefined', '0', 'none', 'nil')
              THEN NULL ELSE userId->>'$' END AS uid,
         coalesce(json_type(userId), 'VARCHAR') IN ('VARCHAR', 'NULL') AS uid_ok,
         previousId, title, shape_ok
  FROM raw
  WHERE type IN ('identify', 'track', 'page', 'screen', 'alias', 'group') AND messageId IS NOT NULL
),
ok AS (
  SELECT * FROM ev
  WHERE ts BETWEEN epoch_ms(TIMESTAMPTZ '2000-01-01') AND epoch_ms(TIMESTAMPTZ '2100-01-01')
    AND (anon IS NOT NULL OR uid IS NOT NULL) AND uid_ok AND shape_ok
),
links AS (
  SELECT CASE WHEN type = 'alias' THEN previousId ELSE anon END AS device, arg_min(uid, ts) AS linked_to
  FROM ok
  WHERE uid IS NOT NULL AND CASE WHEN type = 'alias' THEN previousId IS NOT NULL ELSE anon IS NOT NULL END
  GROUP BY ALL
),
pts AS (
  SELECT coalesce(ok.uid, l.linked_to, ok.anon) AS contact_id, ok.ts, ok.messageId, ok.type,
    CASE WHEN ok.type = 'page' THEN 1
         WHEN ok.type = 'track' THEN CASE ok.event WHEN 'Form Submitted' THEN 20 WHEN 'Webinar Registered' THEN 10
              WHEN 'Webinar Attended' THEN 10 WHEN 'Email Opened' THEN 5 WHEN 'Email Link Clicked' THEN 10
              WHEN 'Product Added' THEN 5 WHEN 'Order Completed' THEN 20 ELSE 0 END
         ELSE 0 END AS points,
    coalesce(contains(lower(ok.title), 'student'), false) AS student
  FROM ok LEFT JOIN links l ON l.device = ok.anon
),
marked AS (
  SELECT contact_id, points, student, type IN ('page', 'screen') AS view,
         CASE WHEN type IN ('page', 'screen') THEN
           ts - lag(ts) OVER (PARTITION BY contact_id, type IN ('page', 'screen') ORDER BY ts, messageId) END AS gap
  FROM pts
)
SELECT contact_id, count(*) AS events,
       sum(points) + 5 * count(*) FILTER (WHERE view AND (gap IS NULL OR gap > 1800000))
         - 10 * (bool_or(student)::INT) AS score
FROM marked GROUP BY contact_id
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
