"""The S3 artifact store: releases in a bucket, the source of truth, with a local cache beside the config.

Under `s3://bucket/prefix/`:

    releases/<release-id>.tar.gz     the tarball (`.tar.zst`, `.tar`: the cache's file name), uploaded first
    releases/<release-id>.json       its manifest, uploaded last, so a listed release is complete
    pointers/<env>/<region>.json     the release each (environment, region) should run (see pointers.py)

Region stores (`artifact.stores`) hold the same layout in a bucket of their own, so hosts download inside
their region; a release is copied to one the first time it is deployed there (`replicate`).

- `s3://bucket/prefix` URLs are read where the config is (conveyor.config.s3), checked against the names AWS
  allows, and re-exported here;
- client.py: boto3's client (loaded on first use) and one bucket's objects, every AWS error an ArtifactError
  naming the bucket and key;
- store.py: `S3Store`, the `ArtifactStore` over a bucket: the cache, region stores, presigned URLs.
"""

from conveyor.artifact.s3.client import INSTALL_HINT
from conveyor.artifact.s3.store import S3Store
from conveyor.config.s3 import S3Location, parse_s3_url

__all__ = ["INSTALL_HINT", "S3Location", "S3Store", "parse_s3_url"]
