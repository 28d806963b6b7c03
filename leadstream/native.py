"""The hot modules compiled with mypyc: built by `make`, used only while they match the sources.

The engine and the flow's per-event code are plain typed Python. Compiled by mypyc
(the compiler mypy and black are themselves built with), the same source runs about 1.3-1.4x
faster end to end, with no second implementation to keep in step. The build is an
accelerator, never a requirement:

- `leadstream native build` (run by `make`) compiles ``MODULES`` into ``.native/`` beside the
  sources, with a manifest of the sources' digests;
- ``activate()`` (called when the ``leadstream`` package is imported) puts the compiled
  modules ahead of the sources only if every digest still matches and the interpreter
  is the one they were built for. An edited source, a missing C compiler or
  ``LEADSTREAM_PURE=1`` all mean the pure-Python modules run, with the same results.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "manifest.json"
PURE_ENV = "LEADSTREAM_PURE"

# What runs per event or per record, and the config objects it reads. Cold code (SQL
# compilation, the CLI, sources and sinks, the warehouse writer, the clocks that see a
# tick per batch) stays interpreted, and so does the stages' Bytewax glue: compiled, it
# measured within the noise (1-2 % faster in 1 process, 5 % slower in one 2-process pair).
# The sources' per-line loop is compiled apart from them (flows/lines.py).
MODULES = (
    "engine/actions.py",
    "engine/buckets.py",
    "engine/conditions.py",
    "engine/contact.py",
    "engine/config.py",
    "engine/contacts.py",
    "engine/decay.py",
    "engine/decode.py",
    "engine/dedupe.py",
    "engine/engine.py",
    "engine/events.py",
    "engine/identity.py",
    "engine/ids.py",
    "engine/ordering.py",
    "engine/pickling.py",
    "engine/routing.py",
    "engine/store.py",
    "engine/timers.py",
    "engine/timeutil.py",
    "engine/triggers.py",
    "engine/workflows.py",
    "flows/lines.py",
    "flows/packets.py",
    "flows/router.py",
    "flows/rows.py",
)
PACKAGES = ("engine", "flows")

_active: list[str] | None = None


def digests(root: Path = ROOT) -> dict[str, str]:
    """SHA-256 of each compiled module's source, by path relative to the repository."""
    return {m: hashlib.sha256((root / m).read_bytes()).hexdigest() for m in MODULES}


def status(root: Path = ROOT, native_dir: Path | None = None) -> tuple[bool, str]:
    """(usable, why): whether the compiled modules in ``native_dir`` match ``root``'s sources."""
    native_dir = native_dir or root / ".native"
    if os.environ.get(PURE_ENV):
        return False, f"pure Python ({PURE_ENV} is set)"
    try:
        manifest = json.loads((native_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return False, "pure Python (no compiled modules: run `make native`)"
    except (OSError, ValueError) as ex:
        return False, f"pure Python (unreadable {native_dir / MANIFEST}: {ex}; run `make native`)"
    # A build whose modules mypyc named from another folder (a copy of the sources inside
    # another package, say) has a matching manifest but nothing where activate() looks.
    missing = [p for p in PACKAGES if not (native_dir / p).is_dir()]
    if missing:
        return False, f"pure Python ({native_dir} holds no {missing[0]}/ modules: run `make native` in {root})"
    if manifest.get("cache_tag") != sys.implementation.cache_tag:
        return False, f"pure Python (compiled for {manifest.get('cache_tag')}, running {sys.implementation.cache_tag})"
    try:
        current = digests(root)
    except OSError as ex:
        return False, f"pure Python (cannot read the sources: {ex})"
    stale = sorted(m for m, d in current.items() if manifest.get("sources", {}).get(m) != d)
    if stale:
        more = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
        return False, f"pure Python ({stale[0]}{more} changed since the build: run `make native`)"
    return True, f"compiled ({len(MODULES)} modules, mypyc {manifest.get('mypyc', '?')})"


def activate(root: Path = ROOT) -> list[str]:
    """Put the compiled modules ahead of the sources when they match; return their names.

    Must run before any of ``MODULES`` is imported; a package already holding an
    imported module of the list keeps running pure.
    """
    global _active
    if _active is not None:
        return _active
    _active = []
    ok, _ = status(root)
    if not ok:
        return _active
    names = [m[:-3].replace("/", ".") for m in MODULES]
    if any(name in sys.modules for name in names):
        return _active
    import importlib

    native_dir = root / ".native"
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        if Path(pkg.__file__ or "").resolve().parent != root / package:
            return _active  # another copy of the package: its sources are not the ones checked
    for package in PACKAGES:
        sys.modules[package].__path__.insert(0, str(native_dir / package))
    # mypyc puts the code of all modules in one shared library at the top of the build.
    sys.path.append(str(native_dir))
    _active = names
    return _active


def describe() -> str:
    """One line for run headers: whether this process runs the compiled modules, and why not."""
    if _active:
        return status()[1]
    ok, why = status()
    return why if not ok else "pure Python (imported before the compiled modules were put in place)"


def build(root: Path = ROOT, quiet: bool = False) -> int:
    """Compile ``MODULES`` into ``root/.native``; return a process exit code.

    No C compiler, no mypyc or a C build that fails (no Python headers, say) is not an
    error: the sources run as they are. A module mypyc rejects is, so the code stays
    compilable.
    """
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    cc = os.environ.get("CC", "cc").split()[0]
    if shutil.which(cc) is None:
        say(f"native: no C compiler ({cc}) found; leadstream runs as pure Python (install gcc for about 1.3x speed)")
        return 0
    try:
        from mypyc.build import mypycify
        from mypy.version import __version__ as mypy_version
    except ImportError:
        say("native: mypyc is not installed (pip install mypy); leadstream runs as pure Python")
        return 0
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    started = time.monotonic()
    sources = digests(root)
    work = Path(tempfile.mkdtemp(prefix=".native-", dir=root))
    log = work / "build.log"
    cwd = os.getcwd()
    failure = None
    rejected = False
    # The compiler's command lines and mypyc's notes go to a log, shown only on failure.
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as fh, open(log, "a", encoding="utf-8") as text:  # both append: one order
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        py_out, py_err = sys.stdout, sys.stderr  # mypyc prints through these, which may not be fds 1 and 2
        sys.stdout = sys.stderr = text
        try:
            os.chdir(root)  # mypycify names modules by their paths relative to the working directory
            extensions = mypycify(["--ignore-missing-imports", *MODULES], opt_level="3",
                                  target_dir=str(work / "build"), verbose=False)
            dist = Distribution({"name": "leadstream-native", "ext_modules": extensions})
            cmd = build_ext(dist)
            cmd.build_lib = str(work / "lib")
            cmd.build_temp = str(work / "tmp")
            cmd.parallel = os.cpu_count() or 1
            cmd.ensure_finalized()
            cmd.run()
        except SystemExit as ex:  # mypyc reports type errors and exits
            failure, rejected = f"mypyc rejected the sources (exit {ex.code})", True
        except Exception as ex:  # the C compiler failed
            failure = f"the C build failed ({type(ex).__name__}: {ex})"
        finally:
            text.flush()
            sys.stdout, sys.stderr = py_out, py_err
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.chdir(cwd)
    if failure is not None:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if "error" in ln.lower()]
        for line in lines[-30:]:
            say(line)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(root / ".native", ignore_errors=True)  # never leave a build that no longer matches
        if rejected:
            say(f"native: {failure}; fix the errors above (or run with {PURE_ENV}=1 meanwhile)")
            return 1
        say(f"native: {failure}; leadstream runs as pure Python (about 1.3x slower, same results)")
        return 0
    out = work / "lib"
    manifest = {"cache_tag": sys.implementation.cache_tag, "mypyc": mypy_version, "sources": sources}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    old = root / ".native-old"
    shutil.rmtree(old, ignore_errors=True)
    if (root / ".native").exists():
        (root / ".native").rename(old)
    out.rename(root / ".native")
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    say(f"native: compiled {len(MODULES)} modules with mypyc {mypy_version} in {time.monotonic() - started:.0f} s")
    return 0
