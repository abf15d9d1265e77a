"""Release ids, manifests and the git facts recorded with a release."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conveyor.artifact import Release, git_info, is_release_id, release_id
from conveyor.errors import ArtifactError

SHA256 = "ab" * 32


def a_manifest(**changes: Any) -> dict[str, Any]:
    """A valid manifest, with `changes` applied."""
    manifest: dict[str, Any] = {
        "id": "20260102T030405Z-abababab",
        "sha256": SHA256,
        "size": 1234,
        "files": 7,
        "created_at": "2026-01-02T03:04:05+00:00",
        "user": "alice",
        "git": {
            "sha": "1234567890abcdef1234567890abcdef12345678",
            "branch": "main",
            "author": "Alice",
            "author_email": "alice@example.com",
            "subject": "Fix the checkout",
        },
        "compression": "gzip",
        "dirty": False,
        "diff_sha256": None,
    }
    manifest.update(changes)
    return manifest


def test_a_release_id_is_the_utc_second_and_eight_hex_digits() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)
    assert release_id(now, "DEADBEEFcafe") == "20260102T030405Z-deadbeef"


def test_a_release_id_converts_local_time_to_utc() -> None:
    johannesburg = timezone(timedelta(hours=2))
    now = datetime(2026, 1, 1, 1, 30, 0, tzinfo=johannesburg)
    assert release_id(now, SHA256) == "20251231T233000Z-abababab"


def test_a_release_id_needs_an_aware_time_and_a_hex_sha() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        release_id(datetime(2026, 1, 2), SHA256)  # naive: the point of the test
    with pytest.raises(ValueError, match="hex sha"):
        release_id(datetime(2026, 1, 2, tzinfo=UTC), "not-hex!")
    with pytest.raises(ValueError, match="hex sha"):
        release_id(datetime(2026, 1, 2, tzinfo=UTC), "abc")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20260102T030405Z-deadbeef", True),
        ("20260102T030405Z-DEADBEEF", False),
        ("20260102T030405Z-deadbee", False),
        ("20260102T030405-deadbeef", False),
        ("20260102T030405Z-deadbeef\n", False),
        ("../20260102T030405Z-deadbeef", False),
        ("", False),
    ],
)
def test_release_ids_are_recognised_by_shape(value: str, expected: bool) -> None:
    assert is_release_id(value) is expected


def test_a_manifest_round_trips_without_the_path(tmp_path: Path) -> None:
    path = tmp_path / "20260102T030405Z-abababab.tar.gz"
    release = Release.from_manifest(a_manifest(), path)
    assert release.path == path
    assert release.manifest() == a_manifest()
    assert Release.from_manifest(release.manifest(), path) == release


def test_a_manifest_from_before_compression_was_a_choice_means_gzip(tmp_path: Path) -> None:
    old = a_manifest()
    del old["compression"]
    assert Release.from_manifest(old, tmp_path / "x.tar.gz").compression == "gzip"
    assert Release.from_manifest(a_manifest(compression="zstd"), tmp_path / "x.tar.zst").compression == "zstd"


def test_a_manifest_without_git_is_fine(tmp_path: Path) -> None:
    release = Release.from_manifest(a_manifest(git=None), tmp_path / "x.tar.gz")
    assert release.git is None
    assert release.manifest()["git"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "latest"),
        ("sha256", "abc"),
        ("size", -1),
        ("files", True),
        ("created_at", "yesterday"),
        ("user", None),
        ("git", {"sha": "abc"}),
        ("compression", "brotli"),
    ],
)
def test_a_malformed_manifest_names_the_field(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(ArtifactError, match=f"release manifest for x.tar.gz: {field}: expected"):
        Release.from_manifest(a_manifest(**{field: value}), tmp_path / "x.tar.gz")


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a test author, returning its output."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def outside_any_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory git will not look above, so a repo around the test run cannot leak in."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    return tmp_path


def test_git_info_describes_head(outside_any_repo: Path) -> None:
    repo = outside_any_repo / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "release-train")
    (repo / "app.py").write_text("print('hi')\n")
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "Add the app\n\nWith a body that is not the subject.")
    (repo / "sub").mkdir()
    assert git_info(repo / "sub") == {
        "sha": git(repo, "rev-parse", "HEAD"),
        "branch": "release-train",
        "author": "Ada Lovelace",
        "author_email": "ada@example.com",
        "subject": "Add the app",
        "committed_at": git(repo, "log", "-1", "--format=%cI"),
    }


def test_git_info_is_none_outside_a_work_tree(outside_any_repo: Path) -> None:
    plain = outside_any_repo / "plain"
    plain.mkdir()
    assert git_info(plain) is None


def test_git_info_is_none_before_the_first_commit(outside_any_repo: Path) -> None:
    repo = outside_any_repo / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    assert git_info(repo) is None


def test_git_info_is_none_when_git_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert git_info(tmp_path) is None


def test_git_info_is_none_for_a_missing_directory(outside_any_repo: Path) -> None:
    assert git_info(outside_any_repo / "nowhere") is None
