"""Run the build command and pack its output into a deterministic, content-addressed tarball."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conveyor.artifact._tree import Kind, Tree
from conveyor.artifact.compression import DEFAULT as DEFAULT_COMPRESSION
from conveyor.artifact.compression import Compression, compressed_writer
from conveyor.artifact.validate import member_kind, open_archive, read_member, validate_tarball
from conveyor.errors import ArtifactError

OUTPUT_TAIL_LINES = 20
DIR_MODE = 0o755
EXECUTABLE_MODE = 0o755
FILE_MODE = 0o644
SYMLINK_MODE = 0o777


@dataclass(frozen=True)
class PackResult:
    """The tarball `pack` wrote."""

    sha256: str  # of the tarball's bytes: the release's content hash
    size: int  # bytes of the tarball
    files: int  # regular files in it (hard links are packed as files)


@dataclass(frozen=True)
class _File:
    """Where a regular file's content comes from, and whether it runs."""

    content: Path
    size: int
    executable: bool


def run_build(command: str, cwd: Path) -> None:
    """Run the build command with `sh -c` in `cwd`; ArtifactError with its output tail if it fails."""
    try:
        completed = subprocess.run(
            ["sh", "-c", command],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    except OSError as exc:
        raise ArtifactError(f"build command {command!r} could not start in {cwd}: {exc}") from exc
    if completed.returncode == 0:
        return
    if completed.returncode < 0:
        how = f"was killed by signal {-completed.returncode}"
    else:
        how = f"failed with exit code {completed.returncode}"
    lines = completed.stdout.decode("utf-8", "replace").splitlines()[-OUTPUT_TAIL_LINES:]
    tail = "\n".join(lines) if lines else "(no output)"
    raise ArtifactError(f"build command {command!r} {how} in {cwd}; last lines of its output:\n{tail}")


def pack(source: Path, dest: Path, compression: Compression = DEFAULT_COMPRESSION) -> PackResult:
    """Pack a directory or a tarball into a deterministic tarball at `dest`: same content, same sha256."""
    if source.is_dir():
        if dest.resolve().is_relative_to(source.resolve()):
            raise ArtifactError(f"artifact {source}: cannot pack it into {dest}, which lies inside it")
        tree, files = _walk_directory(source)
        return _write_tarball(tree, files, dest, compression)
    if not source.exists():
        raise ArtifactError(f"artifact {source} does not exist")
    validate_tarball(source)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.unpack-") as spool:
        tree, files = _read_tarball(source, Path(spool))
        return _write_tarball(tree, files, dest, compression)


def content_hash(source: Path) -> str:
    """The sha256 of the deterministic tarball of `source` (a directory or a tarball)."""
    with tempfile.TemporaryDirectory(prefix="conveyor-hash-") as scratch:
        return pack(source, Path(scratch) / "release.tar.gz").sha256


def _describe_mode(mode: int) -> str:
    """Name a kind of file a release may not hold."""
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    return "of an unsupported file type"


def _walk_directory(source: Path) -> tuple[Tree, dict[str, _File]]:
    """Every path under `source`, checked; symlinks are kept as links, never followed."""
    tree = Tree(f"artifact {source}", noun="path")
    files: dict[str, _File] = {}
    pending = [(source, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as scan:
                items = sorted(scan, key=lambda item: item.name)
            for item in items:
                name = prefix + item.name
                status = item.stat(follow_symlinks=False)
                mode = status.st_mode
                if stat.S_ISLNK(mode):
                    tree.add(name, Kind.SYMLINK, os.readlink(item.path))
                elif stat.S_ISDIR(mode):
                    tree.add(name, Kind.DIR)
                    pending.append((Path(item.path), name + "/"))
                elif stat.S_ISREG(mode):
                    tree.add(name, Kind.FILE)
                    files[name] = _File(Path(item.path), status.st_size, bool(mode & 0o111))
                else:
                    raise tree.refuse(name, f"is {_describe_mode(mode)}")
        except OSError as exc:
            raise ArtifactError(f"artifact {source}: cannot read {directory}: {exc}") from exc
    tree.check_links()
    if not tree.kinds:
        raise ArtifactError(f"artifact {source} is empty")
    return tree, files


def _read_tarball(source: Path, spool: Path) -> tuple[Tree, dict[str, _File]]:
    """Copy each regular member of a validated tarball into `spool`, so it can be re-packed in any order."""
    label = f"artifact {source}"
    tree = Tree(label)
    files: dict[str, _File] = {}
    with open_archive(source) as archive:
        for index, member in enumerate(archive):
            kind = member_kind(label, member)
            name = tree.add(member.name, kind, member.linkname)
            if name is None or kind is not Kind.FILE:
                continue
            content = spool / str(index)
            _copy_member(label, archive, member, content)
            files[name] = _File(content, member.size, bool(member.mode & 0o111))
    for name, original in tree.hardlinks.items():
        files[name] = files[original]
    return tree, files


def _copy_member(label: str, archive: tarfile.TarFile, member: tarfile.TarInfo, content: Path) -> None:
    """Copy a regular member's bytes to `content`; ArtifactError if the disk refuses them."""
    # Damaged archives raise tarfile/zlib errors from read_member; an OSError here is the spool's disk.
    try:
        out = content.open("wb")
    except OSError as exc:
        raise ArtifactError(f"{label}: cannot copy {member.name!r} to {content}: {exc}") from exc
    with out:
        for chunk in read_member(archive, member):
            try:
                out.write(chunk)
            except OSError as exc:
                raise ArtifactError(f"{label}: cannot copy {member.name!r} to {content}: {exc}") from exc


class HashingSink:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Write `data` to the underlying file, hashing it on the way."""
        self.digest.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        """Flush the underlying file."""
        self._raw.flush()

    def tell(self) -> int:
        """Bytes written so far (tarfile asks when it writes straight into the sink, uncompressed)."""
        return self.size


def _tarinfo(name: str, kind: Kind, tree: Tree, files: dict[str, _File]) -> tarfile.TarInfo:
    """A header with everything that varies between machines and builds fixed."""
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if kind is Kind.DIR:
        info.type = tarfile.DIRTYPE
        info.mode = DIR_MODE
    elif kind is Kind.SYMLINK:
        info.type = tarfile.SYMTYPE
        info.mode = SYMLINK_MODE
        info.linkname = tree.symlinks[name]
    else:
        file = files[name]
        info.type = tarfile.REGTYPE
        info.mode = EXECUTABLE_MODE if file.executable else FILE_MODE
        info.size = file.size
    return info


def _write_tarball(tree: Tree, files: dict[str, _File], dest: Path, compression: Compression) -> PackResult:
    """Write the tree as a compressed tarball sorted by path, through a temp file renamed onto `dest`."""
    try:
        fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise ArtifactError(f"cannot write the artifact to {dest}: {exc}") from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink = HashingSink(raw)
            with (
                compressed_writer(sink, compression) as compressed,  # type: ignore[arg-type]
                tarfile.open(
                    fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8"
                ) as archive,
            ):
                for name in sorted(tree.kinds):
                    info = _tarinfo(name, tree.kinds[name], tree, files)
                    if info.isreg():
                        with files[name].content.open("rb") as content:
                            archive.addfile(info, content)
                    else:
                        archive.addfile(info)
            raw.flush()
            os.fsync(raw.fileno())
        temp.chmod(FILE_MODE)
        os.replace(temp, dest)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ArtifactError(f"cannot write the artifact to {dest}: {exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return PackResult(sha256=sink.digest.hexdigest(), size=sink.size, files=len(files))
