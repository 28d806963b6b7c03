"""SQL text for DuckDB statements that name files (quoted paths and path lists), and single values back."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sql_path(path: str | Path) -> str:
    """A path for a single-quoted SQL string literal."""
    return str(path).replace("'", "''")


def sql_list(paths: list[str]) -> str:
    """A list literal of quoted paths, as ``read_parquet`` takes it."""
    return "[" + ", ".join(f"'{sql_path(Path(p))}'" for p in paths) + "]"


def scalar(con: Any, query: str, params: list[Any] | None = None) -> Any:
    """The first column of the one row ``query`` returns (an aggregate, a count)."""
    row = con.execute(query, params).fetchone() if params is not None else con.execute(query).fetchone()
    if row is None:
        msg = f"expected a row from DuckDB, got none: {query}"
        raise RuntimeError(msg)
    return row[0]
