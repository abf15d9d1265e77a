"""Deltas: ship only what changed between the release a host runs and the one it is getting.

A delta is a deterministic tarball of the target's entries that differ from the base (new, changed content,
mode, type or link target) plus the list of the base's paths the target no longer has. A host builds the
new release by hard-linking the base (`cp -al`), removing the deleted paths and unpacking the delta over
it (tar replaces a file by unlinking it first, so the base is never written to). The release directory is
complete before anything points at it, exactly as with a full transfer.

Given the shared paths, a delta carries no entry at or under one, nor deletes one: what lives there on a host is
the host's (uploads, logs, settings), and a release's copy of it only ever seeds a host that lacks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.artifact.compression import SUFFIXES, Compression, compressed_writer, open_tar, read_errors
from conveyor.artifact.release import Release
from conveyor.artifact.store import write_atomically
from conveyor.errors import ArtifactError

Entry = tuple[str, int, str]  # (type, mode, sha256 of the content or the link target)
MAX_DELETIONS = 2000          # more than this and a full transfer is simpler (and the command line stays short)


@dataclass(frozen=True)
class Delta:
    """A delta tarball in the store, and what it does."""

    base: str
    target: str
    path: Path
    sha256: str
    size: int
    changed: int
    deletions: tuple[str, ...]


def _entries(tarball: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    try:
        with open_tar(tarball) as archive:
            for member in archive:
                name = member.name.rstrip("/")
                if member.isdir():
                    out[name] = ("d", member.mode, "")
                elif member.issym():
                    out[name] = ("l", member.mode, member.linkname)
                elif member.isfile():
                    source = archive.extractfile(member)
                    assert source is not None
                    digest = hashlib.sha256()
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                    out[name] = ("f", member.mode, digest.hexdigest())
    except read_errors() as exc:
        raise ArtifactError(f"cannot read {tarball}: {exc}") from exc
    return out


def file_manifest(release: Release) -> dict[str, Entry]:
    """Every entry of a release with its type, mode and content hash; cached beside the tarball."""
    cache = release.path.with_name(f"{release.id}.files.json")
    try:
        data = json.loads(cache.read_text())
        if data.get("sha256") == release.sha256:
            return {name: (kind, mode, digest) for name, (kind, mode, digest) in data["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    entries = _entries(release.path)
    write_atomically(cache, json.dumps({"sha256": release.sha256, "entries": entries}, sort_keys=True))
    return entries


def is_shared(name: str, shared: Sequence[str]) -> bool:
    """Whether an entry of a release lies at or under one of the shared paths."""
    return any(name == path or name.startswith(path + "/") for path in shared)


def build_delta(base: Release, target: Release, directory: Path, *, shared: Sequence[str] = (),
                compression: Compression | None = None) -> Delta | None:
    """The delta from `base` to `target` (made once, then reused), or None when a full transfer is better.

    `shared` is the config's `shared:` list, the one the hosts are given: entries at or under a shared path are
    left out of the delta, changed or gone alike (a delta made for another list is another delta)."""
    directory.mkdir(parents=True, exist_ok=True)
    compression = compression or target.compression  # the target's, or another for a host that lacks it
    path = directory / f"{target.id}.from-{base.id}{SUFFIXES[compression]}"
    meta = path.with_suffix(".json")
    shared = sorted(set(shared))
    try:
        data = json.loads(meta.read_text())
        if path.exists() and data["target_sha256"] == target.sha256 and data["base_sha256"] == base.sha256 \
                and data.get("shared", []) == shared:
            return Delta(base.id, target.id, path, data["sha256"], data["size"], data["changed"],
                         tuple(data["deletions"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    old, new = file_manifest(base), file_manifest(target)
    old = {name: entry for name, entry in old.items() if not is_shared(name, shared)}
    new = {name: entry for name, entry in new.items() if not is_shared(name, shared)}
    changed = sorted(name for name, entry in new.items() if old.get(name) != entry)
    deletions = sorted(name for name in old if name not in new)
    # Remove only the topmost deleted path of a deleted tree.
    deletions = [name for name in deletions if not any(name.startswith(other + "/") for other in deletions)]
    if len(deletions) > MAX_DELETIONS or len(changed) > len(new) // 2:
        return None  # most of it changed: a full transfer costs the host less than linking then replacing
    wanted = set(changed)
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=".delta-", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw, \
                compressed_writer(raw, compression) as compressed, \
                tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as out, \
                open_tar(target.path) as archive:
            for member in archive:
                if member.name.rstrip("/") in wanted:
                    out.addfile(member, archive.extractfile(member) if member.isfile() else None)
        digest = hashlib.sha256()
        with open(temp, "rb") as written:
            while chunk := written.read(1 << 20):
                digest.update(chunk)
        os.replace(temp, path)
    except read_errors() as exc:
        temp.unlink(missing_ok=True)
        raise ArtifactError(f"cannot build the delta {base.id} → {target.id}: {exc}") from exc
    delta = Delta(base.id, target.id, path, digest.hexdigest(), path.stat().st_size, len(changed),
                  tuple(deletions))
    write_atomically(meta, json.dumps({
        "base_sha256": base.sha256, "target_sha256": target.sha256, "sha256": delta.sha256, "size": delta.size,
        "changed": delta.changed, "deletions": list(delta.deletions), "shared": shared}))
    return delta
