"""Pathway peer: installs Pathway into its own venv (benchmarks/.venv-pathway) and runs pathway_job.py there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE.parent / ".venv-pathway"
PATHWAY_SPEC = "pathway==0.33.0"


def _python() -> Path:
    return VENV / "bin" / "python"


def installed() -> str | None:
    """Pathway's version in the peer venv, or None."""
    if not _python().exists():
        return None
    probe = subprocess.run([str(_python()), "-c", "import pathway; print(pathway.__version__)"],
                           capture_output=True, text=True, timeout=120, cwd=str(HERE))
    return probe.stdout.strip() or None if probe.returncode == 0 else None


def ensure(log, timeout_s: float) -> tuple[str | None, str]:
    """Create the venv and install Pathway if needed; return (version or None, note)."""
    have = installed()
    if have:
        return have, "cached venv"
    started = time.perf_counter()
    log(f"  installing {PATHWAY_SPEC} into {VENV.name} (once; cached afterwards)")
    try:
        if not _python().exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=300)
        proc = subprocess.run([str(_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               PATHWAY_SPEC], capture_output=True, text=True, timeout=timeout_s)
    except (subprocess.SubprocessError, OSError) as ex:
        return None, f"install failed: {ex!r}"
    if proc.returncode != 0:
        tail = [l for l in proc.stderr.splitlines() if not l.startswith("WARNING: Location")][-3:]
        return None, f"pip install {PATHWAY_SPEC} failed: {' | '.join(tail)}"
    have = installed()
    took = time.perf_counter() - started
    return have, (f"installed in {took:.0f} s" if have else "installed, but `import pathway` fails")


def run(path: Path, work: Path, timeout_s: float, threads: int = 1) -> dict[str, Any]:
    """Run the Pathway job on `path`; return its figures (or an error)."""
    out_csv = work / "pathway_scores.csv"
    times = work / "pathway_times.json"
    logf = work / "pathway.log"
    for p in (out_csv, times):
        p.unlink(missing_ok=True)
    env = dict(os.environ, PATHWAY_THREADS=str(threads), PATHWAY_PROCESSES="1")
    started = time.perf_counter()
    try:
        with logf.open("w") as fh:
            proc = subprocess.run([str(_python()), str(HERE / "pathway_job.py"), str(path), str(out_csv), str(times)],
                                  stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, cwd=str(work))
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout_s:.0f} s", "wall_s": time.perf_counter() - started}
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not times.exists():
        tail = [l for l in logf.read_text(errors="replace").splitlines() if "Parse error" not in l][-5:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "wall_s": wall}
    figures = json.loads(times.read_text())
    figures.update(wall_s=wall, threads=threads, scores_csv=str(out_csv))
    return figures
