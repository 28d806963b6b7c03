"""The example queries in the README run against a real warehouse."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def _readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    statements = [s.strip() for block in blocks for s in block.split(";")]
    return [s for s in statements if s and not all(line.startswith("--") for line in s.splitlines())]


QUERIES = _readme_queries()


def test_readme_has_queries() -> None:
    """Guards against a README edit that silently removes the examples."""
    assert len(QUERIES) >= 5


@pytest.mark.parametrize("sql", QUERIES, ids=[f"query{i}" for i in range(len(QUERIES))])
def test_readme_query_runs(baseline: Path, sql: str) -> None:
    """Each example query runs on a published warehouse and returns rows."""
    con = duckdb.connect(str(baseline / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    if "user-42" not in sql:
        assert rows, sql
