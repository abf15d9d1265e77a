"""`s3://bucket/prefix` URLs: parsed and checked against the names AWS allows (no boto3 needed).

The config reads them (`artifact.store`, `artifact.stores`) so that a bad bucket name is a config error with
its line; the S3 artifact store (conveyor.artifact.s3) opens the location they name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9._=-]+$")
_RESERVED_STARTS = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_ENDS = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


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
