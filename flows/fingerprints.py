"""Telling a followed directory's files apart by their content, not their names: what survives rotation.

A file is known by a hash of its first line, as log shippers such as Vector know theirs
by default. A rotation that renames a file, or a compressed copy of it, keeps that line,
so neither is read a second time; a file recreated under an old name starts with a new
line, so it is read, whatever its name sorts as.
"""

from __future__ import annotations

import gzip
import os
import zlib
from hashlib import blake2b

from .lines import MAX_LINE_BYTES


def of_line(line: bytes, dev: int, ino: int) -> str:
    """The fingerprint of a file whose first line, without its ending, is ``line`` (at most MAX_LINE_BYTES)."""
    if not line.strip():
        # A blank first line tells files apart no better than a name: the file's identity does.
        return f"inode:{dev}:{ino}"
    return blake2b(line, digest_size=10).hexdigest()


def read(path: str, st: os.stat_result | None = None) -> str | None:
    """The fingerprint of the file at ``path`` (``st`` its stat, if known); None while it has no complete first line."""
    try:
        st = st or os.stat(path)
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as fh:
            first: bytes = fh.readline(MAX_LINE_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
    if first.endswith(b"\n"):
        return of_line(first.rstrip(b"\r\n"), st.st_dev, st.st_ino)
    if len(first) == MAX_LINE_BYTES:
        return of_line(first, st.st_dev, st.st_ino)  # a first line that long is cut to this much when read
    return None


class Fingerprints:
    """The fingerprints of a directory's files, read once per file and kept while the file only grows."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, int, int, str]] = {}  # name -> (dev, inode, size then, fingerprint)

    def of(self, path: str) -> str | None:
        """The file's fingerprint, or None while it has no complete first line."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        known = self._known.get(path)
        if known is not None and known[:2] == (st.st_dev, st.st_ino) and st.st_size >= known[2]:
            return known[3]
        fingerprint = read(path, st)
        if fingerprint is not None:
            self._known[path] = (st.st_dev, st.st_ino, st.st_size, fingerprint)
        return fingerprint

    def forget(self, path: str) -> None:
        """Read the file's fingerprint afresh next time: it was truncated, perhaps written past its old size again."""
        self._known.pop(path, None)
