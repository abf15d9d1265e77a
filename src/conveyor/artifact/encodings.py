"""Another encoding of a release's tarball, for hosts that cannot decompress the one it was stored in.

With `artifact.compression: auto` a release is stored as zstd (several times cheaper for hosts to unpack);
a host without zstd gets the same tar stream gzip-compressed instead. That copy is made on the controller
the first time a host needs it, from the stored tarball, and kept beside it: made once, reused by every
later deployment. It is the same tar stream, byte for byte, so the host unpacks the same release.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from conveyor.artifact.build import HashingSink
from conveyor.artifact.compression import SUFFIXES, Compression, compressed_writer, read_errors, zstd_reader
from conveyor.artifact.release import Release
from conveyor.errors import ArtifactError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class Encoded:
    """A release's tarball in an encoding of its own: where it is, and its sha256 (what the host verifies)."""

    release: str
    compression: Compression
    path: Path
    sha256: str
    size: int


def reencode(release: Release, directory: Path, compression: Compression = "gzip") -> Encoded:
    """The tarball of `release` compressed with `compression` (made under `directory` once, then reused)."""
    if release.compression == compression:
        return Encoded(release.id, compression, release.path, release.sha256, release.size)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{release.id}{SUFFIXES[compression]}"
    meta = directory / f"{release.id}.{compression}.json"
    try:
        data = json.loads(meta.read_text())
        if data["of_sha256"] == release.sha256 and path.stat().st_size == data["size"]:
            return Encoded(release.id, compression, path, data["sha256"], data["size"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{release.id}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            hashing = HashingSink(raw)
            with _decompressed(release) as source, compressed_writer(cast(BinaryIO, hashing), compression) as out:
                shutil.copyfileobj(source, out, _BLOCK)
        encoded = Encoded(release.id, compression, path, hashing.digest.hexdigest(), hashing.size)
        os.replace(temp, path)
        meta_temp = meta.with_name(f".{meta.name}.part")
        meta_temp.write_text(json.dumps({"of_sha256": release.sha256, "sha256": encoded.sha256,
                                         "size": encoded.size}))
        os.replace(meta_temp, meta)
        return encoded
    except read_errors() as exc:
        raise ArtifactError(f"release {release.id}: cannot make its {compression} copy: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


@contextlib.contextmanager
def _decompressed(release: Release) -> Iterator[BinaryIO]:
    """The release's tar stream, decompressed."""
    if release.compression == "zstd":
        with zstd_reader(release.path) as reader:
            yield reader
    elif release.compression == "gzip":
        with gzip.open(release.path, "rb") as unzipped:
            yield cast(BinaryIO, unzipped)
    else:
        with release.path.open("rb") as reader:
            yield reader
