"""validate_tarball: what a release archive may hold, and the errors for what it may not."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from conveyor.artifact import ArchiveSummary, validate_tarball
from conveyor.errors import ArtifactError


def regular(name: str, data: bytes = b"content\n") -> tuple[tarfile.TarInfo, bytes]:
    """A regular file member."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    """A member with no data: directory, link, device, fifo."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, b""


def make_tarball(path: Path, *members: tuple[tarfile.TarInfo, bytes], mode: str = "w:gz") -> Path:
    """Write the members, in order, to a tarball at `path`."""
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def refusal(path: Path) -> str:
    """The message validate_tarball refuses `path` with."""
    with pytest.raises(ArtifactError) as caught:
        validate_tarball(path)
    assert caught.value.exit_code == 2
    return caught.value.message


def test_a_plain_release_is_summarised(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz",
        special("app", tarfile.DIRTYPE),
        regular("app/index.html", b"<h1>hi</h1>"),
        regular("app/run.sh", b"#!/bin/sh\n"),
        special("app/start", tarfile.SYMTYPE, "run.sh"),
    )
    assert validate_tarball(tarball) == ArchiveSummary(files=2, size=21, members=4)


def test_member_names_starting_with_dot_slash_are_fine(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tgz", special("./", tarfile.DIRTYPE), regular("./app/index.html"))
    assert validate_tarball(tarball).files == 1


def test_an_uncompressed_tar_is_accepted(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar", regular("index.html"), mode="w")
    assert validate_tarball(tarball).members == 1


def test_an_absolute_member_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("/etc/passwd"))
    assert refusal(tarball) == f"artifact {tarball}: member '/etc/passwd' is an absolute path"


def test_a_member_climbing_out_with_dot_dot_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("../etc/passwd"))
    assert refusal(tarball) == f"artifact {tarball}: member '../etc/passwd' leaves the release ('..')"


def test_a_dot_dot_inside_a_member_name_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("a/../../x"))
    assert "member 'a/../../x' leaves the release ('..')" in refusal(tarball)


def test_a_dot_dot_that_would_stay_inside_is_refused_all_the_same(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("a/../b"))
    assert "member 'a/../b' leaves the release" in refusal(tarball)


def test_a_member_with_an_empty_name_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("ok"), regular(""))
    assert refusal(tarball) == f"artifact {tarball}: a member has an empty path name"


def test_a_symlink_to_an_absolute_path_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", special("etc", tarfile.SYMTYPE, "/etc"))
    assert refusal(tarball) == f"artifact {tarball}: member 'etc' is a symlink to an absolute path ('/etc')"


def test_a_symlink_leaving_the_release_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz",
        special("config", tarfile.DIRTYPE),
        special("config/secrets", tarfile.SYMTYPE, "../../shared/secrets"),
    )
    assert refusal(tarball) == (
        f"artifact {tarball}: member 'config/secrets' is a symlink leaving the release"
        " ('../../shared/secrets')"
    )


def test_symlinks_that_stay_inside_the_release_are_fine(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz",
        regular("lib/app.py"),
        special("bin/app", tarfile.SYMTYPE, "../lib/app.py"),
        special("here", tarfile.SYMTYPE, "."),
        special("lib/dangling", tarfile.SYMTYPE, "not-built-yet"),
    )
    assert validate_tarball(tarball) == ArchiveSummary(files=1, size=8, members=4)


def test_a_symlink_escaping_through_another_symlink_is_refused(tmp_path: Path) -> None:
    # 'up' resolves to the release root, so 'up/..' is its parent even though it looks harmless.
    tarball = make_tarball(
        tmp_path / "www.tar.gz",
        special("up", tarfile.SYMTYPE, "."),
        special("escape", tarfile.SYMTYPE, "up/../etc"),
    )
    assert "member 'escape' is a symlink leaving the release ('up/../etc')" in refusal(tarball)


def test_a_symlink_escaping_through_a_link_defined_later_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz",
        special("escape", tarfile.SYMTYPE, "up/../x"),
        special("up", tarfile.SYMTYPE, "."),
    )
    assert "member 'escape' is a symlink leaving the release ('up/../x')" in refusal(tarball)


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz",
        special("a", tarfile.SYMTYPE, "b"),
        special("b", tarfile.SYMTYPE, "a"),
    )
    assert "is a symlink in a loop" in refusal(tarball)


def test_a_hard_link_to_outside_the_release_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", special("passwd", tarfile.LNKTYPE, "../etc/passwd"))
    assert refusal(tarball) == (
        f"artifact {tarball}: member 'passwd' is a hard link leaving the release ('../etc/passwd')"
    )


def test_a_hard_link_to_an_absolute_path_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", special("passwd", tarfile.LNKTYPE, "/etc/passwd"))
    assert "member 'passwd' is a hard link leaving the release ('/etc/passwd')" in refusal(tarball)


def test_a_hard_link_to_a_later_member_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz", special("copy", tarfile.LNKTYPE, "original"), regular("original")
    )
    assert "member 'copy' is a hard link to 'original', which is not an earlier file" in refusal(tarball)


def test_a_hard_link_to_a_directory_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz", special("dir", tarfile.DIRTYPE), special("copy", tarfile.LNKTYPE, "dir")
    )
    assert "which is not an earlier file" in refusal(tarball)


def test_a_hard_link_to_an_earlier_file_counts_as_a_file(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz", regular("./original"), special("copy", tarfile.LNKTYPE, "./original")
    )
    assert validate_tarball(tarball) == ArchiveSummary(files=2, size=8, members=2)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (tarfile.FIFOTYPE, "is a fifo"),
        (tarfile.CHRTYPE, "is a character device"),
        (tarfile.BLKTYPE, "is a block device"),
        (b"V", "is of unsupported type 'V'"),
    ],
)
def test_devices_fifos_and_unknown_member_types_are_refused(tmp_path: Path, kind: bytes, words: str) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("ok"), special("dev/thing", kind))
    assert refusal(tarball) == f"artifact {tarball}: member 'dev/thing' {words}"


def test_a_file_replacing_a_directory_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("app/index.html"), regular("app"))
    assert "member 'app' is a file that would replace a directory" in refusal(tarball)


def test_a_member_under_a_file_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("app"), regular("app/index.html"))
    assert "member 'app/index.html' lies under 'app', which is a file" in refusal(tarball)


def test_a_member_written_through_a_symlink_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz", special("web", tarfile.SYMTYPE, "public"), regular("web/index.html")
    )
    assert "lies under 'web', which is a symlink" in refusal(tarball)


def test_a_file_appearing_twice_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz", regular("index.html"), regular("./index.html"))
    assert "member './index.html' appears more than once" in refusal(tarball)


def test_a_directory_appearing_twice_is_fine(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "www.tar.gz", special("app", tarfile.DIRTYPE), special("app/", tarfile.DIRTYPE)
    )
    assert validate_tarball(tarball).members == 2


def test_a_file_that_is_not_a_tar_archive_is_refused(tmp_path: Path) -> None:
    not_tar = tmp_path / "www.tar.gz"
    not_tar.write_text("<html>404 not found</html>\n" * 40)
    assert refusal(not_tar).startswith(f"artifact {not_tar} is not a tar archive")


def test_an_empty_file_is_not_a_tar_archive(tmp_path: Path) -> None:
    empty = tmp_path / "www.tar"
    empty.write_bytes(b"")
    assert "is not a tar archive" in refusal(empty)


def test_an_archive_with_no_members_is_refused(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "www.tar.gz")
    assert refusal(tarball) == f"artifact {tarball} is empty"


def test_a_truncated_gzip_archive_is_refused(tmp_path: Path) -> None:
    whole = make_tarball(tmp_path / "whole.tar.gz", regular("blob", os.urandom(256 * 1024)))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert refusal(cut).startswith(f"artifact {cut} is truncated or corrupt")


def test_a_gzip_archive_missing_only_its_trailer_is_refused(tmp_path: Path) -> None:
    whole = make_tarball(tmp_path / "whole.tar.gz", regular("index.html"))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:-8])  # the CRC and length
    assert "is truncated or corrupt" in refusal(cut)


def test_a_tar_cut_at_a_member_boundary_is_refused(tmp_path: Path) -> None:
    whole = make_tarball(tmp_path / "whole.tar", regular("a", b"a" * 512), regular("b"), mode="w")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:1024])  # header and data of 'a', then nothing
    assert refusal(cut) == (
        f"artifact {cut} is truncated or corrupt: it ends without the end-of-archive marker"
    )


def test_a_tar_with_garbage_after_its_members_is_refused(tmp_path: Path) -> None:
    whole = make_tarball(tmp_path / "whole.tar", regular("a", b"a" * 512), mode="w")
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(whole.read_bytes()[:1024] + b"\xff" * 1024)
    assert "is truncated or corrupt: unreadable header at byte 1024" in refusal(damaged)


def test_a_missing_artifact_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "dist" / "www.tar.gz"
    assert refusal(missing) == f"artifact {missing} does not exist"
