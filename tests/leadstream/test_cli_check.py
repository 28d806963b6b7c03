"""`leadstream check`: exit codes and messages, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leadstream.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_accepts_the_example() -> None:
    """A valid config exits 0 and summarises what it declares."""
    res = _cli("check", "--config", "examples/marketing.toml")
    assert res.returncode == 0, res.stderr
    assert "examples/marketing.toml: OK" in res.stdout
    assert "hot_leads, pricing_interest, decision_makers" in res.stdout
    assert "lead_nurturing (6 steps)" in res.stdout and "privacy:            erasure on track 'Contact Deleted'" in res.stdout
    assert "note:" not in res.stdout


def test_check_says_when_a_config_has_no_rules(tmp_path: Path) -> None:
    """An empty file is a valid config, and check says what a run with it would (not) do."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    res = _cli("check", "--config", str(empty))
    assert res.returncode == 0
    assert "note: no scoring rules, segments, actions or workflows" in res.stdout


def test_check_rejects_with_path_and_nonzero_exit(tmp_path: Path) -> None:
    """Every problem is printed with file and key path; the exit code is non-zero."""
    bad = tmp_path / "marketing.toml"
    bad.write_text('[segments.hot_leads]\nall = [{ field = "stage", op = "eq", value = "sales_ready" }, '
                   '{ field = "score.default", op = "greather", value = 3 }]\n')
    res = _cli("check", "--config", str(bad))
    assert res.returncode == 2
    assert f"{bad}: segments.hot_leads.all[1].op: unknown operator 'greather' (expected one of eq, ne," in res.stderr
    assert "1 problem;" in res.stderr


def test_help_explains_commands() -> None:
    """--help lists the commands with a sentence each."""
    res = _cli("--help")
    assert res.returncode == 0
    listed = {line.split()[0] for line in res.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert {"check", "generate", "run", "segment", "demo"} <= listed
    for command in ("check", "generate", "run", "segment", "demo"):
        sub = _cli(command, "--help")
        assert sub.returncode == 0 and "options:" in sub.stdout and len(sub.stdout) > 200, command


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """`leadstream check ... | head -1`: the closed pipe ends the command quietly, as a shell would report it."""
    proc = subprocess.Popen([sys.executable, "-m", "leadstream.cli", "generate", "--events", "200000", "--out", "-"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"{")
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err


def test_version() -> None:
    """--version names the installed version."""
    from importlib.metadata import version

    res = _cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"leadstream {version('leadstream')}"
