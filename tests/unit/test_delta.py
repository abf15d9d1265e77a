"""Deltas: a host gets only what changed, builds a complete release from hard links, and the base is untouched."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.artifact import LocalStore, build_release
from conveyor.artifact.delta import build_delta, file_manifest
from conveyor.engine import commands
from conveyor.engine.exits import SEND_WHOLE, HostExit

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def release(store: LocalStore, source: Path, n: int):  # type: ignore[no-untyped-def]
    return build_release(source, store, user="t", now=NOW + timedelta(minutes=n), git=None)[0]


BASE = {f"f{i}.txt": f"file {i}\n" for i in range(20)} | {"old/gone.txt": "bye\n", "bin/run": "#!/bin/sh\n"}


def test_a_delta_holds_only_changed_and_new_entries_and_lists_what_is_gone(tmp_path: Path, store: LocalStore) -> None:
    base = release(store, tree(tmp_path / "a", BASE), 1)
    changed = {k: v for k, v in BASE.items() if not k.startswith("old/")} | {"f3.txt": "changed\n", "new.txt": "n\n"}
    target = release(store, tree(tmp_path / "b", changed), 2)
    delta = build_delta(base, target, store.root / "deltas")
    assert delta is not None
    assert delta.changed == 2
    assert delta.deletions == ("old",)  # the topmost gone path, not each file under it
    import tarfile

    with tarfile.open(delta.path) as archive:
        assert sorted(m.name for m in archive) == ["f3.txt", "new.txt"]
    again = build_delta(base, target, store.root / "deltas")
    assert again == delta  # made once, then reused


def test_a_release_that_mostly_changed_is_sent_whole(tmp_path: Path, store: LocalStore) -> None:
    base = release(store, tree(tmp_path / "a", BASE), 1)
    target = release(store, tree(tmp_path / "b", {k: v + "x" for k, v in BASE.items()}), 2)
    assert build_delta(base, target, store.root / "deltas") is None


def test_a_mode_change_alone_is_part_of_the_delta(tmp_path: Path, store: LocalStore) -> None:
    base = release(store, tree(tmp_path / "a", BASE), 1)
    source = tree(tmp_path / "b", BASE)
    (source / "f1.txt").chmod(0o755)
    target = release(store, source, 2)
    assert file_manifest(base)["f1.txt"][1] != file_manifest(target)["f1.txt"][1]
    delta = build_delta(base, target, store.root / "deltas")
    assert delta is not None
    assert delta.changed == 1


def run(command: str, stdin: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    data = stdin.read_bytes() if stdin else None
    return subprocess.run(["sh", "-c", command], input=data, capture_output=True, check=False, timeout=60)


def test_a_host_builds_the_complete_release_from_its_base_and_the_delta(tmp_path: Path, store: LocalStore) -> None:
    base = release(store, tree(tmp_path / "a", BASE), 1)
    target_files = {k: v for k, v in BASE.items() if not k.startswith("old/")} | {"f3.txt": "changed\n"}
    target = release(store, tree(tmp_path / "b", target_files), 2)
    delta = build_delta(base, target, store.root / "deltas")
    assert delta is not None
    host = tmp_path / "host dir with 'quotes'"
    full = run(commands.receive(str(host), base.id, base.sha256, ["log"]), base.path)
    assert full.returncode == 0, full.stdout
    done = run(commands.receive_delta(str(host), target.id, base.id, delta.sha256, ["log"], list(delta.deletions)),
               delta.path)
    assert done.returncode == 0, done.stdout
    new = host / "releases" / target.id
    got = {str(p.relative_to(new)): p.read_text() for p in new.rglob("*") if p.is_file() and not p.is_symlink()}
    assert got == target_files  # complete: unchanged files linked, changed ones replaced, gone ones removed
    assert (new / "log").is_symlink()
    old = host / "releases" / base.id
    assert (old / "f3.txt").read_text() == "file 3\n"  # the base was never written to
    assert (old / "old" / "gone.txt").exists()
    assert os.stat(new / "f1.txt").st_ino == os.stat(old / "f1.txt").st_ino  # shared, not copied
    assert os.stat(new / "f3.txt").st_ino != os.stat(old / "f3.txt").st_ino
    assert os.listdir(host / "incoming") == []


def test_a_delta_with_a_wrong_checksum_leaves_nothing_and_a_missing_base_asks_for_a_full_transfer(
        tmp_path: Path, store: LocalStore) -> None:
    base = release(store, tree(tmp_path / "a", BASE), 1)
    target = release(store, tree(tmp_path / "b", BASE | {"f3.txt": "changed\n"}), 2)
    delta = build_delta(base, target, store.root / "deltas")
    assert delta is not None
    host = tmp_path / "host"
    assert run(commands.receive(str(host), base.id, base.sha256, []), base.path).returncode == 0
    bad = run(commands.receive_delta(str(host), target.id, base.id, "0" * 64, [], []), delta.path)
    assert bad.returncode == HostExit.CHECKSUM_MISMATCH
    assert not (host / "releases" / target.id).exists()
    missing = run(commands.receive_delta(str(host), target.id, "20200101T000000Z-00000000", delta.sha256, [], []),
                  delta.path)
    assert missing.returncode == HostExit.BASE_MISSING
    assert missing.returncode in SEND_WHOLE  # the engine then sends the whole release


# --------------------------------------------------------------------------------------------------
# Shared paths belong to the host: a delta never writes, replaces or removes anything there.

SHARED_BASE = BASE | {"storage/settings.cfg": "shipped 1\n", "storage/cache/a.txt": "cache a\n"}
SHARED_TARGET = {k: v for k, v in BASE.items() if not k.startswith("old/")} | {"storage/settings.cfg": "shipped 2\n"}
USER_FILES = {"storage/cache/upload-123.bin": b"\x00user upload\xff" * 100, "storage/settings.cfg": b"user's own\n"}


def shared_files(host: Path) -> dict[str, bytes]:
    """Every file under a host's shared/, byte for byte."""
    shared = host / "shared"
    return {str(p.relative_to(shared)): p.read_bytes() for p in shared.rglob("*") if p.is_file()}


def test_a_delta_leaves_out_entries_at_or_under_a_shared_path(tmp_path: Path, store: LocalStore) -> None:
    base = release(store, tree(tmp_path / "a", SHARED_BASE), 1)
    target = release(store, tree(tmp_path / "b", SHARED_TARGET), 2)
    unfiltered = build_delta(base, target, store.root / "deltas")
    assert unfiltered is not None
    assert "storage/cache" in unfiltered.deletions
    delta = build_delta(base, target, store.root / "deltas", shared=["storage"])
    assert delta is not None
    assert delta.deletions == ("old",)
    import tarfile

    with tarfile.open(delta.path) as archive:
        assert [m.name for m in archive] == []  # settings.cfg changed, but under storage/: not the delta's
    assert build_delta(base, target, store.root / "deltas", shared=["storage"]) == delta  # reused
    again = build_delta(base, target, store.root / "deltas")
    assert again is not None
    assert "storage/cache" in again.deletions  # another shared list is another delta


def test_a_delta_never_reaches_through_the_base_releases_links_into_shared(tmp_path: Path,
                                                                         store: LocalStore) -> None:
    # The review's case: R1 ships storage/settings.cfg and storage/cache/; the host's users write into
    # shared/storage; R2 drops storage/cache/ and changes settings.cfg. Even a delta that carries those
    # changes (a controller that does not filter them) must not touch shared/.
    base = release(store, tree(tmp_path / "a", SHARED_BASE), 1)
    target = release(store, tree(tmp_path / "b", SHARED_TARGET), 2)
    delta = build_delta(base, target, store.root / "deltas")
    assert delta is not None
    host = tmp_path / "host"
    assert run(commands.receive(str(host), base.id, base.sha256, ["storage"]), base.path).returncode == 0
    assert shared_files(host) == {"storage/settings.cfg": b"shipped 1\n", "storage/cache/a.txt": b"cache a\n"}
    for name, data in USER_FILES.items():
        (host / "shared" / name).write_bytes(data)
    before = shared_files(host)

    done = run(commands.receive_delta(str(host), target.id, base.id, delta.sha256, ["storage"],
                                      list(delta.deletions)), delta.path)
    assert done.returncode == 0, done.stdout
    assert shared_files(host) == before
    new = host / "releases" / target.id
    assert os.readlink(new / "storage") == f"{host}/shared/storage"
    assert (new / "storage" / "cache" / "upload-123.bin").read_bytes() == USER_FILES["storage/cache/upload-123.bin"]

    # A full transfer onto a host that has the shared path does not write it either.
    again = run(commands.receive(str(host), "R-full", target.sha256, ["storage"]), target.path)
    assert again.returncode == 0, again.stdout
    assert shared_files(host) == before


def test_a_delta_for_a_shared_path_the_host_lacks_asks_for_the_whole_release(tmp_path: Path,
                                                                            store: LocalStore) -> None:
    base = release(store, tree(tmp_path / "a", SHARED_BASE), 1)
    target = release(store, tree(tmp_path / "b", SHARED_TARGET), 2)
    delta = build_delta(base, target, store.root / "deltas", shared=["storage"])
    assert delta is not None
    host = tmp_path / "host"
    assert run(commands.receive(str(host), base.id, base.sha256, []), base.path).returncode == 0
    # `storage` became a shared path after the base was deployed: only the whole release can seed it.
    done = run(commands.receive_delta(str(host), target.id, base.id, delta.sha256, ["storage"],
                                      list(delta.deletions)), delta.path)
    assert done.returncode == HostExit.BASE_MISSING, done.stdout
    assert done.returncode in SEND_WHOLE  # the engine then sends the whole release
    assert b"shared path storage is not on this host yet" in done.stdout
    assert not (host / "releases" / target.id).exists()


@pytest.mark.parametrize(("shared", "why"), [
    (["storage", "storage/cache"], b"shared paths storage and storage/cache overlap: list only storage"),
    (["storage", "data/cache"], b"shared path data/cache lies under data, which is a link"),
])
def test_a_shared_path_that_would_be_reached_through_a_link_is_refused(tmp_path: Path, store: LocalStore,
                                                                     shared: list[str], why: bytes) -> None:
    source = tree(tmp_path / "a", {"VERSION": "1\n", "storage/cache/a.txt": "a\n"})
    (source / "data").symlink_to("storage")
    base = release(store, source, 1)
    host = tmp_path / "host"
    (host / "shared" / "storage" / "cache").mkdir(parents=True)
    (host / "shared" / "storage" / "cache" / "upload.bin").write_bytes(b"user data")
    done = run(commands.receive(str(host), base.id, base.sha256, shared), base.path)
    assert done.returncode == HostExit.SHARED_PATH_UNSAFE, done.stdout
    assert why in done.stdout
    assert (host / "shared" / "storage" / "cache" / "upload.bin").read_bytes() == b"user data"
    assert not (host / "releases" / base.id).exists()
