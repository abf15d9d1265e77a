"""How release tarballs are compressed: gzip (everywhere), zstd (smaller, several times cheaper for hosts to
unpack) or none (for fast links, where the bytes cost less than the CPU).

A tarball is compressed once, when it enters the store; hosts decompress it while they unpack it. The
format is recorded in the release manifest and recognised from the file's first bytes when reading.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, cast

from conveyor.errors import ArtifactError

Compression = Literal["gzip", "zstd", "none"]
COMPRESSIONS: tuple[Compression, ...] = ("gzip", "zstd", "none")
DEFAULT: Compression = "gzip"

# What `artifact.compression` may say: a compression, or auto (stored as zstd; a host that lacks zstd is sent
# a gzip copy, see encodings.py).
Choice = Literal["auto", "gzip", "zstd", "none"]

SUFFIXES: dict[Compression, str] = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}

# zstd level 9: about 8% smaller than level 3 for a release, decompressing just as fast; a tarball is
# compressed once per release, so the extra build time is paid once, not per host.
ZSTD_LEVEL = 9
GZIP_LEVEL = 9

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd() -> Any:
    """The zstd module: the standard library's from Python 3.14, its backport before."""
    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found, unused-ignore, no-redef]
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ArtifactError("zstd compression needs the backports.zstd package "
                                "(pip install backports.zstd), or set artifact.compression: gzip") from exc
    return zstd


def stored_as(choice: Choice) -> Compression:
    """How a release is compressed in the store under `artifact.compression: choice`."""
    return "zstd" if choice == "auto" else choice


def detect(path: Path) -> Compression:
    """The compression of the file at `path`, from its first bytes (OSError if it cannot be read)."""
    with path.open("rb") as data:
        head = data.read(4)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


@contextmanager
def compressed_writer(raw: BinaryIO, compression: Compression) -> Iterator[IO[bytes]]:
    """A file that compresses what is written to it into `raw`, deterministically (no names, no times)."""
    if compression == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=GZIP_LEVEL) as out:
            yield cast(IO[bytes], out)
    elif compression == "zstd":
        with _zstd().ZstdFile(raw, mode="wb", level=ZSTD_LEVEL) as out:
            yield out
    else:
        yield raw


def zstd_reader(path: Path) -> BinaryIO:
    """A file object that reads the zstd file at `path` decompressed."""
    reader: BinaryIO = _zstd().ZstdFile(path, mode="rb")
    return reader


@contextmanager
def open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """Open a tarball of any of the supported compressions for reading (OSError/TarError if it cannot be)."""
    if detect(path) == "zstd":
        with zstd_reader(path) as raw, tarfile.open(fileobj=raw, mode="r:") as archive:
            yield archive
    else:
        with tarfile.open(path, "r:*") as archive:
            yield archive


def read_errors() -> tuple[type[Exception], ...]:
    """Errors a damaged or truncated tarball of any compression raises while it is read."""
    errors: tuple[type[Exception], ...] = (tarfile.TarError, EOFError, zlib.error, OSError)
    try:
        return (*errors, _zstd().ZstdError)
    except ArtifactError:  # pragma: no cover
        return errors
