"""S3 through boto3: the client (endpoint, timeouts, retries, credentials from the usual places) and one
bucket's objects under a prefix, every AWS or network error raised as an ArtifactError naming the object.

boto3 loads on first use, so importing this module (and `conveyor.artifact.s3`) stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from conveyor.config.s3 import S3Location
from conveyor.errors import ArtifactError

INSTALL_HINT = "pip install 'conveyor-deploy[aws]'"
_MISSING = {"404", "NoSuchKey", "NotFound"}
_CHUNK = 1 << 20


class S3Client:
    """boto3's S3 client for one endpoint, made on first use with short timeouts and few retries; a store
    and its region stores share one."""

    def __init__(self, *, endpoint_url: str | None = None, connect_timeout: float = 5.0, read_timeout: float = 60.0,
                 attempts: int = 3) -> None:
        self.endpoint_url = endpoint_url
        self.connect_timeout, self.read_timeout, self.attempts = connect_timeout, read_timeout, attempts
        self._client: Any = None

    def get(self) -> Any:
        """The client of the default region (S3 redirects an SDK to a bucket's own)."""
        if self._client is None:
            self._client = self.make(region=None)
        return self._client

    def make(self, region: str | None) -> Any:
        """A new client signing for `region` (None: the configured default)."""
        boto3, botocore_config = _boto()
        options: dict[str, Any] = {
            "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
            "retries": {"max_attempts": self.attempts, "mode": "standard"}, "signature_version": "s3v4",
        }
        if self.endpoint_url:
            options["s3"] = {"addressing_style": "path"}  # MinIO and test servers have no bucket subdomains
        session = boto3.session.Session()
        return session.client("s3", endpoint_url=self.endpoint_url, region_name=region,
                              config=botocore_config.Config(**options))


class Bucket:
    """The objects of one bucket under one prefix, through an S3Client."""

    def __init__(self, location: S3Location, client: S3Client) -> None:
        self.location = location
        self.client = client
        self._presigner: Any = None

    @property
    def name(self) -> str:
        """The bucket's name."""
        return self.location.bucket

    def where(self, key: str | None) -> str:
        """`s3://bucket/key` (or the bucket's URL), as errors name it."""
        return f"s3://{self.name}/{key}" if key else f"s3://{self.name}"

    def call(self, key: str | None, doing: str, action: Callable[[Any], Any], *, missing_ok: bool = False) -> Any:
        """`action(client)`, AWS errors raised as ArtifactError naming the object; None for a missing
        object when `missing_ok`."""
        client = self._client()
        try:
            with self._translated(key, doing):
                return action(client)
        except _Missing:
            if missing_ok:
                return None
            raise ArtifactError(f"{self.where(key)}: cannot {doing} it: no such object") from None

    def exists(self, key: str) -> bool:
        """Whether there is an object at `key`."""
        return bool(self.call(key, "look for", lambda s3: s3.head_object(Bucket=self.name, Key=key),
                              missing_ok=True))

    def objects(self, under: str) -> dict[str, int]:
        """File name → size of the objects under `<prefix>/<under>` (one level)."""
        start = self.location.key(under.rstrip("/")) + "/"

        def listing(s3: Any) -> dict[str, int]:
            found: dict[str, int] = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=start):
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(start):]
                    if name and "/" not in name:
                        found[name] = int(item["Size"])
            return found

        result: dict[str, int] = self.call(start, "list", listing)
        return result

    def get_json(self, key: str, what: str) -> dict[str, Any] | None:
        """The JSON object at `key` (None if there is none); ArtifactError if it is not one."""
        body = self.call(key, "read", lambda s3: s3.get_object(Bucket=self.name, Key=key)["Body"].read(),
                         missing_ok=True)
        if body is None:
            return None
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{self.where(key)}: not a JSON {what}: {exc}") from exc
        if not isinstance(document, dict):
            raise ArtifactError(f"{self.where(key)}: not a JSON object")
        return document

    def put_json(self, key: str, document: Mapping[str, Any], doing: str) -> None:
        """Write a JSON document in one PUT, so readers see the old one or the new one."""
        body = (json.dumps(document, indent=2) + "\n").encode()
        self.call(key, doing, lambda s3: s3.put_object(Bucket=self.name, Key=key, Body=body,
                                                       ContentType="application/json", CacheControl="no-cache"))

    def upload(self, path: Path, key: str, sha256: str) -> None:
        """Upload a tarball (in parts if it is large), its sha256 in the object's metadata."""
        self.call(key, "upload", lambda s3: s3.upload_file(
            str(path), self.name, key,
            ExtraArgs={"ContentType": "application/octet-stream", "Metadata": {"sha256": sha256}}))

    def download(self, key: str, out: BinaryIO) -> tuple[int, str]:
        """Stream the object at `key` into `out`: its size and sha256."""

        def fetch(s3: Any) -> tuple[int, str]:
            digest = hashlib.sha256()
            size = 0
            body = s3.get_object(Bucket=self.name, Key=key)["Body"]
            for chunk in body.iter_chunks(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            return size, digest.hexdigest()

        result: tuple[int, str] = self.call(key, "download", fetch)
        return result

    def copy_in(self, source: Bucket, source_key: str, key: str) -> None:
        """Copy an object of `source` to `key` here, bucket to bucket (nothing passes through this machine)."""
        self.call(key, f"copy {source.where(source_key)} to", lambda s3: s3.copy(
            {"Bucket": source.name, "Key": source_key}, self.name, key))

    def presigned_get(self, key: str, seconds: int) -> str:
        """A URL that GETs `key` without credentials for `seconds`."""
        return str(self.call(key, "presign", lambda _s3: self._presigning_client().generate_presigned_url(
            "get_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=seconds)))

    def _client(self) -> Any:
        with self._translated(None, "connect to"):
            return self.client.get()

    def _presigning_client(self) -> Any:
        """A client in the bucket's own region: a presigned URL is signed for one region and used without
        the redirects an SDK follows. With an endpoint URL (MinIO, tests) the usual client does."""
        if self.client.endpoint_url:
            return self._client()
        if self._presigner is None:
            response = self.call(None, "find the region of", lambda s3: s3.head_bucket(Bucket=self.name))
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = response.get("BucketRegion") or headers.get("x-amz-bucket-region")
            if region:
                with self._translated(None, "connect to"):
                    self._presigner = self.client.make(region=region)
            else:
                self._presigner = self._client()
        return self._presigner

    @contextlib.contextmanager
    def _translated(self, key: str | None, doing: str) -> Iterator[None]:
        try:
            yield
        except ArtifactError:
            raise
        except Exception as exc:
            translated = _translate(exc, self.where(key), doing, self.client.endpoint_url)
            if translated is exc:
                raise
            raise translated from exc


class _Missing(Exception):
    """The object asked for does not exist (raised inside `Bucket.call` only)."""


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
