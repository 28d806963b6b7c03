"""SQL text for DuckDB statements that name files: quoted paths and path lists."""

from __future__ import annotations

from pathlib import Path


def sql_path(path: str | Path) -> str:
    """A path for a single-quoted SQL string literal."""
    return str(path).replace("'", "''")


def sql_list(paths: list[str]) -> str:
    """A list literal of quoted paths, as ``read_parquet`` takes it."""
    return "[" + ", ".join(f"'{sql_path(Path(p))}'" for p in paths) + "]"
