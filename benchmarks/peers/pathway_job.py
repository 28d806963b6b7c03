"""The Pathway peer program; runs inside the separate Pathway venv (never the project's).

    PATHWAY_THREADS=1 python pathway_job.py EVENTS.jsonl OUT.csv TIMES.json

Same semantics as the DuckDB peer (see __init__.py), as a Pathway dataflow over the file
read with pw.io.jsonlines in static mode (the whole file is one input batch to Pathway's
incremental engine). Only the per-contact visit count calls Python (once per contact).
"""

import json
import sys
import time
from functools import reduce

t0 = time.perf_counter()
import pathway as pw  # noqa: E402

t_import = time.perf_counter()


def one_of(col, values):
    return reduce(lambda a, b: a | b, [col == v for v in values])


def opt():
    return pw.column_definition(default_value=None)


class Line(pw.Schema):
    type: str | None = opt()
    event: str | None = opt()
    messageId: str | None = opt()
    timestamp: str | None = opt()
    anonymousId: str | None = opt()
    userId: str | None = opt()
    previousId: str | None = opt()
    title: str | None = opt()


JUNK = ("", "anonymous", "null", "undefined", "0", "none", "nil")
POINTS = (("Form Submitted", 20), ("Webinar Registered", 10), ("Webinar Attended", 10), ("Email Opened", 5),
          ("Email Link Clicked", 10), ("Product Added", 5), ("Order Completed", 20))


def track_points(name):
    expr = 0
    for event, points in reversed(POINTS):
        expr = pw.if_else(name == event, points, expr)
    return expr


def count_visits(stamps) -> int:
    n, prev = 0, None
    for ts in stamps:
        if prev is None or ts - prev > 1_800_000.0:
            n += 1
        prev = ts
    return n


raw = pw.io.jsonlines.read(sys.argv[1], schema=Line, mode="static", autocommit_duration_ms=None,
                           json_field_paths={"title": "/traits/title"})
r = raw.filter(one_of(raw.type, ["identify", "track", "page", "screen", "alias", "group"])
               & raw.messageId.is_not_none() & raw.timestamp.is_not_none())
r = r.with_columns(timestamp=pw.unwrap(r.timestamp))
r = r.filter((r.timestamp >= "2000-01-01") & (r.timestamp < "2100-01-01"))
r = r.select(*pw.this.without(pw.this.userId, pw.this.anonymousId),
             uid=pw.if_else(one_of(pw.coalesce(pw.this.userId, "").str.strip().str.lower(), JUNK), None, pw.this.userId),
             anon=pw.if_else(pw.coalesce(pw.this.anonymousId, "").str.strip() == "", None, pw.this.anonymousId))
r = r.filter(r.uid.is_not_none() | r.anon.is_not_none())
ev = r.groupby(r.messageId).reduce(
    r.messageId, type=pw.reducers.any(r.type), event=pw.reducers.any(r.event),
    timestamp=pw.reducers.any(r.timestamp), anon=pw.reducers.any(r.anon), uid=pw.reducers.any(r.uid),
    previousId=pw.reducers.any(r.previousId), title=pw.reducers.any(r.title))
ev = ev.with_columns(t=pw.this.timestamp.dt.strptime("%Y-%m-%dT%H:%M:%S.%fZ"))
l1 = ev.filter(ev.anon.is_not_none() & ev.uid.is_not_none() & (ev.type != "alias")).select(
    device=pw.this.anon, uid=pw.this.uid, t=pw.this.t)
l2 = ev.filter((ev.type == "alias") & ev.previousId.is_not_none() & ev.uid.is_not_none()).select(
    device=pw.this.previousId, uid=pw.this.uid, t=pw.this.t)
lk = l1.concat_reindex(l2)
links = lk.groupby(lk.device).reduce(lk.device, first=pw.reducers.argmin(lk.t))
links = links.select(links.device, linked_to=lk.ix(links.first).uid)
att = ev.join_left(links, ev.anon == links.device).select(*ev, linked_to=links.linked_to)
att = att.select(
    pw.this.type, pw.this.t,
    contact_id=pw.coalesce(pw.this.uid, pw.this.linked_to, pw.this.anon),
    points=pw.if_else(pw.this.type == "page", 1, pw.if_else(pw.this.type == "track", track_points(pw.this.event), 0)),
    student=pw.if_else(pw.this.type == "identify",
                       pw.coalesce(pw.this.title, "").str.lower().str.find("student") >= 0, False))
per = att.groupby(att.contact_id).reduce(att.contact_id, points=pw.reducers.sum(att.points),
                                         student=pw.reducers.max(att.student), events=pw.reducers.count())
views = att.filter(one_of(att.type, ["page", "screen"])).with_columns(ms=pw.this.t.dt.timestamp(unit="ms"))
vt = views.groupby(views.contact_id).reduce(views.contact_id, stamps=pw.reducers.sorted_tuple(views.ms))
visits = vt.select(vt.contact_id, visits=pw.apply_with_type(count_visits, int, vt.stamps))
out = per.join_left(visits, per.contact_id == visits.contact_id).select(
    contact_id=per.contact_id, events=per.events,
    score=per.points + 5 * pw.coalesce(visits.visits, 0) - pw.if_else(per.student, 10, 0))
pw.io.csv.write(out, sys.argv[2])
t_build = time.perf_counter()
pw.run(monitoring_level=pw.MonitoringLevel.NONE)
t_done = time.perf_counter()
with open(sys.argv[3], "w") as fh:
    json.dump({"import_s": t_import - t0, "build_s": t_build - t_import, "run_s": t_done - t_build,
               "total_s": t_done - t0, "pathway": pw.__version__}, fh)
