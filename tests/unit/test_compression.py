"""Compression choices: gzip, zstd and none pack the same release, hosts unpack each one the same way,
and a host that cannot decompress zstd says so instead of half-unpacking."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.artifact import LocalStore, build_release, pack, validate_tarball
from conveyor.artifact.compression import COMPRESSIONS, SUFFIXES, detect
from conveyor.artifact.delta import build_delta
from conveyor.engine import commands
from conveyor.engine.exits import HostExit
from conveyor.engine.probe import parse_probe, tail
from conveyor.errors import ArtifactError

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")

FILES = {f"app/m{i}.py": f"print({i})\n" * (i + 1) for i in range(30)} | {
    "bin/start": "#!/bin/sh\nexec true\n",
    "static/blob.bin": "x" * 50_000,
}


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def unpacked(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def run(command: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["sh", "-c", command], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False, timeout=60, env=env)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_each_compression_packs_deterministically_and_is_recognised(tmp_path: Path, compression: str) -> None:
    source = tree(tmp_path / "src", FILES)
    first = pack(source, tmp_path / f"a{SUFFIXES[compression]}", compression)  # type: ignore[arg-type]
    second = pack(source, tmp_path / f"b{SUFFIXES[compression]}", compression)  # type: ignore[arg-type]
    assert first == second
    assert detect(tmp_path / f"a{SUFFIXES[compression]}") == compression
    summary = validate_tarball(tmp_path / f"a{SUFFIXES[compression]}")
    assert summary.files == len(FILES)


def test_zstd_is_smaller_than_gzip_and_none_is_the_plain_tar(tmp_path: Path) -> None:
    source = tree(tmp_path / "src", FILES)
    sizes = {c: pack(source, tmp_path / f"r{SUFFIXES[c]}", c).size for c in COMPRESSIONS}  # type: ignore[arg-type]
    assert sizes["zstd"] < sizes["gzip"] < sizes["none"]


def test_a_truncated_zstd_tarball_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.tar.zst"
    pack(tree(tmp_path / "src", FILES), path, "zstd")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"truncated or corrupt|cannot be read"):
        validate_tarball(path)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_the_store_keeps_the_release_in_its_compression(tmp_path: Path, compression: str) -> None:
    store = LocalStore(tmp_path / "store")
    release, created = build_release(tree(tmp_path / "src", FILES), store, user="t", now=NOW, git=None,
                                     compression=compression)  # type: ignore[arg-type]
    assert created
    assert release.compression == compression
    assert release.path.name == f"{release.id}{SUFFIXES[compression]}"  # type: ignore[index]
    assert detect(release.path) == compression
    assert store.get(release.id) == release
    assert [r.id for r in store.list()] == [release.id]


@pytest.mark.parametrize("compression", [pytest.param("zstd", marks=needs_zstd), "gzip", "none"])
def test_a_host_unpacks_each_compression_into_the_same_release(tmp_path: Path, compression: str) -> None:
    store = LocalStore(tmp_path / "store")
    release, _ = build_release(tree(tmp_path / "src", FILES), store, user="t", now=NOW, git=None,
                               compression=compression)  # type: ignore[arg-type]
    host = tmp_path / "host"
    done = run(commands.receive(str(host), release.id, release.sha256, [], compression), release.path.read_bytes())
    assert done.returncode == 0, done.stdout
    assert unpacked(host / "releases" / release.id) == FILES
    assert os.access(host / "releases" / release.id / "bin" / "start", os.X_OK) is False  # modes as packed
    assert os.listdir(host / "incoming") == []


@needs_zstd
def test_a_damaged_zstd_stream_is_caught_by_the_checksum_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.tar.zst"
    packed = pack(tree(tmp_path / "src", FILES), path, "zstd")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    host = tmp_path / "host"
    done = run(commands.receive(str(host), "R1", packed.sha256, [], "zstd"), bytes(data))
    assert done.returncode in (10, 11), done.stdout
    assert not (host / "releases" / "R1").exists()
    assert os.listdir(host / "incoming") == []


@needs_zstd
def test_a_zstd_delta_builds_the_complete_release(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    base, _ = build_release(tree(tmp_path / "a", FILES), store, user="t", now=NOW, git=None, compression="zstd")
    changed = FILES | {"app/m3.py": "changed\n"}
    target, _ = build_release(tree(tmp_path / "b", changed), store, user="t", now=NOW + timedelta(minutes=1),
                              git=None, compression="zstd")
    delta = build_delta(base, target, store.root / "deltas")
    assert delta is not None
    assert delta.changed == 1
    assert detect(delta.path) == "zstd"
    host = tmp_path / "host"
    assert run(commands.receive(str(host), base.id, base.sha256, [], "zstd"), base.path.read_bytes()).returncode == 0
    done = run(commands.receive_delta(str(host), target.id, base.id, delta.sha256, [], [], "zstd"),
               delta.path.read_bytes())
    assert done.returncode == 0, done.stdout
    assert unpacked(host / "releases" / target.id) == changed


def _path_without_zstd(tmp_path: Path) -> str:
    """A PATH with the tools the host scripts use, and no zstd."""
    bin_dir = tmp_path / "bin-without-zstd"
    bin_dir.mkdir()
    for tool in ("sh", "tar", "gzip", "sha256sum", "mkdir", "ln", "mv", "rm", "tee", "cat", "mkfifo", "readlink",
                 "tail", "cp", "dirname", "printf"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_a_host_without_zstd_says_so_in_its_probe_and_refuses_a_zstd_release(tmp_path: Path) -> None:
    env = {"PATH": _path_without_zstd(tmp_path), "LC_ALL": "C"}
    host = tmp_path / "host"
    probed = run(commands.probe(str(host), "R1"), env=env)
    assert probed.returncode == 0, probed.stdout
    assert parse_probe(probed.stdout.decode()).zstd is False
    path = tmp_path / "r.tar.zst"
    packed = pack(tree(tmp_path / "src", FILES), path, "zstd")
    done = run(commands.receive(str(host), "R1", packed.sha256, [], "zstd"), path.read_bytes(), env=env)
    assert done.returncode == HostExit.TOOL_MISSING, done.stdout
    assert "zstd is not installed on this host" in tail(done.stdout.decode())
    assert not (host / "releases" / "R1").exists()


@needs_zstd
def test_a_host_with_zstd_says_so_in_its_probe(tmp_path: Path) -> None:
    probed = run(commands.probe(str(tmp_path / "host"), ""))
    assert parse_probe(probed.stdout.decode()).zstd is True


def test_an_unknown_compression_word_is_refused_by_the_host(tmp_path: Path) -> None:
    data = b"irrelevant"
    done = run(commands.receive(str(tmp_path / "host"), "R1", hashlib.sha256(data).hexdigest(), [], "brotli"), data)
    assert done.returncode == HostExit.BAD_ARGUMENT, done.stdout
    assert "unknown compression brotli" in done.stdout.decode()


# -- auto: a gzip copy for hosts without zstd -------------------------------------------------------------
def test_auto_stores_zstd() -> None:
    from conveyor.artifact.compression import stored_as

    assert stored_as("auto") == "zstd"
    assert [stored_as(c) for c in COMPRESSIONS] == list(COMPRESSIONS)


def test_a_gzip_copy_is_the_same_tar_stream_made_once_and_remade_when_its_record_disagrees(tmp_path: Path) -> None:
    import gzip

    from conveyor.artifact.compression import zstd_reader
    from conveyor.artifact.encodings import reencode

    store = LocalStore(tmp_path / "store")
    release, _ = build_release(tree(tmp_path / "src", FILES), store, user="u", now=NOW, git=None, compression="zstd")
    copies = tmp_path / "copies"
    copy = reencode(release, copies, "gzip")
    assert copy.path == copies / f"{release.id}.tar.gz"
    assert detect(copy.path) == "gzip"
    assert copy.sha256 == hashlib.sha256(copy.path.read_bytes()).hexdigest()
    assert copy.size == copy.path.stat().st_size
    with zstd_reader(release.path) as original:
        assert gzip.decompress(copy.path.read_bytes()) == original.read()  # byte for byte the same tar stream
    made = copy.path.stat().st_mtime_ns
    assert reencode(release, copies, "gzip") == copy
    assert copy.path.stat().st_mtime_ns == made
    copy.path.write_bytes(b"truncated")  # a copy that is not what its record says is made again
    again = reencode(release, copies, "gzip")
    assert again.sha256 == copy.sha256
    assert detect(again.path) == "gzip"
    assert reencode(release, copies, "zstd").path == release.path  # the stored encoding is the release itself
