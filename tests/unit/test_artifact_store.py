"""The local store and build_release: releases kept by id, found by content, listed newest first."""

from __future__ import annotations

import json
import tarfile
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import conveyor.artifact
from conveyor.artifact import LocalStore, build_release, pack
from conveyor.errors import ArtifactError

NOW = datetime(2026, 3, 4, 9, 30, 0, tzinfo=UTC)
COMMIT = {
    "sha": "0123456789abcdef0123456789abcdef01234567",
    "branch": "main",
    "author": "Alice",
    "author_email": "alice@example.com",
    "subject": "Ship it",
}


def app_dir(root: Path, version: str = "1") -> Path:
    """A small build output whose content depends on `version`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(f"<h1>version {version}</h1>\n")
    (root / "static").mkdir(exist_ok=True)
    (root / "static" / "app.js").write_text("console.log('hi')\n")
    return root


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """An empty store."""
    return LocalStore(tmp_path / "project" / ".conveyor" / "artifacts")


def test_a_build_becomes_a_release_named_by_time_and_commit(tmp_path: Path, store: LocalStore) -> None:
    release, created = build_release(app_dir(tmp_path / "dist"), store, user="alice", now=NOW, git=COMMIT)
    assert created is True
    assert release.id == "20260304T093000Z-01234567"
    assert release.path == store.root / "20260304T093000Z-01234567.tar.gz"
    assert release.files == 2
    assert release.size == release.path.stat().st_size
    manifest = json.loads((store.root / "20260304T093000Z-01234567.json").read_text())
    assert manifest == {
        "id": "20260304T093000Z-01234567",
        "sha256": release.sha256,
        "size": release.size,
        "files": 2,
        "created_at": "2026-03-04T09:30:00+00:00",
        "user": "alice",
        "git": COMMIT,
        "compression": "gzip",
        "dirty": False,
        "diff_sha256": None,
    }
    assert store.get(release.id) == release


def test_a_release_without_git_is_named_by_its_content(tmp_path: Path, store: LocalStore) -> None:
    release, _ = build_release(app_dir(tmp_path / "dist"), store, user="ci", now=NOW, git=None)
    assert release.id == f"20260304T093000Z-{release.sha256[:8]}"
    assert release.git is None


def test_identical_content_reuses_the_release(tmp_path: Path, store: LocalStore) -> None:
    source = app_dir(tmp_path / "dist")
    first, _ = build_release(source, store, user="alice", now=NOW, git=COMMIT)
    (source / "index.html").touch()  # a rebuild: new mtimes, same bytes
    again, created = build_release(source, store, user="bob", now=NOW + timedelta(hours=1), git=None)
    assert created is False
    assert again == first
    assert sorted(p.name for p in store.root.iterdir()) == [f"{first.id}.json", f"{first.id}.tar.gz"]


def test_a_tarball_with_the_same_content_as_a_directory_reuses_its_release(
    tmp_path: Path, store: LocalStore
) -> None:
    source = app_dir(tmp_path / "dist")
    first, _ = build_release(source, store, user="alice", now=NOW, git=None)
    tarball = tmp_path / "www.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(source, arcname=".")
    again, created = build_release(tarball, store, user="alice", now=NOW + timedelta(minutes=1), git=None)
    assert (again, created) == (first, False)


def test_different_content_makes_a_new_release(tmp_path: Path, store: LocalStore) -> None:
    first, _ = build_release(app_dir(tmp_path / "v1", "1"), store, user="a", now=NOW, git=None)
    second, created = build_release(
        app_dir(tmp_path / "v2", "2"), store, user="a", now=NOW + timedelta(seconds=1), git=None
    )
    assert created is True
    assert second.id != first.id
    assert second.sha256 != first.sha256


def test_a_dirty_rebuild_of_the_same_commit_in_the_same_second_takes_the_next_second(
    tmp_path: Path, store: LocalStore
) -> None:
    # Hosts prune by id order, so ids must sort in build order even within one second.
    clean, _ = build_release(app_dir(tmp_path / "clean", "1"), store, user="a", now=NOW, git=COMMIT)
    dirty, created = build_release(app_dir(tmp_path / "dirty", "2"), store, user="a", now=NOW, git=COMMIT)
    assert created is True
    assert clean.id == "20260304T093000Z-01234567"
    assert dirty.id == "20260304T093001Z-01234567"
    assert clean.id < dirty.id
    assert dirty.git == COMMIT
    assert {r.id for r in store.list()} == {clean.id, dirty.id}


def test_a_store_inside_the_packed_directory_is_refused(tmp_path: Path) -> None:
    project = app_dir(tmp_path / "project")
    with pytest.raises(ArtifactError, match=r"the artifact store .* lies inside it"):
        build_release(project, LocalStore.for_config_dir(project), user="a", now=NOW, git=None)


def test_a_refused_build_leaves_nothing_in_the_store(tmp_path: Path, store: LocalStore) -> None:
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as archive:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        archive.addfile(link)
    with pytest.raises(ArtifactError, match="symlink to an absolute path"):
        build_release(hostile, store, user="a", now=NOW, git=None)
    assert list(store.root.iterdir()) == []


def test_releases_are_listed_newest_first(tmp_path: Path, store: LocalStore) -> None:
    times = [NOW, NOW + timedelta(days=1), NOW + timedelta(days=2)]
    built = [
        build_release(app_dir(tmp_path / str(n), str(n)), store, user="a", now=when, git=None)[0]
        for n, when in enumerate(times)
    ]
    assert [r.id for r in store.list()] == [built[2].id, built[1].id, built[0].id]


def test_a_build_stamped_before_the_newest_release_still_sorts_after_it(tmp_path: Path, store: LocalStore) -> None:
    # A controller whose clock is behind (or two builds in one second) must not make a new release look old.
    newest, _ = build_release(app_dir(tmp_path / "a", "1"), store, user="a", now=NOW + timedelta(days=1), git=None)
    late, _ = build_release(app_dir(tmp_path / "b", "2"), store, user="a", now=NOW, git=None)
    assert late.id > newest.id
    assert late.id.startswith("20260305T093001Z-")
    assert [r.id for r in store.list()] == [late.id, newest.id]


def test_an_empty_or_missing_store_lists_nothing(store: LocalStore) -> None:
    assert store.list() == []
    assert store.find_by_sha256("ab" * 32) is None


def test_corrupt_and_foreign_manifests_are_skipped_when_listing(tmp_path: Path, store: LocalStore) -> None:
    release, _ = build_release(app_dir(tmp_path / "dist"), store, user="a", now=NOW, git=None)
    (store.root / "20250101T000000Z-00000000.json").write_text("{not json")
    (store.root / "20250101T000001Z-00000001.json").write_text('{"id": "20250101T000001Z-00000001"}')
    (store.root / "notes.json").write_text("{}")
    assert store.list() == [release]


def test_a_manifest_whose_tarball_is_gone_is_not_listed(tmp_path: Path, store: LocalStore) -> None:
    release, _ = build_release(app_dir(tmp_path / "dist"), store, user="a", now=NOW, git=None)
    release.path.unlink()
    assert store.list() == []
    with pytest.raises(ArtifactError, match="has lost its tarball"):
        store.get(release.id)


def test_an_unknown_release_id_is_an_error_that_says_where_to_look(store: LocalStore) -> None:
    with pytest.raises(ArtifactError) as caught:
        store.get("20260101T000000Z-deadbeef")
    assert caught.value.message == (
        "20260101T000000Z-deadbeef: unknown release ID; `conveyor releases` lists them"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "latest", ""])
def test_a_malformed_release_id_is_unknown(store: LocalStore, bad_id: str) -> None:
    with pytest.raises(ArtifactError, match="unknown release ID"):
        store.get(bad_id)
    assert bad_id not in store


def test_a_release_is_found_by_its_sha256(tmp_path: Path, store: LocalStore) -> None:
    release, _ = build_release(app_dir(tmp_path / "dist"), store, user="a", now=NOW, git=None)
    assert store.find_by_sha256(release.sha256) == release
    assert store.find_by_sha256("0" * 64) is None


def test_open_reads_the_stored_tarball(tmp_path: Path, store: LocalStore) -> None:
    release, _ = build_release(app_dir(tmp_path / "dist"), store, user="a", now=NOW, git=None)
    with store.open(release.id) as stream:
        assert stream.read() == release.path.read_bytes()


def test_adding_moves_the_tarball_in_and_refuses_a_taken_id(tmp_path: Path, store: LocalStore) -> None:
    packed = pack(app_dir(tmp_path / "dist"), tmp_path / "out.tar.gz")
    manifest = {
        "id": "20260304T093000Z-aaaaaaaa",
        "sha256": packed.sha256,
        "size": packed.size,
        "files": packed.files,
        "created_at": NOW.isoformat(),
        "user": "a",
        "git": None,
    }
    release = store.add(tmp_path / "out.tar.gz", manifest)
    assert not (tmp_path / "out.tar.gz").exists()
    assert release.path.is_file()
    assert "20260304T093000Z-aaaaaaaa" in store
    pack(app_dir(tmp_path / "dist"), tmp_path / "again.tar.gz")
    with pytest.raises(ArtifactError, match="already in"):
        store.add(tmp_path / "again.tar.gz", manifest)


def test_adding_refuses_a_manifest_without_a_release_id(tmp_path: Path, store: LocalStore) -> None:
    with pytest.raises(ArtifactError, match=r"cannot add a release with the id '\.\./x'"):
        store.add(tmp_path / "out.tar.gz", {"id": "../x"})


def test_the_default_store_lives_beside_the_config(tmp_path: Path) -> None:
    assert LocalStore.for_config_dir(tmp_path).root == tmp_path / ".conveyor" / "artifacts"


def test_the_package_exports_exactly_its_public_api() -> None:
    public = {
        name
        for name, value in vars(conveyor.artifact).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(conveyor.artifact.__all__)
