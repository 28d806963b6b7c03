"""The run history keeps every complete full run's judged figures, and shows them side by side."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import history
from benchmarks.report import TARGET_KEYS, markdown, targets
from benchmarks.run import recent_runs


def _run(eps: float, **extra: Any) -> dict[str, Any]:
    return {"events_per_s": eps, "lines_read": 1_000_000, "elapsed_s": 1e6 / eps, **extra}


def _results(date: str = "2026-12-07 17:41", commit: str = "5ef13b7", rate: float = 20_000.0,
             mode: str = "full", dirty: int = 0) -> dict[str, Any]:
    machine = {"date_utc": date, "cpu": "test cpu", "cores": 2, "ram_gib": 1, "os": "Linux", "python": "3.11",
               "packages": {}, "git": {"commit": commit, "uncommitted_changes": dirty}}
    runs = {
        "parse": {"events_per_s": 500_000.0},
        "null_keyed": {"events_per_s": 150_000.0},
        "standard": _run(rate),
        "standard_2p": _run(1.6 * rate),
        "standard_again": _run(rate),
        "standard_2p_again": _run(1.6 * rate),
        "peer_semantics": _run(45_000.0),
        "pathway": {"events_per_s": 30_000.0},
        "duckdb": {"events_per_s": 600_000.0},
        "scale": _run(0.9 * rate, contacts=1_000_000, rss_bytes_per_contact=1100.0,
                      marginal_rss_bytes_per_contact=1024.0),
        "latency": {"p50_s": 5.1, "p99_s": 5.35},
        "pathway_broken": {"error": "no venv"},
    }
    return {"runs": runs, "machine": machine, "mode": mode, "total_s": 590.04, "budget_s": 870.0,
            "skipped": {}, "workloads": {}}


def test_every_target_carries_its_key_and_judged_value() -> None:
    """The history reads numbers, not the report's sentences."""
    T = targets(_results())
    assert [t["key"] for t in T] == list(TARGET_KEYS)
    values = {t["key"]: t["value"] for t in T}
    assert values["rate_1p"] == 20_000.0
    assert values["parse_share"] == pytest.approx(0.04)
    assert values["ratio_2p"] == pytest.approx(1.6)
    assert values["x_pathway"] == pytest.approx(1.5)
    assert values["duckdb_x"] == pytest.approx(600 / 45)
    assert values["scale_speed"] == pytest.approx(0.9)
    assert values["scale_kb"] == pytest.approx(1.0)
    assert values["latency_p99"] == 5.35


def test_a_target_not_measured_has_no_value() -> None:
    R = _results()
    del R["runs"]["latency"], R["runs"]["pathway"]
    T = {t["key"]: t for t in targets(R)}
    assert T["latency_p99"]["value"] is None and T["latency_p99"]["status"] == "not measured"
    assert T["x_pathway"]["value"] is None


def test_row_of_keeps_the_run_identity_rates_and_judgements() -> None:
    row = history.row_of(_results(dirty=2))
    assert (row["date_utc"], row["commit"], row["uncommitted_changes"], row["mode"]) == ("2026-12-07 17:41", "5ef13b7", 2,
                                                                                          "full")
    assert row["harness_s"] == 590.0
    assert row["events_per_s"]["standard"] == 20_000.0
    assert "pathway_broken" not in row["events_per_s"]
    assert row["targets"]["rate_1p"] == {"value": 20_000.0, "status": "MISS"}
    assert row["targets"]["ratio_2p"]["status"] == "pass"
    assert json.loads(json.dumps(row)) == row  # one JSON line


def test_record_replaces_the_same_run_and_keeps_date_order(tmp_path: Path) -> None:
    path = tmp_path / "results" / history.HISTORY
    history.record(_results("2026-12-07 17:41", "bbb", rate=20_000.0), path)
    history.record(_results("2026-12-07 15:53", "aaa", rate=22_000.0), path)
    rows = history.record(_results("2026-12-07 17:41", "bbb", rate=21_000.0), path)  # re-rendered (--patch-latest)
    assert [(r["date_utc"], r["commit"]) for r in rows] == [("2026-12-07 15:53", "aaa"), ("2026-12-07 17:41", "bbb")]
    assert rows[1]["events_per_s"]["standard"] == 21_000.0
    assert history.load(path) == rows
    assert len(path.read_text().splitlines()) == 2


def test_a_damaged_history_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / history.HISTORY
    path.write_text(json.dumps(history.row_of(_results())) + "\n{not json\n")
    with pytest.raises(ValueError, match=rf"{history.HISTORY}: line 2 is not JSON.*--backfill"):
        history.load(path)


def test_table_shows_newest_first_with_misses_bold() -> None:
    rows = [history.row_of(_results("2026-12-07 15:53", "aaa", rate=22_000.0)),
            history.row_of(_results("2026-12-07 17:41", "bbb", rate=20_000.0, dirty=1))]
    lines = history.table(rows).splitlines()
    assert lines[0].startswith("| date (UTC) | commit | CPU | standard, 1 process | 2 processes |")
    assert lines[2].startswith("| 2026-12-07 17:41 | bbb +1 | test cpu | **20.0k** | 1.60x | **1.50x** | **13.3x** | 90% | 1.00 |"
                               " 5.35 s | 500k | 150k |")
    assert lines[2].endswith("| 4 of 8 |")  # 2 processes, scale speed and memory, latency
    assert lines[3].startswith("| 2026-12-07 15:53 | aaa | test cpu | **22.0k** |")
    assert history.table(rows, last=1).count("\n") == 3


@pytest.mark.parametrize(("cpu", "shown"), [("Intel(R) Xeon(R) Processor", "Intel Xeon"), ("AMD EPYC", "AMD EPYC"),
                                            (None, "?")])
def test_table_names_the_cpu_without_trademarks(cpu: str | None, shown: str) -> None:
    R = _results()
    R["machine"]["cpu"] = cpu
    assert history.table([history.row_of(R)]).splitlines()[2].split(" | ")[2] == shown


def test_table_marks_what_a_run_did_not_measure() -> None:
    R = _results()
    del R["runs"]["latency"]
    line = history.table([history.row_of(R)]).splitlines()[2]
    assert line.split(" | ")[9] == "-"
    assert history.table([]) == "No full run recorded yet.\n"


def test_recent_runs_records_complete_full_runs_only(tmp_path: Path) -> None:
    text = recent_runs(_results("2026-12-07 15:53", "aaa"), tmp_path, complete=True)
    assert "| 2026-12-07 15:53 | aaa |" in text
    quick = _results("2026-12-07 16:00", "ccc", mode="quick")
    text = recent_runs(quick, tmp_path, complete=False)
    assert "ccc" not in text and "aaa" in text  # shown beside, never recorded
    assert len(history.load(tmp_path / history.HISTORY)) == 1


def test_recent_runs_survives_a_damaged_history(tmp_path: Path) -> None:
    (tmp_path / history.HISTORY).write_text("{broken\n")
    assert recent_runs(_results(), tmp_path, complete=True) == ""
    assert (tmp_path / history.HISTORY).read_text() == "{broken\n"  # left for the user to repair


def test_latest_md_shows_the_recent_runs_only_when_given() -> None:
    # The committed result: every section of the report has its data.
    R = json.loads((Path(history.__file__).parent / "results" / "LATEST.json").read_text())
    R["targets"] = targets(R)
    assert "## Recent runs" not in markdown(R)
    row = history.row_of(R)
    text = markdown(R, history.table([row]))
    assert "## Recent runs" in text
    assert f"| {row['date_utc']} | {row['commit']} |" in text.split("## Recent runs")[1]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_backfill_reads_every_committed_full_run(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    latest = repo / "benchmarks" / "results" / "LATEST.json"
    latest.parent.mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "bench@example.org")
    _git(repo, "config", "user.name", "bench")
    for date, commit, mode in (("2026-11-23 08:02", "aaa", "full"), ("2026-11-23 09:00", "qqq", "quick"),
                               ("2026-11-24 15:40", "bbb", "full")):
        latest.write_text(json.dumps(_results(date, commit, mode=mode)))
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", f"bench {date}")
    rows = history.from_git(repo)
    assert sorted(r["commit"] for r in rows) == ["aaa", "bbb"]
    with pytest.raises(RuntimeError, match="cannot read the git history"):
        history.from_git(tmp_path / "not-a-repo")


def test_cli_prints_the_table_and_reports_a_damaged_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history.record(_results(), tmp_path / history.HISTORY)
    assert history.main(["--results", str(tmp_path), "--last", "5"]) == 0
    assert "| 2026-12-07 17:41 | 5ef13b7 |" in capsys.readouterr().out
    (tmp_path / history.HISTORY).write_text("nope\n")
    assert history.main(["--results", str(tmp_path)]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err


def test_changes_give_each_target_before_and_after_and_name_flips() -> None:
    before = history.row_of(_results("2026-12-07 17:41", "aaa", rate=20_000.0))
    R = _results("2026-12-07 18:39", "bbb", rate=22_000.0)
    R["runs"]["standard_2p_again"] = _run(22_000.0)  # the second pair: 1.0x
    del R["runs"]["latency"]
    lines = history.changes(before, history.row_of(R))
    assert lines[0].startswith("against the previous full run (2026-12-07 17:41, aaa; parse limit 500k then 500k/s")
    assert "  standard, 1 process: 20.0k -> 22.0k" in lines
    assert "  2 processes: 1.60x -> 1.30x  (pass -> MISS)" in lines
    assert "  p99 latency: 5.35 s -> -  (pass -> not measured)" in lines
    assert not any("parse_share" in line for line in lines)


def test_a_complete_run_prints_how_it_moved_since_the_previous_one(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.run import log_changes

    history.record(_results("2026-12-07 17:41", "aaa", rate=20_000.0), tmp_path / history.HISTORY)
    R = _results("2026-12-07 18:39", "bbb", rate=22_000.0)
    log_changes(R, tmp_path)  # before it is recorded: nothing newer than itself counts as previous
    history.record(R, tmp_path / history.HISTORY)
    log_changes(R, tmp_path)
    out = capsys.readouterr()
    text = out.out + out.err
    assert text.count("against the previous full run (2026-12-07 17:41, aaa") == 2
    assert "standard, 1 process: 20.0k -> 22.0k" in text


def test_update_readme_writes_between_the_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{history.README_START}\nold table\n{history.README_END}\nafter\n")
    rows = [history.row_of(_results())]
    assert history.update_readme(readme, rows) is True
    text = readme.read_text()
    assert text.startswith(f"# x\n\nbefore\n{history.README_START}\n| date (UTC) |")
    assert text.endswith(f"| 4 of 8 |\n{history.README_END}\nafter\n")
    assert history.readme_table(text) == history.table(rows)
    assert history.update_readme(readme, rows) is False  # nothing new: the file is left alone


def test_a_readme_without_markers_says_what_to_add(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    with pytest.raises(ValueError, match=r"README.md has no run-history table: put the lines"):
        history.update_readme(readme, [])


def test_the_readme_shows_the_committed_history() -> None:
    """The README's table is the committed history's: after a bench, `--update-readme` (make bench does it)."""
    rows = history.load(history.README.parent / "benchmarks" / "results" / history.HISTORY)
    assert rows, "benchmarks/results/history.jsonl is missing or empty"
    assert history.readme_table(history.README.read_text()) == history.table(rows), (
        "README.md's run history differs from benchmarks/results/history.jsonl: "
        "run `python -m benchmarks.history --update-readme`")


@pytest.mark.parametrize("markers", [True, False], ids=["readme_updated", "readme_without_markers"])
def test_a_run_into_the_committed_results_updates_the_readme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], markers: bool) -> None:
    """The committed results folder also rewrites README's table; a README without it still keeps the run."""
    from benchmarks import run

    readme = tmp_path / "README.md"
    readme.write_text(f"{history.README_START}\n{history.README_END}\n" if markers else "# no table\n")
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(history, "README", readme)
    text = recent_runs(_results(), tmp_path, complete=True)
    assert "| 2026-12-07 17:41 | 5ef13b7 |" in text
    assert len(history.load(tmp_path / history.HISTORY)) == 1
    if markers:
        assert history.readme_table(readme.read_text()) == text
    else:
        assert readme.read_text() == "# no table\n"
        assert "README.md not updated:" in capsys.readouterr().out
