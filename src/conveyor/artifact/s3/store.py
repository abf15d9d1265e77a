"""S3Store: the ArtifactStore over a bucket, read and written through a local cache, with region stores."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from conveyor.artifact.base import Stack, open_tarball
from conveyor.artifact.pointers import pointer_document, pointer_name
from conveyor.artifact.release import Release, is_release_id
from conveyor.artifact.s3.client import Bucket, S3Client
from conveyor.artifact.store import LocalStore, newest_first
from conveyor.config.s3 import parse_s3_url
from conveyor.errors import ArtifactError

RELEASES = "releases"
MANIFEST_SUFFIX = ".json"
# SigV4 presigned URLs live at most a week.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_MANIFEST_READERS = 8


class S3Store:
    """Releases in S3, the source of truth, and a cache of their tarballs on this machine (a LocalStore at
    `root`, driven through its public methods). Every public method but `cached` talks to S3."""

    def __init__(self, url: str, cache_root: Path, *, endpoint_url: str | None = None,
                 regions: Mapping[str, str] | None = None, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0, attempts: int = 3, client: S3Client | None = None) -> None:
        """`client` is shared with the store this one is a region store of; otherwise one is made from the
        endpoint and timeouts."""
        try:
            self.location = parse_s3_url(url)
        except ValueError as exc:
            raise ArtifactError(f"artifact store {url}: {exc}") from None
        self.root = cache_root / self.location.bucket / self.location.prefix
        self.cache = LocalStore(self.root)
        self.cache_root = cache_root
        self.regions = dict(regions or {})
        self.client = client or S3Client(endpoint_url=endpoint_url, connect_timeout=connect_timeout,
                                         read_timeout=read_timeout, attempts=attempts)
        self._bucket = Bucket(self.location, self.client)
        self._region_stores: dict[str, S3Store] = {}
        # Manifests in S3, by release id, as read: releases are immutable, so what was read once stays true.
        self._manifests: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"S3Store({self.location.url!r}, cache={str(self.root)!r})"

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self.location.bucket

    @property
    def url(self) -> str:
        """`s3://bucket/prefix`."""
        return self.location.url

    # -- releases -----------------------------------------------------------------------------------
    def __contains__(self, release_id: object) -> bool:
        if not isinstance(release_id, str) or not is_release_id(release_id):
            return False
        if release_id in self._manifests:
            return True
        return self._bucket.exists(self._release_key(release_id + MANIFEST_SUFFIX))

    def get(self, release_id: str) -> Release:
        """The release with this id, its tarball in the cache (downloaded and verified if it was not)."""
        manifest = self._manifest(release_id)
        release = self._release(release_id, manifest)
        if release_id in self.cache:
            cached = self.cache.get(release_id)
            if cached.sha256 != release.sha256:
                raise ArtifactError(f"release {release_id}: the cached tarball {cached.path} has sha256 "
                                    f"{cached.sha256}, {self.url} says {release.sha256}; remove {self.root} "
                                    "to download it again")
            return cached
        return self._download(release, manifest)

    def cached(self, release_id: str) -> Release | None:
        """The release as the cache has it (no request: it was built or deployed from here); None otherwise."""
        return self.cache.cached(release_id)

    def find_by_sha256(self, sha256: str) -> Release | None:
        """The release whose tarball has this sha256, if the bucket has one (then in the cache too)."""
        for release in self.list():
            if release.sha256 == sha256:
                return self.get(release.id)
        return None

    def list(self) -> builtins.list[Release]:
        """Every complete release in the bucket, newest first; a manifest whose tarball is missing (or
        shorter than it says) is not listed. Tarballs are not downloaded: `get` does that."""
        objects = self._bucket.objects(RELEASES + "/")
        ids = [name.removesuffix(MANIFEST_SUFFIX) for name in objects
               if name.endswith(MANIFEST_SUFFIX) and is_release_id(name.removesuffix(MANIFEST_SUFFIX))]
        manifests = self._read_manifests(ids)
        releases: builtins.list[Release] = []
        for release_id, manifest in manifests.items():
            name = _tarball_name(release_id, manifest, objects)
            try:
                release = self._release(release_id, manifest)
            except ArtifactError:
                continue
            if name is None or objects.get(name) != release.size:
                continue
            if release_id in self.cache:
                with contextlib.suppress(ArtifactError):
                    release = dataclasses.replace(release, path=self.cache.get(release_id).path)
            releases.append(release)
        return newest_first(releases)

    def add(self, tarball: Path, manifest: dict[str, Any]) -> Release:
        """Put `tarball` in the cache, then upload it, then its manifest: only a whole release is listed."""
        release_id = manifest.get("id")
        if not isinstance(release_id, str) or not is_release_id(release_id):
            raise ArtifactError(f"cannot add a release with the id {release_id!r} to {self.url}")
        if release_id in self:
            raise ArtifactError(f"release {release_id} is already in {self.url}")
        if release_id in self.cache:
            # Left in the cache by an upload that failed: finish that upload.
            release = self.cache.get(release_id)
            if release.sha256 != manifest.get("sha256"):
                raise ArtifactError(f"release {release_id} is in the cache {self.root} with other content; "
                                    "remove it from the cache and build again")
        else:
            release = self.cache.add(tarball, manifest)
        self._upload(release)
        return release

    def open(self, release_id: str) -> BinaryIO:
        """Open the tarball of `release_id` for reading (from the cache, downloading it first if needed)."""
        return open_tarball(self, release_id)

    # -- regions ------------------------------------------------------------------------------------
    def region_store(self, region: str | None) -> S3Store:
        """The store hosts of `region` download from: its own (`artifact.stores`), else this one."""
        url = self.regions.get(region) if region is not None else None
        if region is None or url is None:
            return self
        if region not in self._region_stores:
            self._region_stores[region] = S3Store(url, self.cache_root, client=self.client)
        return self._region_stores[region]

    def replicate(self, release: Release, region: str) -> bool:
        """Copy a release into the region's store if it is not there yet (bucket to bucket: nothing is
        downloaded); True if it was copied. Nothing to do for a region without a store of its own."""
        target = self.region_store(region)
        if target is self or release.id in target:
            return False
        manifest = self._manifest(release.id)
        name = self._tarball_name(release.id, manifest)
        target._bucket.copy_in(self._bucket, self._release_key(name), target._release_key(name))
        target._bucket.put_json(target._release_key(release.id + MANIFEST_SUFFIX), {**manifest, "tarball": name},
                                "write the manifest")
        target._manifests[release.id] = {**manifest, "tarball": name}
        return True

    def presigned_url(self, release: Release, region: str | None = None, expires: float = 3600) -> str:
        """A URL that GETs the release's tarball without credentials for `expires` seconds, from the
        region's store (replicate there first). For hosts that fetch the release themselves (curl)."""
        seconds = int(expires)
        if not 1 <= seconds <= MAX_PRESIGN_SECONDS:
            raise ArtifactError(f"a presigned URL lives 1 second to 7 days, not {expires} seconds")
        store = self.region_store(region)
        key = store._release_key(store._tarball_name(release.id, store._manifest(release.id)))
        return store._bucket.presigned_get(key, seconds)

    def download_url(self, release: Release, region: str | None = None, *, expires: float = 3600) -> str:
        """The release copied into the region's store if it has one, then a presigned URL from there."""
        if region is not None:
            self.replicate(release, region)
        return self.presigned_url(release, region, expires=expires)

    # -- pointers -------------------------------------------------------------------------------------
    def pointer_key(self, environment: str, region: str) -> str:
        """The key of (environment, region)'s pointer in this store."""
        return self.location.key(pointer_name(environment, region))

    def write_pointer(self, environment: str, region: str, release_id: str, *, app: str,
                      deployment_id: int | None, user: str, now: datetime | None = None,
                      stack: Stack | None = None, flags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Point (environment, region) at a release in the region's store, copying the release there first
        if it is missing: one PUT, so a reader sees the old pointer or the new one. The document written."""
        release = self._release(release_id, self._manifest(release_id))
        self.replicate(release, region)
        target = self.region_store(region)
        key = target._release_key(target._tarball_name(release_id, target._manifest(release_id)))
        document = pointer_document(
            app=app, environment=environment, region=region, release=release, deployment_id=deployment_id,
            user=user, now=now, stack=stack, flags=flags,
            artifact={"url": f"s3://{target.bucket}/{key}", "bucket": target.bucket, "key": key})
        target._bucket.put_json(target.pointer_key(environment, region), document, "write the pointer")
        return document

    def read_pointer(self, environment: str, region: str) -> dict[str, Any] | None:
        """The pointer of (environment, region) in the region's store; None if none was written."""
        target = self.region_store(region)
        return target._bucket.get_json(target.pointer_key(environment, region), "pointer")

    # -- objects --------------------------------------------------------------------------------------
    def _release_key(self, name: str) -> str:
        return self.location.key(RELEASES, name)

    def _manifest(self, release_id: str) -> dict[str, Any]:
        """The manifest of `release_id` in this bucket; ArtifactError if it has none."""
        if release_id not in self._manifests:
            if not is_release_id(release_id):
                raise ArtifactError(f"{release_id}: not a release ID (like 20260102T030405Z-1a2b3c4d)")
            manifest = self._read_manifest(release_id)
            if manifest is None:
                raise ArtifactError(f"{release_id}: unknown release ID in {self.url}; `conveyor releases` "
                                    "lists them")
            self._manifests[release_id] = manifest
        return self._manifests[release_id]

    def _read_manifest(self, release_id: str) -> dict[str, Any] | None:
        return self._bucket.get_json(self._release_key(release_id + MANIFEST_SUFFIX), "manifest")

    def _read_manifests(self, ids: builtins.list[str]) -> dict[str, dict[str, Any]]:
        """Manifests of these releases, unreadable ones left out: known or cached ones without a request,
        the others read a few at a time."""
        found: dict[str, dict[str, Any]] = {}
        unread: builtins.list[str] = []
        for release_id in ids:
            if release_id in self._manifests:
                found[release_id] = self._manifests[release_id]
            elif release_id in self.cache:
                try:
                    found[release_id] = self.cache.get(release_id).manifest()
                except ArtifactError:
                    unread.append(release_id)
            else:
                unread.append(release_id)

        def read(release_id: str) -> dict[str, Any] | None:
            try:
                return self._read_manifest(release_id)
            except ArtifactError:
                return None

        if unread:
            with ThreadPoolExecutor(max_workers=min(_MANIFEST_READERS, len(unread))) as pool:
                for release_id, manifest in zip(unread, pool.map(read, unread), strict=True):
                    if manifest is not None:
                        self._manifests[release_id] = found[release_id] = manifest
        return found

    def _tarball_name(self, release_id: str, manifest: Mapping[str, Any]) -> str:
        """The file name of the release's tarball in this bucket: as its manifest says, else as found."""
        name = manifest.get("tarball")
        if isinstance(name, str) and _is_tarball_name(release_id, name):
            return name
        found = _tarball_name(release_id, {}, self._bucket.objects(RELEASES + "/"))
        if found is None:
            raise ArtifactError(f"release {release_id}: no tarball under s3://{self.bucket}/"
                                f"{self._release_key('')}")
        return found

    def _release(self, release_id: str, manifest: Mapping[str, Any]) -> Release:
        release = Release.from_manifest(manifest, self.root / f"{release_id}.tar")
        if release.id != release_id:
            raise ArtifactError(f"{self.url}: the manifest of {release_id} names {release.id!r}")
        name = manifest.get("tarball")
        path = self.root / name if isinstance(name, str) and _is_tarball_name(release_id, name) else release.path
        return dataclasses.replace(release, path=path)

    def _upload(self, release: Release) -> None:
        """The tarball, then the manifest naming it."""
        name = release.path.name
        self._bucket.upload(release.path, self._release_key(name), release.sha256)
        manifest = {**release.manifest(), "tarball": name}
        self._bucket.put_json(self._release_key(release.id + MANIFEST_SUFFIX), manifest, "write the manifest")
        self._manifests[release.id] = manifest

    def _download(self, release: Release, manifest: Mapping[str, Any]) -> Release:
        """Fetch the tarball into the cache, refusing it unless its sha256 and size are the manifest's."""
        key = self._release_key(self._tarball_name(release.id, manifest))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=self.root, prefix=f".{release.id}.", suffix=".part")
        except OSError as exc:
            raise ArtifactError(f"cannot write to the artifact cache {self.root}: {exc}") from exc
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                size, sha256 = self._bucket.download(key, out)
            if sha256 != release.sha256 or size != release.size:
                raise ArtifactError(
                    f"s3://{self.bucket}/{key}: refused: {size} bytes with sha256 {sha256}, but the manifest of "
                    f"{release.id} says {release.size} bytes with sha256 {release.sha256} (the object was "
                    "changed or damaged in the bucket)")
            try:
                return self.cache.add(temp, dict(manifest))
            except ArtifactError:
                if release.id in self.cache:  # another process cached it meanwhile
                    return self.cache.get(release.id)
                raise
        except OSError as exc:
            raise ArtifactError(f"cannot write {release.id} to the artifact cache {self.root}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)


def _is_tarball_name(release_id: str, name: str) -> bool:
    return name.startswith(release_id + ".tar") and "/" not in name


def _tarball_name(release_id: str, manifest: Mapping[str, Any], objects: Mapping[str, int]) -> str | None:
    """The release's tarball among `objects`: the name its manifest gives, else the one `<id>.tar*` there."""
    name = manifest.get("tarball")
    if isinstance(name, str) and _is_tarball_name(release_id, name):
        return name if name in objects else None
    candidates = sorted(found for found in objects if _is_tarball_name(release_id, found))
    return candidates[0] if len(candidates) == 1 else None
