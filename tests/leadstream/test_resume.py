"""A recovery directory's run record: a resume with other shards, inputs or outputs is refused with what differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadstream.resume import RECORD, ResumeMismatch, check_and_record

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = {"--warehouse": "out/w.duckdb", "--triggers": "out/t.jsonl", "--dead-letter": "out/dead_letters.jsonl"}


@pytest.fixture()
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recovery directory whose run had 16 shards, input in/a.jsonl and OUTPUTS, started from tmp_path."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "rec"
    folder.mkdir()
    check_and_record(folder, False, 16, ("in/a.jsonl",), dict(OUTPUTS))
    return folder


@pytest.mark.parametrize(("shards", "inputs", "outputs", "said"), [
    (4, ("in/a.jsonl",), OUTPUTS, "it had 16 shards and this run has 4"),
    (16, ("in/a.jsonl",), {**OUTPUTS, "--triggers": "./out/t.jsonl"}, "--triggers was 'out/t.jsonl'"),
    (16, ("in/a.jsonl",), {**OUTPUTS, "--warehouse": "elsewhere/w.duckdb"}, "--warehouse was 'out/w.duckdb'"),
    (16, ("./in/a.jsonl",), OUTPUTS, "--input './in/a.jsonl' was given as 'in/a.jsonl'"),
    (16, ("in/b.jsonl",), OUTPUTS, "--input 'in/a.jsonl' was read by the saved run and is not given now"),
    (16, ("in/a.jsonl",), {**OUTPUTS, "--dead-letter": "out/dl2.jsonl"}, "--dead-letter was 'out/dead_letters.jsonl'"),
], ids=["shards", "output-spelt-otherwise", "output-elsewhere", "input-spelt-otherwise", "input-dropped",
        "dead-letters-elsewhere"])
def test_a_resume_that_differs_is_refused(recorded: Path, shards: int, inputs: tuple[str, ...],
                                          outputs: dict[str, str], said: str) -> None:
    """Each difference is named, with the directory the run was started from and what to do."""
    with pytest.raises(ResumeMismatch) as ex:
        check_and_record(recorded, True, shards, inputs, outputs)
    assert said in str(ex.value)
    assert f"the run was started from {recorded.parent}" in str(ex.value)
    assert "or start afresh with a new --recovery directory" in str(ex.value)


def test_the_same_relative_paths_from_another_directory_are_refused(recorded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths resolve elsewhere from another working directory: they would name other files."""
    other = recorded.parent / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    with pytest.raises(ResumeMismatch, match="another working directory"):
        check_and_record(recorded, True, 16, ("in/a.jsonl",), dict(OUTPUTS))


def test_a_resume_may_add_inputs_and_records_them(recorded: Path) -> None:
    """A new input is read on from the saved state; the record then knows it too."""
    check_and_record(recorded, True, 16, ("in/a.jsonl", "in/b.jsonl"), dict(OUTPUTS))
    record = json.loads((recorded / RECORD).read_text())
    assert [i["given"] for i in record["inputs"]] == ["in/a.jsonl", "in/b.jsonl"]
    assert record["inputs"][1]["absolute"] == os.path.abspath("in/b.jsonl")
    with pytest.raises(ResumeMismatch, match="'in//b.jsonl' was given as 'in/b.jsonl'"):
        check_and_record(recorded, True, 16, ("in//b.jsonl",), dict(OUTPUTS))


def test_a_directory_without_a_record_is_not_checked(tmp_path: Path) -> None:
    """Recovery directories written before records resume as they did, and are given none: written from a
    resume that then failed, it held that run's mistake, and the right command was refused after it."""
    for write in (False, True):
        check_and_record(tmp_path, True, 4, ("x.jsonl",), {"--triggers": "t.jsonl"}, write=write)
        assert not (tmp_path / RECORD).exists()


@pytest.mark.parametrize("text", ["{not json", "[]", '{"shards": 16}', "\udcff",
                                  '{"shards": 16, "cwd": "x", "inputs": [{"given": 3}], "outputs": {"--warehouse": 7}}',
                                  '{"shards": 16, "cwd": "x", "inputs": [], "outputs": []}'],
                         ids=["broken", "list", "partial", "binary", "wrong-entries", "outputs-a-list"])
def test_an_unreadable_record_is_refused_not_taken_for_none(recorded: Path, text: str) -> None:
    """A record that cannot be read stops the resume with what to do, and stays as it was."""
    (recorded / RECORD).write_text(text, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ResumeMismatch, match=f"{RECORD} cannot be read .*Restore the file, delete it to resume"):
        check_and_record(recorded, True, 16, ("in/b.jsonl",), dict(OUTPUTS))
    assert (recorded / RECORD).read_text(encoding="utf-8", errors="surrogateescape") == text


@pytest.mark.slow
def test_run_refuses_a_resume_with_other_shards_and_resumes_with_the_same(tmp_path: Path) -> None:
    """End to end: exit status 2 and the difference on stderr; the same command then resumes."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "page", "anonymousId": "a-1", "messageId": "m-1", "timestamp": "2026-01-05T08:00:00Z"}\n')
    argv = [sys.executable, "-m", "leadstream.cli", "run", "--config", str(ROOT / "examples" / "marketing.toml"),
            "--input", "events.jsonl", "--warehouse", "out/w.duckdb", "--triggers", "out/t.jsonl",
            "--recovery", "rec", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, *extra], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert run().returncode == 0
    refused = run("--shards", "4")
    assert refused.returncode == 2
    assert "it had 16 shards and this run has 4" in refused.stderr
    again = run()
    assert again.returncode == 0, again.stderr
