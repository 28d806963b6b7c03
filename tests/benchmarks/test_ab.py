"""The A/B comparison: exported revisions, paired rounds, output checks and an honest verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from benchmarks import ab
from leadstream.generate import GenerateOptions, write_events

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "marketing.toml"


@pytest.fixture(scope="module")
def small_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,500-line clickstream with the generator's malformed lines and duplicates."""
    path = tmp_path_factory.mktemp("ab-data") / "events.jsonl"
    with path.open("wb") as fh:
        write_events(GenerateOptions(events=1_500, contacts=150, seed=5), fh)
    return path


@pytest.fixture(scope="module")
def two_runs(small_input: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same input run twice into separate folders, by the real CLI."""
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(f"ab-{name}")
        subprocess.run([sys.executable, *ab._run_args(CONFIG, small_input, out)], cwd=ROOT, check=True,
                       capture_output=True)
        outs.append(out)
    return outs[0], outs[1]


def _side(label: str, cpu: list[float], instructions: int | None = None) -> ab.Side:
    side = ab.Side(label, label, ROOT, cpu=cpu, wall=[c + 0.1 for c in cpu])
    side.instructions = instructions
    return side


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([10.0] * 6, [10.1, 9.9, 10.2, 10.0, 9.8, 10.3], "within the noise of A's (+0.5 %, B faster in 2 of 6 rounds"),
        ([10.0] * 6, [9.0, 9.2, 8.9, 9.1, 9.3, 8.8],
         "B takes 9.5 % less CPU time than A (median of paired rounds; B faster in 6 of 6)"),
        ([10.0] * 6, [11.0, 11.5, 10.9, 9.9, 11.2, 10.8], "B takes 9.5 % more CPU time than A"),
        ([10.0, 10.0], [9.0, 11.4], "B against A: +2.0 % of CPU time over only 2 rounds, too few to tell from the "
                                    "noise (use --rounds 12)"),
    ],
)
def test_the_verdict_goes_by_paired_rounds_and_names_the_noise(a: list[float], b: list[float], expected: str) -> None:
    """A change under the A/A noise is called noise; above it, its size and direction; a few rounds, too few."""
    s = ab.summary(_side("A", a), _side("B", b))
    assert expected in ab.verdict(s)
    assert s["rounds"] == len(a)


def test_instructions_are_compared_when_both_sides_counted_them() -> None:
    """Exact counts go into the summary and the report, as a change in percent."""
    a, b = _side("A", [1.0, 1.0], 4_000_000), _side("B", [1.0, 1.0], 3_800_000)
    s = ab.summary(a, b)
    assert s["instructions_change_pct"] == pytest.approx(-5.0)
    text = ab.report(a, b, s, [], {"A": "compiled", "B": "compiled"})
    assert "instructions in the stage functions: A 4,000,000, B 3,800,000 (-5.00 %)" in text
    assert text.endswith("outputs: identical (triggers, dead letters, warehouse tables)")
    assert "instructions_change_pct" not in ab.summary(_side("A", [1.0]), _side("B", [1.0]))


def test_identical_runs_have_no_differences(two_runs: tuple[Path, Path]) -> None:
    """Two runs of one input agree on triggers, dead letters and every table but `snapshots`."""
    a, b = two_runs
    assert (a / "triggers.jsonl").stat().st_size > 0
    assert ab.differences(a, b) == []


def test_a_changed_trigger_and_a_changed_table_are_reported(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    """One trigger line and one contact row fewer on B's side: both named, with counts, views included."""
    import shutil

    a, b0 = two_runs
    b = tmp_path / "b"
    shutil.copytree(b0, b)
    lines = (b / "triggers.jsonl").read_bytes().splitlines()
    (b / "triggers.jsonl").write_bytes(b"\n".join(lines[1:]) + b"\n")
    con = duckdb.connect(str(b / "warehouse.duckdb"))
    contacts = con.execute("SELECT count(*) FROM contacts").fetchone()[0]
    con.execute("DELETE FROM contacts WHERE contact_id = (SELECT min(contact_id) FROM contacts)")
    con.close()
    found = ab.differences(a, b)
    assert found[0] == f"triggers.jsonl: {len(lines):,} against {len(lines) - 1:,} lines, 1 not on both sides"
    assert f"table contacts: {contacts:,} against {contacts - 1:,} rows, 1 not on both sides" in found
    # Views over contacts (what dashboards read) differ with it; nothing else does.
    assert all(d.startswith("table contact") for d in found[1:])


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="the sources are not a git checkout: no revision to export")
def test_a_revision_is_exported_once_and_the_working_tree_is_used_as_it_is(tmp_path: Path) -> None:
    """`.` is this checkout; a revision becomes a cached export of its files, outside the repository."""
    assert ab.checkout(".") == ROOT
    tree = ab.checkout("HEAD", tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tree == tmp_path / head[:12]
    assert (tree / ".exported").read_text().strip() == head
    assert (tree / "engine" / "engine.py").read_bytes() == subprocess.run(
        ["git", "show", "HEAD:engine/engine.py"], cwd=ROOT, capture_output=True, check=True).stdout
    (tree / "marker").write_text("kept")
    assert ab.checkout("HEAD", tmp_path) == tree and (tree / "marker").exists()
    with pytest.raises(ab.AbError, match="git rev-parse --verify no-such-revision"):
        ab.checkout("no-such-revision", tmp_path)


def test_a_whole_comparison_runs_both_sides_and_reports(small_input: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The working tree against itself, as Python sources: a warm-up and two counted rounds, identical outputs."""
    monkeypatch.setattr(ab, "WORK", tmp_path)
    assert ab.main([".", ".", "--input", str(small_input), "--rounds", "2", "--pure"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "warm-up round done (not counted)" in captured.err and "  round 2: A " in captured.err
    assert out.startswith("A = . (pure Python (LEADSTREAM_PURE is set))\nB = . (pure Python (LEADSTREAM_PURE is set))")
    rounds = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rounds) == 2 and all(len(line.split()) == 5 for line in rounds)
    assert "outputs: identical" in out and "too few to tell from the noise" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "--lines and --rounds must be above zero, got 100000 and 0"),
        (["--pure", "--instructions"], "--instructions counts the compiled stage functions; drop --pure"),
        (["--config", "no-such.toml"], "no rules file at no-such.toml"),
        (["--input", "no-such.jsonl"], "no input file at no-such.jsonl"),
    ],
)
def test_usage_mistakes_exit_2_with_the_reason(args: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Wrong options stop before anything runs, and say what was wrong."""
    assert ab.main([".", ".", *args]) == 2
    assert capsys.readouterr().err.strip() == f"benchmarks.ab: {message}"


def test_counting_instructions_without_valgrind_says_what_to_install(small_input: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No valgrind on the machine: a clear error before anything runs."""
    monkeypatch.setattr(ab.shutil, "which", lambda name: None)
    with pytest.raises(ab.AbError, match=r"--instructions needs valgrind \(apt-get install valgrind\)"):
        ab.count_instructions(_side("A", []), CONFIG, small_input, tmp_path)
