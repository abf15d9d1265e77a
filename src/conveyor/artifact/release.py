"""Releases: immutable, content-addressed builds of the app, named by when and from what they were built."""

from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.artifact.compression import COMPRESSIONS, Compression
from conveyor.errors import ArtifactError

RELEASE_ID_RE = r"^\d{8}T\d{6}Z-[0-9a-f]{8}$"
GIT_KEYS = ("sha", "branch", "author", "author_email", "subject")

_RELEASE_ID = re.compile(RELEASE_ID_RE)
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_TIMEOUT = 10.0
# The unit separator cannot appear in a name, an email or a one-line subject.
_SEPARATOR = "\x1f"


def release_id(now: datetime, sha: str) -> str:
    """`YYYYMMDDTHHMMSSZ-<first 8 hex of sha>`, with `now` (timezone-aware) taken in UTC."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("release_id needs a timezone-aware datetime")
    if not _HEX.fullmatch(sha):
        raise ValueError(f"release_id needs a hex sha of at least 8 digits, not {sha!r}")
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{sha[:8].lower()}"


def is_release_id(value: str) -> bool:
    """Whether `value` is shaped like a release id."""
    return _RELEASE_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Release:
    """A built release in a store: its tarball and what is known about it."""

    id: str
    sha256: str  # of the tarball: identical content gives an identical sha256
    size: int  # bytes of the tarball
    files: int
    created_at: str  # ISO 8601 in UTC
    user: str
    git: dict[str, str] | None = field(hash=False)  # sha, branch, author, author_email, subject
    path: Path  # the tarball in the store
    compression: Compression = "gzip"  # of the tarball; manifests written before it was a choice say nothing
    # Built from a git work tree with uncommitted changes: `git` names the last commit, not what shipped;
    # `diff_sha256` identifies the changes (tracked diff and untracked files) on top of it.
    dirty: bool = False
    diff_sha256: str | None = None

    def manifest(self) -> dict[str, Any]:
        """The release as a JSON-ready mapping, without where it is stored."""
        return {
            "id": self.id,
            "sha256": self.sha256,
            "size": self.size,
            "files": self.files,
            "created_at": self.created_at,
            "user": self.user,
            "git": dict(self.git) if self.git is not None else None,
            "compression": self.compression,
            "dirty": self.dirty,
            "diff_sha256": self.diff_sha256,
        }

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any], path: Path) -> Release:
        """Read a manifest written by `manifest()`; ArtifactError naming the field if it is malformed."""

        def bad(field_name: str, expected: str) -> ArtifactError:
            return ArtifactError(f"release manifest for {path.name}: {field_name}: expected {expected}")

        release_id_ = data.get("id")
        if not isinstance(release_id_, str) or not is_release_id(release_id_):
            raise bad("id", "a release id like 20260102T030405Z-1a2b3c4d")
        sha256 = data.get("sha256")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise bad("sha256", "64 lowercase hex digits")
        numbers: dict[str, int] = {}
        for key in ("size", "files"):
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad(key, "a non-negative integer")
            numbers[key] = value
        created_at = data.get("created_at")
        if not isinstance(created_at, str):
            raise bad("created_at", "an ISO 8601 timestamp")
        try:
            datetime.fromisoformat(created_at)
        except ValueError as exc:
            raise bad("created_at", "an ISO 8601 timestamp") from exc
        user = data.get("user")
        if not isinstance(user, str):
            raise bad("user", "a string")
        git = data.get("git")
        if git is not None and not (
            isinstance(git, dict) and all(isinstance(git.get(key), str) for key in GIT_KEYS)
        ):
            raise bad("git", f"null or a mapping of {', '.join(GIT_KEYS)} to strings")
        compression = data.get("compression", "gzip")
        if compression not in COMPRESSIONS:
            raise bad("compression", f"one of {', '.join(COMPRESSIONS)}")
        dirty = data.get("dirty", False)
        if not isinstance(dirty, bool):
            raise bad("dirty", "true or false")
        diff = data.get("diff_sha256")
        if diff is not None and not (isinstance(diff, str) and _SHA256.fullmatch(diff)):
            raise bad("diff_sha256", "null or 64 lowercase hex digits")
        return cls(
            id=release_id_,
            dirty=dirty,
            diff_sha256=diff,
            sha256=sha256,
            size=numbers["size"],
            files=numbers["files"],
            created_at=created_at,
            user=user,
            git=_git_fields(git) if git is not None else None,
            path=path,
            compression=compression,
        )


def _git(directory: Path, *args: str) -> str | None:
    """Run one git command in `directory`; its stdout, or None if git is missing or says no."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(directory), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.decode("utf-8", "replace").rstrip("\n")


def _git_fields(git: Mapping[str, Any]) -> dict[str, str]:
    """The manifest's git keys; `committed_at` too when it was recorded (manifests before it say nothing)."""
    fields = {key: str(git[key]) for key in GIT_KEYS}
    if isinstance(git.get("committed_at"), str):
        fields["committed_at"] = str(git["committed_at"])
    return fields


def git_info(directory: Path) -> dict[str, str] | None:
    """What HEAD is, if `directory` is in a git work tree with commits; None otherwise. Never raises."""
    if _git(directory, "rev-parse", "--show-toplevel") is None:
        return None
    # The subject is last: it is the one field that might hold anything (the separator cannot be in it).
    log = _git(directory, "log", "-1", "--no-show-signature", "--format=%H%x1f%an%x1f%ae%x1f%cI%x1f%s")
    branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
    if not log or branch is None:
        return None
    fields = log.split(_SEPARATOR, 4)
    if len(fields) != 5:
        return None
    sha, author, author_email, committed_at, subject = fields
    # committed_at (the commit time, ISO 8601) is what DORA's lead time counts from (operations/dora.py).
    return {"sha": sha, "branch": branch, "author": author, "author_email": author_email, "subject": subject,
            "committed_at": committed_at}


def working_tree_changes(directory: Path, ignore: tuple[str, ...] = (".conveyor",)) -> str | None:
    """The sha256 of the uncommitted changes in the git work tree holding `directory` (the diff against HEAD
    and every untracked, unignored file's path and content), or None when it is clean or not a work tree.

    `ignore` names directories (relative to `directory`) that Conveyor itself writes, such as its state."""
    top = _git(directory, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    excludes = [f":(exclude){(directory / name).resolve().relative_to(Path(top).resolve())}"
                for name in ignore if (directory / name).resolve().is_relative_to(Path(top).resolve())]
    status = _git(Path(top), "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", ".", *excludes)
    if not status:
        return None
    digest = hashlib.sha256()
    diff = _git_bytes(Path(top), "diff", "HEAD", "--binary", "--", ".", *excludes)
    digest.update(diff or b"")
    for entry in status.split("\0"):
        if entry.startswith("?? "):
            name = entry[3:]
            digest.update(b"\0untracked\0" + name.encode())
            with contextlib.suppress(OSError):
                digest.update(hashlib.sha256((Path(top) / name).read_bytes()).digest())
    return digest.hexdigest()


def _git_bytes(directory: Path, *args: str) -> bytes | None:
    try:
        completed = subprocess.run(["git", "-C", str(directory), *args], stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=_GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None
