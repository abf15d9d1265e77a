"""Artifacts: build, validate, content-address and store the releases Conveyor ships.

- release.py: a release (id, sha256, manifest); build.py, ingest.py, validate.py, compression.py: packing a
  build into a checked tarball; delta.py: what changed between two releases;
- base.py: `ArtifactStore`, the interface every store implements; pointers.py: the region pointer document;
- store.py: `LocalStore`, a directory; s3/: `S3Store`, a bucket with a local cache (boto3 loads on first use).
"""

from conveyor.artifact.base import ArtifactStore
from conveyor.artifact.build import PackResult, content_hash, pack, run_build
from conveyor.artifact.ingest import build_release
from conveyor.artifact.release import RELEASE_ID_RE, Release, git_info, is_release_id, release_id
from conveyor.artifact.store import DEFAULT_STORE_DIR, LocalStore
from conveyor.artifact.validate import ArchiveSummary, validate_tarball

__all__ = [
    "DEFAULT_STORE_DIR",
    "RELEASE_ID_RE",
    "ArchiveSummary",
    "ArtifactStore",
    "LocalStore",
    "PackResult",
    "Release",
    "build_release",
    "content_hash",
    "git_info",
    "is_release_id",
    "pack",
    "release_id",
    "run_build",
    "validate_tarball",
]
