"""run_build and pack: building, and packing the same content into the same bytes every time."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from conveyor.artifact import content_hash, pack, run_build
from conveyor.errors import ArtifactError


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create `files` (relative name -> content) under `root`."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def set_mtimes(root: Path, seconds: int) -> None:
    """Give every path under `root` the same modification time."""
    for path in [root, *root.rglob("*")]:
        os.utime(path, (seconds, seconds), follow_symlinks=False)


def members(tarball: Path) -> list[tarfile.TarInfo]:
    """The members of a tarball, in archive order."""
    with tarfile.open(tarball, "r:gz") as archive:
        return archive.getmembers()


APP = {
    "index.html": b"<h1>www</h1>\n",
    "bin/start": b"#!/bin/sh\nexec python -m www\n",
    "www/__init__.py": b"",
    "www/app.py": b"print('hello')\n",
}


def test_a_successful_build_runs_in_the_given_directory(tmp_path: Path) -> None:
    run_build("mkdir dist && pwd > dist/where", tmp_path)
    assert (tmp_path / "dist" / "where").read_text().strip() == str(tmp_path)


def test_a_failing_build_reports_its_exit_code_and_the_last_twenty_lines(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        run_build("for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3", tmp_path)
    message = caught.value.message
    assert "build command" in message
    assert "failed with exit code 3" in message
    tail = message.splitlines()[-20:]
    assert tail[0] == "line 12"
    assert tail[-2:] == ["line 30", "oops"]
    assert "line 11\n" not in message


def test_a_build_in_a_missing_directory_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="could not start"):
        run_build("true", tmp_path / "missing")


def test_packing_the_same_directory_twice_gives_the_same_sha256(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    set_mtimes(source, 1_000_000)
    first = pack(source, tmp_path / "first.tar.gz")
    set_mtimes(source, 2_000_000)
    second = pack(source, tmp_path / "second.tar.gz")
    assert first.sha256 == second.sha256
    assert (tmp_path / "first.tar.gz").read_bytes() == (tmp_path / "second.tar.gz").read_bytes()


def test_the_pack_result_describes_the_tarball_written(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    dest = tmp_path / "out.tar.gz"
    result = pack(source, dest)
    assert result.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert result.size == dest.stat().st_size
    assert result.files == 4


def test_different_content_gives_a_different_sha256(tmp_path: Path) -> None:
    one = write_tree(tmp_path / "one", APP)
    two = write_tree(tmp_path / "two", {**APP, "www/app.py": b"print('bye')\n"})
    assert pack(one, tmp_path / "one.tar.gz").sha256 != pack(two, tmp_path / "two.tar.gz").sha256


def test_a_changed_executable_bit_gives_a_different_sha256(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    before = pack(source, tmp_path / "before.tar.gz").sha256
    (source / "bin" / "start").chmod(0o755)
    assert pack(source, tmp_path / "after.tar.gz").sha256 != before


def test_repacking_a_tarball_gives_the_same_sha256_as_packing_the_directory(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    (source / "bin" / "start").chmod(0o755)
    os.symlink("bin/start", source / "start")
    # Written by hand the way a build tool might: './' prefixes, owners, odd order, no directory entries.
    handmade = tmp_path / "dist.tgz"
    with tarfile.open(handmade, "w:gz") as archive:
        for name in sorted(APP, reverse=True):
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(APP[name])
            info.mtime = 1_700_000_000
            info.uid, info.uname = 1000, "builder"
            info.mode = 0o775 if name == "bin/start" else 0o664
            archive.addfile(info, io.BytesIO(APP[name]))
        link = tarfile.TarInfo("./start")
        link.type, link.linkname = tarfile.SYMTYPE, "bin/start"
        archive.addfile(link)
    from_directory = pack(source, tmp_path / "from-dir.tar.gz")
    from_tarball = pack(handmade, tmp_path / "from-tar.tar.gz")
    assert from_tarball.sha256 == from_directory.sha256
    assert from_tarball.files == 4


def test_an_uncompressed_tar_can_be_repacked(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    plain = tmp_path / "dist.tar"
    with tarfile.open(plain, "w") as archive:
        archive.add(source, arcname=".")
    assert pack(plain, tmp_path / "a.tar.gz").sha256 == pack(source, tmp_path / "b.tar.gz").sha256


def test_entries_are_sorted_relative_and_stripped_of_owners_and_times(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    dest = tmp_path / "out.tar.gz"
    pack(source, dest)
    packed = members(dest)
    assert [m.name for m in packed] == [
        "bin",
        "bin/start",
        "index.html",
        "www",
        "www/__init__.py",
        "www/app.py",
    ]
    for member in packed:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")


def test_modes_are_normalised(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    (source / "bin" / "start").chmod(0o700)
    (source / "index.html").chmod(0o600)
    (source / "www" / "app.py").chmod(0o4777)
    (source / "www").chmod(0o700)
    dest = tmp_path / "out.tar.gz"
    pack(source, dest)
    modes = {m.name: m.mode for m in members(dest)}
    assert modes == {
        "bin": 0o755,
        "bin/start": 0o755,
        "index.html": 0o644,
        "www": 0o755,
        "www/__init__.py": 0o644,
        "www/app.py": 0o755,
    }


def test_the_gzip_header_carries_no_time_and_no_file_name(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    dest = tmp_path / "out.tar.gz"
    pack(source, dest)
    header = dest.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] & 0x08 == 0  # FNAME
    assert header[4:8] == b"\0\0\0\0"  # MTIME
    with gzip.open(dest) as stream:
        assert stream.read(1)


def test_symlinks_are_kept_as_symlinks(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    os.symlink("www", source / "current")
    dest = tmp_path / "out.tar.gz"
    pack(source, dest)
    link = next(m for m in members(dest) if m.name == "current")
    assert link.issym()
    assert link.linkname == "www"


def test_a_directory_symlink_leaving_the_source_is_refused(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    os.symlink("../../secrets", source / "www" / "secrets")
    with pytest.raises(ArtifactError) as caught:
        pack(source, tmp_path / "out.tar.gz")
    assert caught.value.message == (
        f"artifact {source}: path 'www/secrets' is a symlink leaving the release ('../../secrets')"
    )


def test_an_absolute_symlink_in_the_source_is_refused(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    os.symlink("/etc/passwd", source / "passwd")
    with pytest.raises(ArtifactError, match="path 'passwd' is a symlink to an absolute path"):
        pack(source, tmp_path / "out.tar.gz")


def test_a_fifo_in_the_source_is_refused(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    os.mkfifo(source / "www" / "pipe")
    with pytest.raises(ArtifactError) as caught:
        pack(source, tmp_path / "out.tar.gz")
    assert caught.value.message == f"artifact {source}: path 'www/pipe' is a fifo"


def test_hard_links_in_a_tarball_are_packed_as_files(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", {"a": b"same\n", "b": b"same\n"})
    linked = tmp_path / "linked.tar.gz"
    with tarfile.open(linked, "w:gz") as archive:
        info = tarfile.TarInfo("a")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"same\n"))
        link = tarfile.TarInfo("b")
        link.type, link.linkname = tarfile.LNKTYPE, "a"
        archive.addfile(link)
    result = pack(linked, tmp_path / "out.tar.gz")
    assert [m.type for m in members(tmp_path / "out.tar.gz")] == [tarfile.REGTYPE, tarfile.REGTYPE]
    assert result.sha256 == pack(source, tmp_path / "dir.tar.gz").sha256


def test_a_hostile_tarball_is_refused_before_it_is_repacked(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as archive:
        info = tarfile.TarInfo("../escape")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArtifactError, match=r"member '\.\./escape' leaves the release"):
        pack(hostile, tmp_path / "out.tar.gz")
    assert not (tmp_path / "out.tar.gz").exists()


def test_packing_into_the_source_directory_is_refused(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    with pytest.raises(ArtifactError, match="lies inside it"):
        pack(source, source / "dist" / "www.tar.gz")


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="is empty"):
        pack(tmp_path / "empty", tmp_path / "out.tar.gz")


def test_a_missing_source_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        pack(tmp_path / "dist", tmp_path / "out.tar.gz")


def test_pack_leaves_nothing_but_the_tarball_behind(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    repacked = tmp_path / "dist.tar.gz"
    with tarfile.open(repacked, "w:gz") as archive:
        archive.add(source, arcname=".")
    out = tmp_path / "out"
    out.mkdir()
    pack(source, out / "a.tar.gz")
    pack(repacked, out / "b.tar.gz")
    assert sorted(p.name for p in out.iterdir()) == ["a.tar.gz", "b.tar.gz"]


def test_a_failed_pack_leaves_no_temp_file(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    os.mkfifo(source / "pipe")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArtifactError):
        pack(source, out / "a.tar.gz")
    assert list(out.iterdir()) == []


def test_content_hash_is_the_sha256_of_the_packed_tarball(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "app", APP)
    assert content_hash(source) == pack(source, tmp_path / "out.tar.gz").sha256
