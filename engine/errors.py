"""Config errors that name the file, the key path and what was expected."""

from __future__ import annotations

from difflib import get_close_matches
from typing import Iterable

from .timeutil import parse_duration_ms


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of ``choices`` to a mistyped ``word``, or nothing."""
    close = get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    """Collects config mistakes so that one check reports all of them, not just the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Record a mistake at a key path such as ``segments.hot_leads.all[1].op``."""
        self.items.append(f"{self.file}: {path}: {message}")

    def duration(self, value: object, path: str, positive: bool = False,
                 example: str = "'30m' or '7d'") -> int | None:
        """A duration in ms, or None after recording why ``value`` at ``path`` is not one (or not above zero)."""
        try:
            ms = parse_duration_ms(value)
        except ValueError as ex:
            self.add(path, str(ex))
            return None
        if positive and ms <= 0:
            self.add(path, f"expected a positive duration like {example}, got {value!r}")
            return None
        return ms

    def raise_if_any(self) -> None:
        """Raise ConfigError when anything was recorded."""
        if self.items:
            raise ConfigError(self.items)
