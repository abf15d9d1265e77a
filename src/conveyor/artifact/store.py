"""The local artifact store: a directory of release tarballs, each with a JSON manifest beside it, and the
region pointer files under `pointers/`. One of the two `ArtifactStore`s (base.py); the S3 store keeps its
cache in one."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from conveyor.artifact.base import Stack, open_tarball
from conveyor.artifact.compression import SUFFIXES, Compression
from conveyor.artifact.pointers import pointer_document, pointer_name
from conveyor.artifact.release import Release, is_release_id
from conveyor.errors import ArtifactError

# Where releases are kept when `artifact.store` is not set, relative to the config file's directory.
DEFAULT_STORE_DIR = Path(".conveyor") / "artifacts"

TARBALL_SUFFIX = SUFFIXES["gzip"]  # the suffix of releases built before compression was a choice
MANIFEST_SUFFIX = ".json"


class LocalStore:
    """Releases in a local directory: `<root>/<release-id>.tar.gz` (`.tar.zst`, `.tar`) and `<root>/<release-id>.json`.

    The manifest is written last, so a release is listed only once its tarball is complete.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_config_dir(cls, config_dir: Path) -> LocalStore:
        """The default store of the app whose conveyor.yml lives in `config_dir`."""
        return cls(config_dir / DEFAULT_STORE_DIR)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def tarball_path(self, release_id: str, compression: Compression = "gzip") -> Path:
        """Where the tarball of `release_id`, compressed that way, lives in this store."""
        return self.root / f"{release_id}{SUFFIXES[compression]}"

    def manifest_path(self, release_id: str) -> Path:
        """Where the manifest of `release_id` lives in this store."""
        return self.root / f"{release_id}{MANIFEST_SUFFIX}"

    def __contains__(self, release_id: object) -> bool:
        return (
            isinstance(release_id, str)
            and is_release_id(release_id)
            and self.manifest_path(release_id).is_file()
        )

    def get(self, release_id: str) -> Release:
        """The release with this id; ArtifactError if the store does not have it."""
        if release_id not in self:
            raise ArtifactError(f"{release_id}: unknown release ID; `conveyor releases` lists them")
        release = self._load(self.manifest_path(release_id))
        if release.id != release_id:
            raise ArtifactError(f"release manifest {self.manifest_path(release_id)} names {release.id!r}")
        if not release.path.is_file():
            raise ArtifactError(f"release {release_id} has lost its tarball ({release.path})")
        return release

    def cached(self, release_id: str) -> Release | None:
        """The release whose manifest is here (its tarball may be gone); None if there is none."""
        if release_id not in self:
            return None
        try:
            return self._load(self.manifest_path(release_id))
        except ArtifactError:
            return None

    def find_by_sha256(self, sha256: str) -> Release | None:
        """The release whose tarball has this sha256, if the store has one."""
        for release in self.list():
            if release.sha256 == sha256:
                return release
        return None

    def list(self) -> builtins.list[Release]:
        """Every complete release in the store, newest first; unreadable manifests are skipped."""
        releases: builtins.list[Release] = []
        try:
            manifests = builtins.list(self.root.glob(f"*{MANIFEST_SUFFIX}"))
        except OSError:
            return releases
        for manifest in manifests:
            if not is_release_id(manifest.name.removesuffix(MANIFEST_SUFFIX)):
                continue
            try:
                release = self._load(manifest)
            except ArtifactError:
                continue
            if release.path.is_file() and release.id == manifest.name.removesuffix(MANIFEST_SUFFIX):
                releases.append(release)
        return newest_first(releases)

    def add(self, tarball: Path, manifest: dict[str, Any]) -> Release:
        """Move `tarball` into the store under the manifest's id, then write the manifest, both atomically."""
        release_id = manifest.get("id")
        if not isinstance(release_id, str) or not is_release_id(release_id):
            raise ArtifactError(f"cannot add a release with the id {release_id!r} to {self.root}")
        release = self._placed(Release.from_manifest(manifest, self.tarball_path(release_id)))
        if release_id in self:
            raise ArtifactError(f"release {release_id} is already in {self.root}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _move_into(tarball, release.path)
            write_atomically(self.manifest_path(release_id), json.dumps(release.manifest(), indent=2) + "\n")
        except OSError as exc:
            raise ArtifactError(f"cannot add release {release_id} to {self.root}: {exc}") from exc
        return release

    def open(self, release_id: str) -> BinaryIO:
        """Open the tarball of `release_id` for reading."""
        return open_tarball(self, release_id)

    def pointer_path(self, environment: str, region: str) -> Path:
        """Where this store keeps the pointer of (environment, region)."""
        return self.root / pointer_name(environment, region)

    def write_pointer(self, environment: str, region: str, release_id: str, *, app: str,
                      deployment_id: int | None, user: str, now: datetime | None = None,
                      stack: Stack | None = None, flags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Point (environment, region) at a release of this store, replacing the file with a rename; the
        document written. Its artifact is the tarball's path (and file:// URL)."""
        release = self.get(release_id)
        tarball = release.path.resolve()
        document = pointer_document(app=app, environment=environment, region=region, release=release,
                                    artifact={"url": tarball.as_uri(), "path": str(tarball)},
                                    deployment_id=deployment_id, user=user, now=now, stack=stack,
                                    flags=flags)
        path = self.pointer_path(environment, region)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            raise ArtifactError(f"cannot write the pointer {path}: {exc}") from exc
        return document

    def read_pointer(self, environment: str, region: str) -> dict[str, Any] | None:
        """The pointer of (environment, region); None if none was written."""
        path = self.pointer_path(environment, region)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read the pointer {path}: {exc}") from exc
        if not isinstance(document, dict):
            raise ArtifactError(f"the pointer {path} is not a JSON object")
        return document

    def download_url(self, release: Release, region: str | None = None, *, expires: float = 3600) -> str:
        """The tarball's file:// URL, for hosts that share this machine's filesystem; it does not expire."""
        return release.path.resolve().as_uri()

    def region_store(self, region: str | None) -> LocalStore:
        """This store: every region's hosts read the same directory."""
        return self

    def _load(self, manifest: Path) -> Release:
        """Read one manifest; ArtifactError if it cannot be read or is malformed."""
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read release manifest {manifest}: {exc}") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"release manifest {manifest} is not a JSON object")
        release_id = manifest.name.removesuffix(MANIFEST_SUFFIX)
        return self._placed(Release.from_manifest(data, self.tarball_path(release_id)))

    def _placed(self, release: Release) -> Release:
        """The release with the path its compression gives it in this store."""
        return dataclasses.replace(release, path=self.tarball_path(release.id, release.compression))


def newest_first(releases: builtins.list[Release]) -> builtins.list[Release]:
    """Releases in the order stores list them: the newest first, by when they were created."""
    return sorted(releases, key=lambda release: (_sort_time(release), release.id), reverse=True)


def _sort_time(release: Release) -> datetime:
    """When a release was created, comparable across time zones (its id's second as a fallback)."""
    created = datetime.fromisoformat(release.created_at)
    if created.tzinfo is None:
        return datetime.strptime(release.id[:16] + "+0000", "%Y%m%dT%H%M%SZ%z")
    return created


def _move_into(source: Path, dest: Path) -> None:
    """Move a file to `dest` atomically, copying through a temp file when it is on another filesystem."""
    try:
        os.replace(source, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as data:
            shutil.copyfileobj(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    source.unlink()


def write_atomically(dest: Path, text: str) -> None:
    """Write `text` to `dest` through a temp file renamed over it, so readers never see half of it."""
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        temp.chmod(0o644)
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
