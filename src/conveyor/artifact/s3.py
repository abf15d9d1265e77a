"""The S3 artifact store: releases in a bucket, the source of truth, with a local cache beside the config.

Under `s3://bucket/prefix/`:

    releases/<release-id>.tar.gz     the tarball (`.tar.zst`, `.tar`: the cache's file name), uploaded first
    releases/<release-id>.json       its manifest, uploaded last, so a listed release is complete
    pointers/<env>/<region>.json     the release each (environment, region) should run (see pointers.py)

Region stores (`artifact.stores`) hold the same layout in a bucket of their own, so hosts download inside
their region; a release is copied to one the first time it is deployed there (`replicate`).

boto3 loads on first use. Every AWS error becomes an ArtifactError naming the bucket and key.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from conveyor.artifact.pointers import pointer_document, pointer_name
from conveyor.artifact.release import Release, is_release_id
from conveyor.artifact.store import LocalStore, newest_first
from conveyor.errors import ArtifactError

INSTALL_HINT = "pip install 'conveyor-deploy[aws]'"
RELEASES = "releases"
MANIFEST_SUFFIX = ".json"
# SigV4 presigned URLs live at most a week.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9._=-]+$")
_RESERVED_STARTS = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_ENDS = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_MANIFEST_READERS = 8
_CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix in it ('' for the bucket's top)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        """`s3://bucket/prefix`."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, *parts: str) -> str:
        """The key of `parts` under the prefix."""
        return "/".join(part for part in (self.prefix, *parts) if part)


def parse_s3_url(url: str) -> S3Location:
    """`s3://bucket/prefix` as an S3Location; ValueError naming the rule a bucket name or prefix breaks."""
    if not url.startswith("s3://"):
        raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"bucket name {bucket!r} must be 3 to 63 lowercase letters, digits, '.' or '-', "
                         "starting and ending with a letter or digit")
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        raise ValueError(f"bucket name {bucket!r} must not have '..', '.-' or '-.'")
    if _IPV4.fullmatch(bucket):
        raise ValueError(f"bucket name {bucket!r} must not look like an IP address")
    if bucket.startswith(_RESERVED_STARTS) or bucket.endswith(_RESERVED_ENDS):
        raise ValueError(f"bucket name {bucket!r} uses a prefix or suffix AWS reserves")
    prefix = prefix.rstrip("/")
    for part in prefix.split("/") if prefix else []:
        if part in {"", ".", ".."} or not _PREFIX_PART.fullmatch(part):
            raise ValueError(f"prefix {prefix!r}: each part between '/' must be letters, digits, '.', '_', "
                             "'=' or '-', and not '.' or '..'")
    return S3Location(bucket, prefix)


class S3Store(LocalStore):
    """Releases in S3, read and written through a local cache: the interface of LocalStore, backed by a bucket.

    It is a LocalStore so that code written for one (building, deltas) takes it; its own LocalStore
    behaviour is never used: the cache is a separate LocalStore over the same directory, driven through its
    public methods only, and every public method here talks to S3.
    """

    def __init__(self, url: str, cache_root: Path, *, endpoint_url: str | None = None,
                 regions: Mapping[str, str] | None = None, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0, attempts: int = 3) -> None:
        try:
            self.location = parse_s3_url(url)
        except ValueError as exc:
            raise ArtifactError(f"artifact store {url}: {exc}") from None
        super().__init__(cache_root / self.location.bucket / self.location.prefix)
        self.cache = LocalStore(self.root)
        self.cache_root = cache_root
        self.endpoint_url = endpoint_url
        self.regions = dict(regions or {})
        self.connect_timeout, self.read_timeout, self.attempts = connect_timeout, read_timeout, attempts
        self._s3: Any = None
        self._presigner: Any = None
        self._parent: S3Store | None = None  # a region store borrows its main store's client
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

    # -- the LocalStore interface ---------------------------------------------------------------
    def __contains__(self, release_id: object) -> bool:
        if not isinstance(release_id, str) or not is_release_id(release_id):
            return False
        if release_id in self._manifests:
            return True
        key = self._release_key(release_id + MANIFEST_SUFFIX)
        return bool(self._call(key, "look for", lambda s3: s3.head_object(Bucket=self.bucket, Key=key),
                               missing_ok=True))

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

    def find_by_sha256(self, sha256: str) -> Release | None:
        """The release whose tarball has this sha256, if the bucket has one (then in the cache too)."""
        for release in self.list():
            if release.sha256 == sha256:
                return self.get(release.id)
        return None

    def list(self) -> builtins.list[Release]:
        """Every complete release in the bucket, newest first; a manifest whose tarball is missing (or
        shorter than it says) is not listed. Tarballs are not downloaded: `get` does that."""
        objects = self._objects(RELEASES + "/")
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
        release = self.get(release_id)
        try:
            return release.path.open("rb")
        except OSError as exc:
            raise ArtifactError(f"cannot read release {release_id}: {exc}") from exc

    # -- regions ------------------------------------------------------------------------------------
    def region_store(self, region: str | None) -> S3Store:
        """The store hosts of `region` download from: its own (`artifact.stores`), else this one."""
        url = self.regions.get(region) if region is not None else None
        if region is None or url is None:
            return self
        if region not in self._region_stores:
            store = S3Store(url, self.cache_root, endpoint_url=self.endpoint_url,
                            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                            attempts=self.attempts)
            store._parent = self
            self._region_stores[region] = store
        return self._region_stores[region]

    def replicate(self, release: Release, region: str) -> bool:
        """Copy a release into the region's store if it is not there yet (bucket to bucket: nothing is
        downloaded); True if it was copied. Nothing to do for a region without a store of its own."""
        target = self.region_store(region)
        if target is self or release.id in target:
            return False
        manifest = self._manifest(release.id)
        name = self._tarball_name(release.id, manifest)
        source_key, target_key = self._release_key(name), target._release_key(name)
        target._call(target_key, f"copy s3://{self.bucket}/{source_key} to", lambda s3: s3.copy(
            {"Bucket": self.bucket, "Key": source_key}, target.bucket, target_key))
        target._put_json(target._release_key(release.id + MANIFEST_SUFFIX), {**manifest, "tarball": name},
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
        manifest = store._manifest(release.id)
        key = store._release_key(store._tarball_name(release.id, manifest))
        return str(store._call(key, "presign", lambda _s3: store._presigning_client().generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=seconds)))

    # -- pointers -------------------------------------------------------------------------------------
    def pointer_key(self, environment: str, region: str) -> str:
        """The key of (environment, region)'s pointer in this store."""
        return self.location.key(pointer_name(environment, region))

    def write_pointer(self, environment: str, region: str, release_id: str, *, app: str,
                      deployment_id: int | None, user: str, now: datetime | None = None) -> dict[str, Any]:
        """Point (environment, region) at a release in the region's store, copying the release there first
        if it is missing: one PUT, so a reader sees the old pointer or the new one. The document written."""
        release = self._release(release_id, self._manifest(release_id))
        self.replicate(release, region)
        target = self.region_store(region)
        key = target._release_key(target._tarball_name(release_id, target._manifest(release_id)))
        document = pointer_document(
            app=app, environment=environment, region=region, release=release, deployment_id=deployment_id,
            user=user, now=now, artifact={"url": f"s3://{target.bucket}/{key}", "bucket": target.bucket, "key": key})
        target._put_json(target.pointer_key(environment, region), document, "write the pointer")
        return document

    def read_pointer(self, environment: str, region: str) -> dict[str, Any] | None:
        """The pointer of (environment, region) in the region's store; None if none was written."""
        target = self.region_store(region)
        return target._get_json(target.pointer_key(environment, region), "pointer")

    # -- S3 ---------------------------------------------------------------------------------------------
    def _release_key(self, name: str) -> str:
        return self.location.key(RELEASES, name)

    def _client(self) -> Any:
        """The boto3 S3 client, made on first use with short timeouts and few retries."""
        if self._parent is not None:
            return self._parent._client()
        if self._s3 is None:
            self._s3 = self._make_client(region=None)
        return self._s3

    def _make_client(self, region: str | None) -> Any:
        boto3, botocore_config = _boto()
        options: dict[str, Any] = {
            "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
            "retries": {"max_attempts": self.attempts, "mode": "standard"}, "signature_version": "s3v4",
        }
        if self.endpoint_url:
            options["s3"] = {"addressing_style": "path"}  # MinIO and test servers have no bucket subdomains
        with self._translated(None, "connect to"):
            session = boto3.session.Session()
            return session.client("s3", endpoint_url=self.endpoint_url, region_name=region,
                                  config=botocore_config.Config(**options))

    def _presigning_client(self) -> Any:
        """A client in the bucket's own region: a presigned URL is signed for one region and used without
        the redirects an SDK follows. With an endpoint URL (MinIO, tests) the usual client does."""
        if self.endpoint_url:
            return self._client()
        if self._presigner is None:
            response = self._call(None, "find the region of", lambda s3: s3.head_bucket(Bucket=self.bucket))
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = response.get("BucketRegion") or headers.get("x-amz-bucket-region")
            self._presigner = self._make_client(region=region) if region else self._client()
        return self._presigner

    def _call(self, key: str | None, doing: str, action: Callable[[Any], Any], *, missing_ok: bool = False) -> Any:
        """`action(client)`, AWS errors raised as ArtifactError naming the object; None for a missing
        object when `missing_ok`."""
        client = self._client()
        try:
            with self._translated(key, doing):
                return action(client)
        except _Missing:
            if missing_ok:
                return None
            where = f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"
            raise ArtifactError(f"{where}: cannot {doing} it: no such object") from None

    @contextlib.contextmanager
    def _translated(self, key: str | None, doing: str) -> Iterator[None]:
        where = f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"
        try:
            yield
        except ArtifactError:
            raise
        except Exception as exc:
            translated = _translate(exc, where, doing, self.endpoint_url)
            if translated is exc:
                raise
            raise translated from exc

    def _objects(self, under: str) -> dict[str, int]:
        """File name → size of the objects under `<prefix>/<under>` (one level)."""
        start = self.location.key(under.rstrip("/")) + "/"

        def listing(s3: Any) -> dict[str, int]:
            found: dict[str, int] = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(start):]
                    if name and "/" not in name:
                        found[name] = int(item["Size"])
            return found

        result: dict[str, int] = self._call(start, "list", listing)
        return result

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
        return self._get_json(self._release_key(release_id + MANIFEST_SUFFIX), "manifest")

    def _get_json(self, key: str, what: str) -> dict[str, Any] | None:
        """The JSON object at `key` (None if there is none); ArtifactError if it is not one."""
        body = self._call(key, "read", lambda s3: s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(),
                          missing_ok=True)
        if body is None:
            return None
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"s3://{self.bucket}/{key}: not a JSON {what}: {exc}") from exc
        if not isinstance(document, dict):
            raise ArtifactError(f"s3://{self.bucket}/{key}: not a JSON object")
        return document

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
        found = _tarball_name(release_id, {}, self._objects(RELEASES + "/"))
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
        key = self._release_key(name)
        self._call(key, "upload", lambda s3: s3.upload_file(
            str(release.path), self.bucket, key,
            ExtraArgs={"ContentType": "application/octet-stream", "Metadata": {"sha256": release.sha256}}))
        manifest = {**release.manifest(), "tarball": name}
        self._put_json(self._release_key(release.id + MANIFEST_SUFFIX), manifest, "write the manifest")
        self._manifests[release.id] = manifest

    def _put_json(self, key: str, document: Mapping[str, Any], doing: str) -> None:
        body = (json.dumps(document, indent=2) + "\n").encode()
        self._call(key, doing, lambda s3: s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                                                        ContentType="application/json", CacheControl="no-cache"))

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
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:

                def fetch(s3: Any) -> int:
                    size = 0
                    body = s3.get_object(Bucket=self.bucket, Key=key)["Body"]
                    for chunk in body.iter_chunks(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                    return size

                size = self._call(key, "download", fetch)
            if digest.hexdigest() != release.sha256 or size != release.size:
                raise ArtifactError(
                    f"s3://{self.bucket}/{key}: refused: {size} bytes with sha256 {digest.hexdigest()}, but the "
                    f"manifest of {release.id} says {release.size} bytes with sha256 {release.sha256} (the object "
                    "was changed or damaged in the bucket)")
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


class _Missing(Exception):
    """The object asked for does not exist (raised inside `_call` only)."""


def _boto() -> tuple[Any, Any]:
    """boto3 and botocore.config, or an ArtifactError saying how to install them."""
    try:
        import boto3
        import boto3.session
        import botocore.config
    except ImportError as exc:
        raise ArtifactError(f"an s3:// artifact store needs boto3, which is not installed: {INSTALL_HINT}") from exc
    return boto3, botocore.config


def _translate(exc: Exception, where: str, doing: str, endpoint_url: str | None) -> Exception:
    """An AWS (or network) error as an ArtifactError naming the object; `_Missing` for a missing object."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
        if code in _MISSING:
            return _Missing(where)
        message = error.get("Message") or str(exc)
        hint = ""
        if code == "NoSuchBucket":
            hint = " (create the bucket, or correct artifact.store)"
        elif code in {"AccessDenied", "403", "Forbidden"}:
            hint = " (the credentials in use need s3:GetObject, s3:PutObject and s3:ListBucket on it)"
        return ArtifactError(f"{where}: cannot {doing} it: {code}: {message}{hint}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ArtifactError(f"{where}: cannot {doing} it: no AWS credentials (set AWS_PROFILE, or "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance role)")
    if isinstance(exc, EndpointConnectionError):
        return ArtifactError(f"{where}: cannot {doing} it: cannot reach {endpoint_url or 'S3'}: {exc}")
    if isinstance(exc, BotoCoreError | Boto3Error | ValueError | OSError):
        return ArtifactError(f"{where}: cannot {doing} it: {exc}")
    return exc


def _is_tarball_name(release_id: str, name: str) -> bool:
    return name.startswith(release_id + ".tar") and "/" not in name


def _tarball_name(release_id: str, manifest: Mapping[str, Any], objects: Mapping[str, int]) -> str | None:
    """The release's tarball among `objects`: the name its manifest gives, else the one `<id>.tar*` there."""
    name = manifest.get("tarball")
    if isinstance(name, str) and _is_tarball_name(release_id, name):
        return name if name in objects else None
    candidates = sorted(found for found in objects if _is_tarball_name(release_id, found))
    return candidates[0] if len(candidates) == 1 else None
