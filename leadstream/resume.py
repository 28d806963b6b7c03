"""What a recovery directory's run was started with, so a resume that differs is refused before it starts.

Bytewax keys the saved state by partition name: an input or output path spelt another way
(or the same relative path from another directory), or another shard count, does not match
it. Unchecked, that was a Rust panic for an output, an input read again from its start,
or, for the shard count, inputs silently not read at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RECORD = "leadstream-run.json"


class ResumeMismatch(ValueError):
    """A resume whose shards, inputs or outputs differ from what the recovery directory was written with."""


def _absolute(path: str) -> str:
    return path if "://" in path or path == "-" else os.path.abspath(path)


def check_and_record(folder: Path, resuming: bool, shards: int, inputs: tuple[str, ...],
                     outputs: dict[str, str], write: bool = True) -> None:
    """Refuse a resume that differs from the recorded run; record this run's shards, inputs and outputs.

    ``outputs`` maps a flag (``--triggers``) to the path as given. Inputs may be added on a
    resume (a new file to read on from the saved state), but one read before must be given
    as it was. Directories without a record (written before records) are neither checked nor
    given one: a record written from a resume that then fails would hold that run's mistake.
    An unreadable record is refused rather than taken as none.
    """
    path = folder / RECORD
    record: dict[str, Any] | None = None
    if resuming and path.exists():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as ex:
            record = {"unreadable": str(ex)}
        if not _well_formed(record):
            why = record.get("unreadable") if isinstance(record, dict) and "unreadable" in record else "not a run record"
            raise ResumeMismatch(
                f"--recovery {folder}: {RECORD} cannot be read ({why}), so this run cannot be checked against the saved "
                f"state. Restore the file, delete it to resume unchecked, or start afresh with a new --recovery directory")
    if resuming and record is None:
        return
    if record is not None:
        problems = _differences(record, shards, inputs, outputs)
        if problems:
            raise ResumeMismatch(
                f"--recovery {folder}: this run differs from the one that wrote the saved state: "
                + "; ".join(problems)
                + f". Resume with the same settings (the run was started from {record.get('cwd', '?')}), "
                "or start afresh with a new --recovery directory")
    if not write:
        return
    known = {} if record is None else {i["given"]: i for i in record.get("inputs", [])}
    for given in inputs:
        known.setdefault(given, {"given": given, "absolute": _absolute(given)})
    new = {
        "shards": shards,
        "cwd": os.getcwd() if record is None else record.get("cwd", os.getcwd()),
        "inputs": list(known.values()),
        "outputs": {flag: {"given": given, "absolute": _absolute(given)} for flag, given in outputs.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(new, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _well_formed(record: Any) -> bool:
    """Whether a parsed record has the shape ``check_and_record`` writes."""
    if not isinstance(record, dict) or "unreadable" in record or type(record.get("shards")) is not int:
        return False
    inputs, outputs = record.get("inputs"), record.get("outputs")
    entry_ok = lambda e: isinstance(e, dict) and isinstance(e.get("given"), str) and isinstance(e.get("absolute"), str)  # noqa: E731
    return (isinstance(inputs, list) and all(entry_ok(i) for i in inputs)
            and isinstance(outputs, dict) and all(isinstance(k, str) and entry_ok(v) for k, v in outputs.items())
            and isinstance(record.get("cwd", ""), str))


def _differences(record: dict[str, Any], shards: int, inputs: tuple[str, ...], outputs: dict[str, str]) -> list[str]:
    problems = []
    if record.get("shards") != shards:
        problems.append(f"it had {record.get('shards')} shards and this run has {shards} (set by --shards or "
                        "[settings] shards): the saved state is split by shard")
    for flag, given in outputs.items():
        before = record.get("outputs", {}).get(flag)
        if before is None:
            continue
        if before["given"] != given or before["absolute"] != _absolute(given):
            problems.append(f"{flag} was {before['given']!r} ({before['absolute']}), now {given!r} "
                            f"({_absolute(given)})")
    given_now = {_absolute(g) for g in inputs}
    for before in record.get("inputs", []):
        if before["absolute"] not in given_now:
            problems.append(f"--input {before['given']!r} was read by the saved run and is not given now (the state "
                            "resumes every input it read; a file read to its end is not read again)")
    by_absolute = {i["absolute"]: i for i in record.get("inputs", [])}
    by_given = {i["given"]: i for i in record.get("inputs", [])}
    for given in inputs:
        same_file = by_absolute.get(_absolute(given))
        if same_file is not None and same_file["given"] != given:
            problems.append(f"--input {given!r} was given as {same_file['given']!r}: spelt another way, it would be "
                            "read again from its start")
        same_name = by_given.get(given)
        if same_name is not None and same_name["absolute"] != _absolute(given):
            problems.append(f"--input {given!r} meant {same_name['absolute']} then and {_absolute(given)} now "
                            "(another working directory)")
    return problems
