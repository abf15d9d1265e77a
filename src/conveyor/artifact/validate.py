"""Check that a tar archive is safe to unpack as a release before it is shipped anywhere."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conveyor.artifact._tree import Kind, Tree
from conveyor.artifact.compression import detect, read_errors, zstd_reader
from conveyor.errors import ArtifactError

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveSummary:
    """What a valid archive holds."""

    files: int  # regular files and hard links: the files a release will have once unpacked
    size: int  # bytes of regular file content
    members: int  # every entry of the archive, directories and links included


def member_kind(label: str, member: tarfile.TarInfo) -> Kind:
    """The kind of path an archive member makes, or an ArtifactError for kinds a release may not hold."""
    if member.isreg():
        return Kind.FILE
    if member.isdir():
        return Kind.DIR
    if member.issym():
        return Kind.SYMLINK
    if member.islnk():
        return Kind.HARDLINK
    if member.ischr():
        what = "a character device"
    elif member.isblk():
        what = "a block device"
    elif member.isfifo():
        what = "a fifo"
    else:
        what = f"of unsupported type {member.type.decode('ascii', 'replace')!r}"
    raise ArtifactError(f"{label}: member {member.name!r} is {what}")


@contextmanager
def open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """Open a .tar, .tar.gz, .tgz or .tar.zst for reading, turning read failures into ArtifactError."""
    label = f"artifact {path}"
    errors = read_errors()
    raw: BinaryIO | None = None
    try:
        if detect(path) == "zstd":
            raw = zstd_reader(path)
            archive = tarfile.open(fileobj=raw, mode="r:")  # noqa: SIM115 - closed by the `with` below
        else:
            archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the `with` below, once open
    except FileNotFoundError as exc:
        raise ArtifactError(f"{label} does not exist") from exc
    except tarfile.ReadError as exc:
        _close(raw)
        raise ArtifactError(f"{label} is not a tar archive (.tar, .tar.gz, .tgz or .tar.zst): {exc}") from exc
    except errors as exc:
        _close(raw)
        raise ArtifactError(f"{label} cannot be read: {exc}") from exc
    try:
        with archive:
            yield archive
    except ArtifactError:
        raise
    except errors as exc:
        raise ArtifactError(f"{label} is truncated or corrupt: {exc}") from exc
    finally:
        _close(raw)


def _close(raw: BinaryIO | None) -> None:
    if raw is not None:
        raw.close()


def read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    """Yield a regular member's content in chunks, checking that all of it is there."""
    stream = archive.extractfile(member)
    if stream is None:  # pragma: no cover - only happens for non-regular members
        return
    remaining = member.size
    with stream:
        while chunk := stream.read(_CHUNK):
            remaining -= len(chunk)
            yield chunk
    if remaining != 0:
        raise tarfile.ReadError(f"member {member.name!r} ends {remaining} bytes early")


def check_end(archive: tarfile.TarFile) -> None:
    """Refuse an archive whose member list stops early, and read the rest so compressed streams are verified.

    tarfile quietly stops at a missing or damaged header after the first member, so an archive cut at a
    member boundary would look complete; the end-of-archive block tells the two apart.
    """
    archive.fileobj.seek(archive.offset)
    end = archive.fileobj.read(tarfile.BLOCKSIZE)
    if len(end) < tarfile.BLOCKSIZE:
        raise tarfile.ReadError("it ends without the end-of-archive marker")
    if end.strip(tarfile.NUL):
        raise tarfile.ReadError(f"unreadable header at byte {archive.offset}")
    while archive.fileobj.read(_CHUNK):
        pass


def validate_tarball(path: Path) -> ArchiveSummary:
    """Read every member of the archive at `path` and refuse anything unsafe to unpack as a release."""
    label = f"artifact {path}"
    tree = Tree(label)
    files = size = members = 0
    with open_archive(path) as archive:
        for member in archive:
            members += 1
            kind = member_kind(label, member)
            tree.add(member.name, kind, member.linkname)
            if kind is Kind.FILE:
                files += 1
                size += member.size
                for _chunk in read_member(archive, member):
                    pass
            elif kind is Kind.HARDLINK:
                files += 1
        check_end(archive)
    if members == 0:
        raise ArtifactError(f"{label} is empty")
    tree.check_links()
    return ArchiveSummary(files=files, size=size, members=members)
