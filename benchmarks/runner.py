"""Run `leadstream ARGS...` in this process and record what the harness needs.

    python -m benchmarks.runner STATS.json [--pyinstrument OUT.txt] -- run --config ... --input ...

Records the wall time of the command itself (without interpreter start-up), the
process's peak RSS (ru_maxrss), and the duration of every warehouse publication: the
writer already computes it (`publish_seconds` in its snapshot summary), so this wraps
`WarehouseLogic._collect`, which hands those summaries back to the worker, to keep the
figures and how long the worker waited for them. Nothing in engine/ or flows/ changes.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_kb() -> int:
    """This process's RSS high-water mark.

    VmHWM, not ru_maxrss: on Linux ru_maxrss survives fork+exec, so a child started by a
    big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of this process plus its children that have exited.

    With ``--processes N`` the cluster's processes are this process's children and do
    the work, so counting this process alone reported well under a second for them.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + kids.ru_utime, own.ru_stime + kids.ru_stime


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    own, ls_args = argv[:sep], argv[sep + 1:]
    stats_path = own[0]
    profile_out = own[own.index("--pyinstrument") + 1] if "--pyinstrument" in own else None
    publishes: list[dict] = []
    t0 = [time.perf_counter()]
    # First, as the `leadstream` command does: importing it puts the compiled modules in
    # place, which it cannot do once flows/ or engine/ modules are loaded.
    from leadstream import native

    try:
        from flows import warehouse

        original = warehouse.WarehouseLogic._collect
        original_cancel = warehouse.WarehouseLogic._cancel_build
        carried = [0.0]  # time spent giving up a build, counted with the next one collected

        def timed_collect(self, wait):
            # Snapshots are built on a background thread; the worker only waits for one
            # at the end of input. Record each build's time and how long the worker waited.
            started = time.perf_counter()
            summaries = original(self, wait)
            stalled = time.perf_counter() - started
            if summaries:
                stalled, carried[0] = stalled + carried[0], 0.0
            for summary in summaries:
                publishes.append({"at_s": round(time.perf_counter() - t0[0], 3),
                                  "seconds": summary.get("publish_seconds"),
                                  "stall_seconds": round(stalled, 4),
                                  "snapshot_id": summary.get("snapshot_id"),
                                  "lines_read": summary.get("lines_read"),
                                  "contacts": summary.get("contacts")})
            return summaries

        def timed_cancel(self):
            # The end of input gives up a build under way (WarehouseLogic._cancel_build).
            started = time.perf_counter()
            summaries = original_cancel(self)
            if not summaries:
                carried[0] += time.perf_counter() - started
            return summaries

        warehouse.WarehouseLogic._collect = timed_collect  # type: ignore[method-assign]
        warehouse.WarehouseLogic._cancel_build = timed_cancel  # type: ignore[method-assign]
        patched: bool | str = True
    except Exception as ex:  # the writer was refactored: run without publish timings
        patched = f"not patched: {ex!r}"

    from leadstream.cli import main as cli_main

    profiler = None
    if profile_out:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002)
        profiler.start()
    started = t0[0] = time.perf_counter()
    code = 1
    error = None
    try:
        code = cli_main(ls_args)
    except SystemExit as ex:
        code = ex.code if isinstance(ex.code, int) else 1
    except BaseException as ex:  # report, never hide
        error = repr(ex)
        code = 1
    elapsed = time.perf_counter() - started
    if profiler is not None and profile_out is not None:
        profiler.stop()
        with open(profile_out, "w") as fh:
            fh.write(profiler.output_text(unicode=False, color=False, show_all=False))
        with open(profile_out + ".json", "w") as fh:
            from pyinstrument.renderers import JSONRenderer

            fh.write(profiler.output(JSONRenderer()))
    cpu_user, cpu_sys = cpu_seconds()
    try:
        from flows.progress import PROGRESS

        # The worker's time by step (one process only: children of --processes keep their own).
        step_seconds = {k: round(v, 3) for k, v in PROGRESS.steps().items()}
    except Exception:  # the progress module was refactored: run without the split
        step_seconds = {}
    with open(stats_path, "w") as fh:
        json.dump({"exit_code": code, "error": error, "elapsed_s": elapsed, "ru_maxrss_kb": peak_rss_kb(),
                   "cpu_user_s": cpu_user, "cpu_sys_s": cpu_sys, "cpu_with_children": True,
                   "publish_patched": patched, "publishes": publishes, "modules": native.describe(),
                   "step_seconds": step_seconds}, fh)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
