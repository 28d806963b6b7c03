"""The runner records the CPU of everything the command ran, cluster processes included."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.runner import cpu_seconds

_BURN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"


def test_cpu_seconds_count_children_that_exited() -> None:
    """`--processes N` does its work in child processes; their CPU must show once they exit."""
    user_before, sys_before = cpu_seconds()
    subprocess.run([sys.executable, "-c", _BURN], check=True)
    user_after, sys_after = cpu_seconds()
    assert (user_after + sys_after) - (user_before + sys_before) >= 0.35
