"""Reading what a host told us: its current release, the releases on disk, its journal."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MARK = "@@conveyor "


@dataclass(frozen=True)
class Probe:
    """A host's own account of itself."""

    current: str | None
    has_release: bool
    releases: tuple[str, ...]
    journal: tuple[dict[str, Any], ...] = field(default=())
    zstd: bool = False  # whether the host can decompress zstd tarballs

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


def parse_probe(output: str) -> Probe:
    """Parse the probe script's output."""
    values: dict[str, str] = {}
    releases: list[str] = []
    journal: list[dict[str, Any]] = []
    in_journal = False
    for line in output.splitlines():
        if in_journal:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn line from a killed writer is not an entry
            if isinstance(entry, dict):
                journal.append(entry)
            continue
        if not line.startswith(MARK):
            continue
        body = line[len(MARK):]
        if body == "journal":
            in_journal = True
        elif body.startswith("release="):
            releases.append(body[len("release="):])
        elif "=" in body:
            key, _, value = body.partition("=")
            values[key] = value
    return Probe(
        current=values.get("current") or None,
        has_release=values.get("has_release") == "yes",
        releases=tuple(sorted(releases)),
        journal=tuple(journal),
        zstd=values.get("zstd") == "yes",
    )


def last_step(output: str) -> str | None:
    """The last step a host script announced."""
    step = None
    for line in output.splitlines():
        if line.startswith(MARK + "step="):
            step = line[len(MARK + "step="):]
    return step


def tail(output: str, lines: int = 20) -> str:
    """The last lines of a script's output, without our markers."""
    kept = [line for line in output.splitlines() if not line.startswith(MARK)]
    return "\n".join(kept[-lines:])
