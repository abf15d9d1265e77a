"""Collapsible sections in a CI job's log: GitLab's section markers, GitHub's workflow commands.

GitLab: `ESC[0Ksection_start:<unix time>:<name>[collapsed=true]\\rESC[0K<title>` ... `ESC[0Ksection_end:<unix
time>:<name>\\rESC[0K`. GitHub: `::group::<title>` ... `::endgroup::`. Neither nests here: opening a
section closes the one before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import IO

from conveyor.ci.environment import CIKind, detect

__all__ = ["Sections", "for_log", "github_end", "github_start", "gitlab_end", "gitlab_start"]

_CLEAR = "\x1b[0K"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def gitlab_start(name: str, title: str, at: int, *, collapsed: bool = True) -> str:
    """The line that opens a GitLab section (name: letters, digits, `_`, `.`, `-`)."""
    options = "[collapsed=true]" if collapsed else ""
    return f"{_CLEAR}section_start:{at}:{_name(name)}{options}\r{_CLEAR}{_one_line(title)}"


def gitlab_end(name: str, at: int) -> str:
    """The line that closes a GitLab section."""
    return f"{_CLEAR}section_end:{at}:{_name(name)}\r{_CLEAR}"


def github_start(title: str) -> str:
    """The line that opens a GitHub Actions log group."""
    return f"::group::{_one_line(title)}"


def github_end() -> str:
    """The line that closes a GitHub Actions log group."""
    return "::endgroup::"


def _name(name: str) -> str:
    return _UNSAFE_NAME.sub("_", name)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Sections:
    """Writes section markers for one CI system to a log, and remembers the open section."""

    def __init__(self, kind: CIKind, out: IO[str], clock: Callable[[], float] = time.time) -> None:
        self.kind = kind
        self.out = out
        self.clock = clock
        self.current: str | None = None

    def open(self, name: str, title: str) -> None:
        """Start a section (closing the open one): what follows folds under `title`."""
        self.close()
        line = gitlab_start(name, title, int(self.clock())) if self.kind == "gitlab" else github_start(title)
        self._write(line)
        self.current = name

    def close(self) -> None:
        """End the open section, if any."""
        if self.current is None:
            return
        line = gitlab_end(self.current, int(self.clock())) if self.kind == "gitlab" else github_end()
        self.current = None
        self._write(line)

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def for_log(out: IO[str], *, live: bool) -> Sections | None:
    """Sections for a plain (not live) log inside GitLab CI or GitHub Actions; None anywhere else."""
    if live:
        return None
    ci = detect()
    return Sections(ci.kind, out) if ci is not None else None
