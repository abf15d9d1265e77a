"""The artifact store interface: where releases are kept, and the region pointers hosts that start later read.

`LocalStore` (store.py, a directory) and `S3Store` (s3/, a bucket with a local cache) implement it side by
side; code above the artifact package takes an `ArtifactStore` and never asks which one it has.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from conveyor.artifact.release import Release
from conveyor.errors import ArtifactError

Stack = Mapping[str, Mapping[str, Sequence[str]]]
"""A region's stack, as its pointer carries it: role → component → the values its hosts run."""


class ArtifactStore(Protocol):
    """Releases (a tarball and its manifest each, immutable once added) and region pointer files.

    Every failure is an ArtifactError naming the release, the file or the object.
    """

    @property
    def root(self) -> Path:
        """The local directory of this store: its releases (or, for a remote store, its cache of them).

        Builds are staged and deltas made under it, so that a finished file is moved in with a rename.
        """
        ...

    def __contains__(self, release_id: object) -> bool:
        """Whether the store has this release (False for anything that is not a release id)."""
        ...

    def get(self, release_id: str) -> Release:
        """The release with this id, its tarball on this machine (fetched and verified if it was not)."""
        ...

    def cached(self, release_id: str) -> Release | None:
        """The release as this machine knows it without the network (its manifest here); None if it does not."""
        ...

    def find_by_sha256(self, sha256: str) -> Release | None:
        """The release whose tarball has this sha256, if the store has one."""
        ...

    def list(self) -> builtins.list[Release]:
        """Every complete release in the store, newest first; nothing is downloaded."""
        ...

    def add(self, tarball: Path, manifest: dict[str, Any]) -> Release:
        """Move `tarball` in under the manifest's id, then the manifest: a listed release is complete."""
        ...

    def open(self, release_id: str) -> BinaryIO:
        """Open the tarball of `release_id` for reading."""
        ...

    def write_pointer(self, environment: str, region: str, release_id: str, *, app: str,
                      deployment_id: int | None, user: str, now: datetime | None = None,
                      stack: Stack | None = None, flags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Point (environment, region) at a release of this store, in one step (see pointers.py); the document."""
        ...

    def read_pointer(self, environment: str, region: str) -> dict[str, Any] | None:
        """The pointer of (environment, region); None if none was written."""
        ...

    def download_url(self, release: Release, region: str | None = None, *, expires: float = 3600) -> str:
        """A URL the hosts of `region` fetch the release's tarball from themselves, good for `expires` seconds."""
        ...

    def region_store(self, region: str | None) -> ArtifactStore:
        """The store the hosts of `region` download from and read their pointer in: its own, else this one."""
        ...


def open_tarball(store: ArtifactStore, release_id: str) -> BinaryIO:
    """The tarball of `release_id` in `store`, open for reading (fetched first if the store is remote)."""
    release = store.get(release_id)
    try:
        return release.path.open("rb")
    except OSError as exc:
        raise ArtifactError(f"cannot read release {release_id}: {exc}") from exc
