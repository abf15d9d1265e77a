"""Turn a build output into a release in a store, reusing the release that already has the same content."""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conveyor.artifact.base import ArtifactStore
from conveyor.artifact.build import pack
from conveyor.artifact.compression import DEFAULT as DEFAULT_COMPRESSION
from conveyor.artifact.compression import SUFFIXES, Compression
from conveyor.artifact.release import Release, release_id
from conveyor.artifact.validate import validate_tarball
from conveyor.errors import ArtifactError


def build_release(
    source: Path, store: ArtifactStore, *, user: str, now: datetime, git: dict[str, str] | None,
    compression: Compression = DEFAULT_COMPRESSION, diff_sha256: str | None = None,
) -> tuple[Release, bool]:
    """Pack `source` into `store`: (new release, True), or (the release with that content, False).

    `diff_sha256` identifies uncommitted changes in the work tree it was built from (a dirty build)."""
    if source.is_dir() and store.root.resolve().is_relative_to(source.resolve()):
        raise ArtifactError(
            f"artifact {source}: the artifact store {store.root} lies inside it, so each release would"
            " pack the ones before it; point artifact.path at the build output or artifact.store elsewhere"
        )
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=store.root, prefix=".build-", suffix=SUFFIXES[compression])
    except OSError as exc:
        raise ArtifactError(f"cannot write to the artifact store {store.root}: {exc}") from exc
    os.close(fd)
    temp = Path(temp_name)
    try:
        packed = pack(source, temp, compression)
        validate_tarball(temp)
        existing = store.find_by_sha256(packed.sha256)
        if existing is not None:
            return existing, False
        now = _after_newest(store, now)
        new_id = release_id(now, git["sha"]) if git else release_id(now, packed.sha256)
        if new_id in store:
            # Same second, same commit, different content (a dirty work tree): name it by content instead.
            new_id = release_id(now, packed.sha256)
        manifest = {
            "id": new_id,
            "sha256": packed.sha256,
            "size": packed.size,
            "files": packed.files,
            "created_at": now.astimezone(UTC).isoformat(),
            "user": user,
            "git": git,
            "compression": compression,
            "dirty": diff_sha256 is not None,
            "diff_sha256": diff_sha256,
        }
        return store.add(temp, manifest), True
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _after_newest(store: ArtifactStore, now: datetime) -> datetime:
    """`now`, moved past the newest release's second so release ids sort in build order.

    Hosts prune by id order; two builds in one second would otherwise sort by their hashes.
    """
    newest = max((r.id for r in store.list()), default=None)
    if newest is None:
        return now
    stamp = datetime.strptime(newest[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    now_utc = now.astimezone(UTC)
    if now_utc.replace(microsecond=0) <= stamp:
        return stamp + timedelta(seconds=1)
    return now_utc
