"""Compiled and pure-Python modules give the same run, and a run says which it used."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from leadstream import native

from .conftest import ROOT, leadstream, run_into, tables

BUILT = native.status()[0]
needs_build = pytest.mark.skipif(not BUILT, reason=f"no matching compiled build: {native.status()[1]}")


@needs_build
def test_runs_import_the_compiled_modules_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """A built tree runs the compiled modules; LEADSTREAM_PURE=1 runs the sources."""
    assert "compiled" in leadstream("native").stdout
    monkeypatch.setenv(native.PURE_ENV, "1")
    assert leadstream("native").stdout.startswith("pure Python (LEADSTREAM_PURE is set)")


@needs_build
@pytest.mark.slow
def test_compiled_and_pure_runs_write_the_same_outputs(clickstream: Path, baseline: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline (compiled) and a pure-Python run give the same tables, trigger lines and dead letters."""
    monkeypatch.setenv(native.PURE_ENV, "1")
    res = run_into(tmp_path, [clickstream])
    assert "modules        pure Python (LEADSTREAM_PURE is set)" in res.stdout
    assert tables(tmp_path / "warehouse.duckdb") == tables(baseline / "warehouse.duckdb")
    # Each contact's triggers in the same order (shards interleave in the file by timing, which
    # differs between a compiled and a pure run).
    assert _per_contact(tmp_path / "triggers.jsonl") == _per_contact(baseline / "triggers.jsonl")
    # Byte for byte: a float that became an int (or back) on the way would show here.
    assert sorted((tmp_path / "triggers.jsonl").read_bytes().splitlines()) == sorted(
        (baseline / "triggers.jsonl").read_bytes().splitlines())
    assert (tmp_path / "dead_letters.jsonl").read_bytes() == (baseline / "dead_letters.jsonl").read_bytes()


def _per_contact(path: Path) -> dict[str, list[str]]:
    """Trigger ids per contact, in file order."""
    out: dict[str, list[str]] = {}
    for line in path.read_bytes().splitlines():
        if line.strip():
            t = orjson.loads(line)
            out.setdefault(t["contact_id"], []).append(t["trigger_id"])
    return out


def _fake_build(root: Path, tag: str | None = None) -> Path:
    """A source tree holding the compiled modules' sources and a manifest that matches them."""
    for module in native.MODULES:
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_bytes((ROOT / module).read_bytes())
    for package in native.PACKAGES:
        (root / ".native" / package).mkdir(parents=True)
    import json
    import sys

    manifest = {"cache_tag": tag or sys.implementation.cache_tag, "mypyc": "test", "sources": native.digests(root)}
    (root / ".native" / native.MANIFEST).write_text(json.dumps(manifest))
    return root


def test_a_matching_build_is_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources as they were at the build: the compiled modules are used."""
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    ok, why = native.status(_fake_build(tmp_path))
    assert ok and why.startswith(f"compiled ({len(native.MODULES)} modules")


def test_an_edited_source_turns_the_build_off_and_says_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One changed source is enough: runs fall back to the sources and name the file and the fix."""
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _fake_build(tmp_path)
    with (root / "engine/engine.py").open("a") as fh:
        fh.write("\n# edited\n")
    ok, why = native.status(root)
    assert not ok and why == "pure Python (engine/engine.py changed since the build: run `make native`)"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("other-python", "pure Python (compiled for cpython-99, running "),
        ("no-build", "pure Python (no compiled modules: run `make native`)"),
        ("pure-env", "pure Python (LEADSTREAM_PURE is set)"),
        ("bad-manifest", "pure Python (unreadable "),
        ("misplaced", "pure Python ("),
    ],
)
def test_a_build_that_does_not_fit_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str,
                                               expected: str) -> None:
    """Another interpreter's build, no build, the opt-out, a damaged manifest and modules built under
    other names (a copy of the sources inside another package) all run the sources."""
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _fake_build(tmp_path, tag="cpython-99" if setup == "other-python" else None)
    if setup == "no-build":
        (root / ".native" / native.MANIFEST).unlink()
    elif setup == "pure-env":
        monkeypatch.setenv(native.PURE_ENV, "1")
    elif setup == "bad-manifest":
        (root / ".native" / native.MANIFEST).write_text("{not json")
    elif setup == "misplaced":
        (root / ".native" / "engine").rmdir()
    ok, why = native.status(root)
    assert not ok and why.startswith(expected)
    if setup == "misplaced":
        assert "holds no engine/ modules: run `make native` in" in why


def _source_tree(root: Path) -> Path:
    """A copy of the engine and flow packages to build in."""
    import shutil

    for package in native.PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_a_failing_c_compiler_leaves_the_sources_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """No Python headers, a broken compiler: the build says so, exits 0 and leaves no build behind."""
    root = _source_tree(tmp_path)
    monkeypatch.setenv("CC", "false")
    assert native.build(root) == 0
    err = capsys.readouterr().err
    assert "native: the C build failed" in err and "runs as pure Python" in err
    assert not (root / ".native").exists() and native.status(root)[1].startswith("pure Python (no compiled modules")


def test_a_type_error_fails_the_build_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Code mypyc cannot compile is an error: compiled, a wrong annotation would fail at run time."""
    root = _source_tree(tmp_path)
    with (root / "engine/ids.py").open("a") as fh:
        fh.write("\n\ndef broken() -> int:\n    return 'not an int'\n")
    assert native.build(root) == 1
    err = capsys.readouterr().err
    assert "engine/ids.py" in err and "incompatible return value" in err.lower()
    assert "native: mypyc rejected the sources" in err
