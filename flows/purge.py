"""Erasure on disk: rewrite the Parquet parts that still hold rows of contacts erased on request.

A published snapshot hides an erased contact's events and blanks its triggers at once
(see ``warehouse.DERIVED`` and ``FILTERS``), but parts are immutable files written before
the erasure. So the build that first sees a contact erased also rewrites every part that
holds its data, and the writer retires the originals like parts merged by compaction
(deleted once no reader can still be using them). What each table keeps of an erased
person (the contact itself, and the anonymous profiles that merged into it):

- ``events``: nothing;
- ``triggers``: the rows, which the reports count, without e-mail address, parameters
  and reasons; the ``contact_deleted`` trigger keeps its reason, as the record of the erasure;
- ``contacts``: only the erased row and the merge tombstones, which the current-state
  tables are built from (the newest row per contact wins, and those are the newest);
- ``identities``: everything (ids only: they keep suppressing later events);
- ``dead_letters``: the rows, without the raw line of any that names the person by one of
  their ids (``userId``, ``anonymousId`` or ``previousId``; a rejected line has no contact,
  so the ids in its text are what ties it to one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .sqltext import sql_list, sql_path

# The ids of erased people: contacts erased on request and the anonymous profiles that
# merged into them (rows stored under either id are theirs), read from a snapshot's
# current-state tables. The published views blank and hide by it too (warehouse.DERIVED).
ERASED_IDS = ("SELECT contact_id AS id FROM contacts WHERE deleted UNION SELECT m.anonymous_id FROM merges m "
              "JOIN contacts c ON c.contact_id = m.contact_id WHERE c.deleted")

# Every id an erased person is known by: the ids above, and the devices linked to them.
ERASED_IDENTIFIERS = (f"SELECT id FROM ({ERASED_IDS}) UNION SELECT identifier FROM identities "
                      f"WHERE contact_id IN ({ERASED_IDS})")
# Where a dead letter's raw line names someone: the value of an identity key, found by
# pattern rather than parsed, so that lines which are not valid JSON are covered too.
_ID_VALUE = r'"(?:userId|anonymousId|previousId)"\s*:\s*"([^"\\]*)"'


def names_any(ids: str, raw: str = "raw") -> str:
    """SQL: whether a dead letter's ``raw`` names one of the ids the query ``ids`` gives (column ``id``)."""
    return f"list_has_any(regexp_extract_all({raw}, '{_ID_VALUE}', 1), (SELECT list(id) FROM ({ids})))"


# Per table: which stored rows hold an erased person's data, and the rewrite's SELECT.
_BLANKED = ("email", "params", "reason")
_KEPT = {"reason": "action <> 'contact_deleted' AND "}  # the contact_deleted trigger's reason stays
_RULES: dict[str, tuple[str, str]] = {
    "events": ("contact_id IN (SELECT id FROM {ids})",
               "SELECT * FROM {src} WHERE contact_id NOT IN (SELECT id FROM {ids})"),
    "triggers": (
        "contact_id IN (SELECT id FROM {ids}) AND (email IS NOT NULL OR params IS NOT NULL "
        "OR (reason IS NOT NULL AND action <> 'contact_deleted'))",
        "SELECT * REPLACE ("
        + ", ".join(f"CASE WHEN {_KEPT.get(col, '')}contact_id IN (SELECT id FROM {{ids}}) "
                    f"THEN NULL ELSE {col} END AS {col}" for col in _BLANKED)
        + ") FROM {src}",
    ),
    "contacts": (
        "contact_id IN (SELECT id FROM {ids}) AND NOT deleted AND NOT erased",
        "SELECT * FROM {src} WHERE deleted OR erased OR contact_id NOT IN (SELECT id FROM {ids})",
    ),
    "dead_letters": (
        "raw <> '' AND " + names_any("SELECT id FROM {ids}"),
        "SELECT * REPLACE (CASE WHEN " + names_any("SELECT id FROM {ids}") + " THEN '' ELSE raw END AS raw) FROM {src}",
    ),
}
_REWRITTEN = re.compile(r"\.e\d+$")  # the suffix of a part rewritten before


@dataclass
class Purge:
    """What one build rewrote: part replacements per table, and the ids now purged."""

    replaced: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {old part: new part}
    ids: frozenset[str] = frozenset()
    # The dead-letter parts now known to name no erased person; None: the build did not look.
    checked: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.ids)


def rewritten_name(part: str, build: int) -> str:
    """The name of ``part`` rewritten by build number ``build``.

    It keeps the part's sequence prefix, so a rewritten contacts part still sorts where
    the original did: "the newest part wins" must not change.
    """
    path = Path(part)
    return str(path.with_name(f"{_REWRITTEN.sub('', path.stem)}.e{build}{path.suffix}"))


def purge_erased(con: duckdb.DuckDBPyConnection, parts: dict[str, list[str]], purged: frozenset[str],
                 build: int, row_group: int, checked: frozenset[str] = frozenset()) -> Purge:
    """Rewrite the parts holding rows of people erased since ``purged``; return what changed.

    ``con`` has the snapshot being built as its current database, with its current-state
    tables already up to date. ``parts`` (table -> part paths) is updated in place.
    Dead-letter parts not in ``checked`` are looked at for every erased person, not just the
    new ones: a line is rejected before anything knows whose it is, so one naming a person
    erased long ago can arrive in any later part.
    """
    erased = {row[0] for row in con.execute(ERASED_IDENTIFIERS).fetchall()}
    new = erased - purged
    dead = parts.get("dead_letters", [])
    unchecked = [p for p in dead if p not in checked]
    if not new and not (erased and unchecked):
        return Purge()
    for name, members in (("_purge_ids", new), ("_erased_ids", erased)):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (id VARCHAR)")
        if members:
            con.executemany(f"INSERT INTO temp.main.{name} VALUES (?)", [[i] for i in sorted(members)])
    out = Purge(ids=frozenset(new))
    for table, (holds, rewrite) in _RULES.items():
        ids, candidates = "temp.main._purge_ids", parts.get(table) if new else None
        if table == "dead_letters":
            ids, candidates = "temp.main._erased_ids", dead if new else unchecked
        if not candidates:
            continue
        hit = con.execute(
            f"SELECT DISTINCT filename FROM read_parquet({sql_list(candidates)}, filename = true) "
            f"WHERE {holds.format(ids=ids)}").fetchall()
        swaps: dict[str, str] = {}
        for (found,) in hit:
            old = next(p for p in parts[table] if Path(p) == Path(found))
            new_part = rewritten_name(old, build)
            tmp = Path(new_part).with_suffix(".tmp")
            query = rewrite.format(src=f"read_parquet({sql_list([old])})", ids=ids)
            con.execute(f"COPY ({query}) TO '{sql_path(tmp)}' "
                        f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group})")
            tmp.replace(new_part)
            swaps[old] = new_part
        if swaps:
            parts[table] = [swaps.get(p, p) for p in parts[table]]
            out.replaced[table] = swaps
    if erased:
        out.checked = frozenset(parts.get("dead_letters", []))
    return out
