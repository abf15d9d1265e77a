"""Reading what a host told us: its current release, the releases on disk, its journal.

A host script says things in marker lines, `@@conveyor MARK key=value`, where MARK is the one the controller
gave that command (engine/commands.py). Only lines whose MARK is genuine count: whatever else a host prints
(a restart's output, a log it echoes, a file name) is output, never a step or a fact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.engine.commands import genuine

if TYPE_CHECKING:
    from conveyor.transport.base import Completed

MARK = "@@conveyor "
_PID = re.compile(r"@@conveyor pid=\d+ \d+")  # the transport's (a script's first line)


@dataclass(frozen=True)
class Probe:
    """A host's own account of itself."""

    current: str | None
    has_release: bool
    releases: tuple[str, ...]
    journal: tuple[dict[str, Any], ...] = field(default=())
    zstd: bool = False  # whether the host can decompress zstd tarballs
    components: tuple[str, ...] = ()  # the `component=` markers' bodies, read by stack.read_components

    def rollback_target(self) -> str | None:
        """The release to go back to from `current`: what ran before `current` was last deployed.

        Walking the journal (not the release names) makes a second rollback go further back rather than
        forth again, and ignores releases that were only ever rolled back to.
        """
        if self.current is None:
            return None
        for entry in reversed(self.journal):
            if entry.get("release") == self.current and entry.get("kind") == "deploy":
                previous = entry.get("previous")
                if previous == self.current:
                    continue  # a re-run of a deploy that was already current: look further back
                if isinstance(previous, str) and previous in self.releases:
                    return previous
                break
        older = sorted(r for r in self.releases if r < self.current)
        return older[-1] if older else None

    def ready(self, release: str) -> bool:
        """Whether `release` is current and its last activation got through its restart."""
        if self.current != release:
            return False
        for entry in reversed(self.journal):
            if entry.get("release") == release:
                return bool(entry.get("event") == "ready")
        return False


def output_lines(output: str) -> list[str]:
    """A script's output cut at newlines only, as its markers are printed: a carriage return (or any other
    character str.splitlines() also breaks at) that a host command prints cannot start a line of its own."""
    cut = output.split("\n")
    return cut[:-1] if cut and cut[-1] == "" else cut


def marker(line: str) -> str | None:
    """What a genuine marker line says (`step=switch`), or None for any other line."""
    if not line.startswith(MARK):
        return None
    mark, _, body = line[len(MARK):].partition(" ")
    return body if genuine(mark) else None


def markers(output: str) -> Iterator[tuple[str, str]]:
    """(key, value) of each genuine marker in a script's output, in order (`journal` has an empty value)."""
    for line in output_lines(output):
        body = marker(line)
        if body is not None:
            key, _, value = body.partition("=")
            yield key, value


_JOINS_TRIED = 64  # where a joined line's entry may start: bounded, whatever a host prints


def journal_entry(line: str) -> dict[str, Any] | None:
    """One journal line's entry, or None. Entries are appended without first reading the journal's last byte
    (that costs each host a process per switch), so a line its writer died in the middle of has the next entry
    joined to it: that entry is the first object, from a `{"` of the line on, that parses to the line's end.
    The torn part cannot be where it starts: whatever it left open (an object, a string) the entry after it does
    not close. The torn part alone is no entry."""
    starts = [0]
    while len(starts) < _JOINS_TRIED and (found := line.find('{"', starts[-1] + 1)) > 0:
        starts.append(found)
    for start in starts:
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        return entry if isinstance(entry, dict) else None
    return None


def parse_probe(output: str) -> Probe:
    """Parse the probe script's output."""
    values: dict[str, str] = {}
    releases: list[str] = []
    components: list[str] = []
    journal: list[dict[str, Any]] = []
    in_journal = False
    for line in output_lines(output):
        if in_journal:
            entry = journal_entry(line)
            if entry is not None:
                journal.append(entry)
            continue
        body = marker(line)
        if body is None:
            continue
        if body == "journal":
            in_journal = True
        elif body.startswith("release="):
            releases.append(body[len("release="):])
        elif body.startswith("component="):
            components.append(body[len("component="):])
        elif "=" in body:
            key, _, value = body.partition("=")
            values[key] = value
    return Probe(
        current=values.get("current") or None,
        has_release=values.get("has_release") == "yes",
        releases=tuple(sorted(releases)),
        journal=tuple(journal),
        zstd=values.get("zstd") == "yes",
        components=tuple(components),
    )


def last_step(output: str) -> str | None:
    """The last step a host script announced."""
    step = None
    for key, value in markers(output):
        if key == "step":
            step = value
    return step


def current_at_exit(output: str) -> str | None:
    """The release `current` pointed at when an activate script ended ("" for none), read back by the
    script itself; None when it did not get to say (it was killed)."""
    said = None
    for key, value in markers(output):
        if key == "current":
            said = value
    return said


def tail(output: str, lines: int = 20) -> str:
    """The last lines of a script's output, without our markers (a forged one stays: it is output)."""
    kept = [line for line in output_lines(output) if marker(line) is None and not _PID.fullmatch(line)]
    return "\n".join(kept[-lines:])


def why(step: str, done: Completed) -> str:
    """A failed step in one line: it timed out, or its exit code and the last line it printed."""
    if done.timed_out:
        return f"{step} timed out"
    lines = tail(done.output, 1)
    return f"{step} failed with exit {done.exit_code}" + (f": {lines}" if lines else "")
