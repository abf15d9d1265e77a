"""The rules every path of a release obeys, whether it comes from a tar archive or a directory.

A release is unpacked on a host under `releases/<id>/`; nothing in it may write or point outside that
directory. `Tree` is fed one path at a time, in archive order, and refuses what breaks the rules; symlinks
are checked once every path is known, because a link may lean on another link defined later.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from conveyor.errors import ArtifactError

# Linux gives up after 40 symlinks in one lookup; so do we.
MAX_LINK_HOPS = 40


class Kind(enum.Enum):
    """What a path of a release is."""

    FILE = "file"  # a regular file
    DIR = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hard link"  # another name for an earlier regular file


def split_name(name: str) -> list[str]:
    """Split a relative path into its components, dropping empty and '.' ones."""
    return [part for part in name.split("/") if part not in ("", ".")]


def name_problem(name: str) -> str | None:
    """Say why `name` cannot be a path inside a release, or None when it can."""
    if name == "":
        return "has an empty path name"
    if name.startswith("/"):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "leaves the release ('..')"
    return None


@dataclass
class Tree:
    """The paths of one release, checked as they are added."""

    label: str  # "artifact dist/www.tar.gz"
    noun: str = "member"  # how a path is called in messages: "member" (archives) or "path" (directories)
    kinds: dict[str, Kind] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)  # name -> the regular file it names
    _raw: dict[str, str] = field(default_factory=dict)  # normalised name -> name as written

    def refuse(self, raw_name: str, reason: str) -> ArtifactError:
        """Build the error for a path that breaks a rule."""
        if raw_name == "":
            return ArtifactError(f"{self.label}: a {self.noun} {reason}")
        return ArtifactError(f"{self.label}: {self.noun} {raw_name!r} {reason}")

    def add(self, raw_name: str, kind: Kind, target: str = "") -> str | None:
        """Record one path and return its normalised name (None for the release root itself)."""
        problem = name_problem(raw_name)
        if problem:
            raise self.refuse(raw_name, problem)
        parts = split_name(raw_name)
        if not parts:
            if kind is Kind.DIR:
                return None
            raise self.refuse(raw_name, "has an empty path name")
        name = "/".join(parts)

        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            ancestor_kind = self.kinds.setdefault(ancestor, Kind.DIR)
            if ancestor_kind is not Kind.DIR:
                raise self.refuse(raw_name, f"lies under {ancestor!r}, which is a {ancestor_kind.value}")

        previous = self.kinds.get(name)
        if previous is Kind.DIR and kind is not Kind.DIR:
            raise self.refuse(raw_name, f"is a {kind.value} that would replace a directory")
        if previous is not None and previous is not Kind.DIR:
            raise self.refuse(raw_name, "appears more than once")
        if previous is Kind.DIR and kind is Kind.DIR:
            return name

        if kind is Kind.SYMLINK:
            if target == "":
                raise self.refuse(raw_name, "is a symlink with an empty target")
            if target.startswith("/"):
                raise self.refuse(raw_name, f"is a symlink to an absolute path ({target!r})")
            self.symlinks[name] = target
        elif kind is Kind.HARDLINK:
            self.hardlinks[name] = self._hardlink_source(raw_name, target)

        self.kinds[name] = kind
        self._raw[name] = raw_name
        return name

    def _hardlink_source(self, raw_name: str, target: str) -> str:
        """The regular file a hard link names; it must be an earlier file of the release."""
        if target.startswith("/") or ".." in target.split("/"):
            raise self.refuse(raw_name, f"is a hard link leaving the release ({target!r})")
        target_name = "/".join(split_name(target))
        if self.kinds.get(target_name) not in (Kind.FILE, Kind.HARDLINK):
            raise self.refuse(
                raw_name, f"is a hard link to {target!r}, which is not an earlier file of the archive"
            )
        return self.hardlinks.get(target_name, target_name)

    def check_links(self) -> None:
        """Refuse any symlink that resolves outside the release, following the release's own links."""
        for name, target in self.symlinks.items():
            problem = self._link_problem(name.split("/")[:-1], target)
            if problem:
                raise self.refuse(self._raw[name], problem)

    def _link_problem(self, start: list[str], target: str) -> str | None:
        """Resolve `target` from directory `start` lexically, through the release's own symlinks."""
        stack = list(start)
        pending = target.split("/")
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    return f"is a symlink leaving the release ({target!r})"
                stack.pop()
                continue
            stack.append(part)
            link = self.symlinks.get("/".join(stack))
            if link is None:
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                # A loop never lands anywhere; refuse it rather than ship links nothing can follow.
                return f"is a symlink in a loop ({target!r})"
            stack.pop()
            pending = link.split("/") + pending
        return None
