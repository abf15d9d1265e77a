"""git for releases, against real repositories made in each test: changelogs, tags, pushes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor.vcs import Commit, GitError, commits_between, push_tags, tag_name, tag_release
from gitrepo import ALICE, BOB, CAROL, Repo, git, isolate

RELEASE = "20260102T030405Z-1a2b3c4d"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    isolate(monkeypatch)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # tmp_path itself is in no repository
    return Repo.init(tmp_path / "app")


def test_the_commits_between_two_releases_are_the_newer_ones_newest_first_with_their_authors(repo: Repo) -> None:
    old = repo.commit("Add the shop", ALICE)
    fix = repo.commit("Fix the basket", BOB)
    new = repo.commit("Show prices in rand — ZAR", CAROL)

    changes = commits_between(repo.path, old, new)

    assert changes.commits == [Commit(new, *CAROL, "Show prices in rand — ZAR"), Commit(fix, *BOB, "Fix the basket")]
    assert changes.note is None
    assert changes.commits[0].to_json() == {"sha": new, "author": CAROL[0], "email": CAROL[1],
                                            "subject": "Show prices in rand — ZAR"}


def test_abbreviated_shas_work_and_the_same_commit_has_nothing_between(repo: Repo) -> None:
    old = repo.commit("one")
    new = repo.commit("two")
    assert [c.sha for c in commits_between(repo.path, old[:8], new[:10]).commits] == [new]
    assert commits_between(repo.path, new, new).commits == []
    assert commits_between(repo.path, new, new).note is None


def test_with_nothing_before_only_the_head_is_shown(repo: Repo) -> None:
    repo.commit("one")
    head = repo.commit("two", BOB)
    changes = commits_between(repo.path, None, head)
    assert changes.commits == [Commit(head, *BOB, "two")]
    assert changes.note == "nothing ran there before: only the release's commit"


def test_going_back_lists_nothing_and_says_how_far_back(repo: Repo) -> None:
    old = repo.commit("one")
    repo.commit("two")
    new = repo.commit("three")
    changes = commits_between(repo.path, new, old)
    assert changes.commits == []
    assert changes.note == "nothing new: it already runs 2 commit(s) that this release lacks (going back)"


def test_a_long_changelog_is_cut_and_says_so(repo: Repo) -> None:
    old = repo.commit("base")
    shas = [repo.commit(f"change {i}") for i in range(5)]
    changes = commits_between(repo.path, old, shas[-1], limit=3)
    assert [c.subject for c in changes.commits] == ["change 4", "change 3", "change 2"]
    assert changes.note == "showing the newest 3 of 5 commits"


def test_a_commit_a_shallow_clone_lacks_is_a_note_not_a_failure(repo: Repo) -> None:
    old = repo.commit("one")
    repo.commit("two")
    new = repo.commit("three")
    repo.make_shallow(depth=1)

    changes = commits_between(repo.path, old, new)

    assert changes.commits == []
    assert changes.note is not None
    assert f"commit {old[:12]} is not in this repository" in changes.note
    assert "shallow clone" in changes.note
    assert "git fetch --unshallow" in changes.note


def test_what_git_cannot_answer_is_a_note(tmp_path: Path, repo: Repo) -> None:
    head = repo.commit("one")
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    assert commits_between(elsewhere, None, head).note == f"{elsewhere} is not in a git repository: no commits to show"
    assert commits_between(repo.path, "--output=/tmp/x", head).note == "'--output=/tmp/x' is not a commit sha"
    assert commits_between(repo.path, head, None).note == "no git commit is recorded for the release"
    unknown = "0123456789abcdef0123456789abcdef01234567"
    note = commits_between(repo.path, head, unknown).note
    assert note == (f"commit {unknown[:12]} is not in this repository "
                    "(fetch it, or it was built from another repository)")


def test_a_release_tag_is_annotated_on_the_commit_and_tagging_again_changes_nothing(repo: Repo) -> None:
    first = repo.commit("one")
    repo.commit("two")

    made = tag_release(repo.path, "production", "za", RELEASE, first[:8], message="deployed by alice")
    again = tag_release(repo.path, "production", "za", RELEASE, first, message="deployed by bob")

    name = f"deploy/production/za/{RELEASE}"
    assert name == tag_name("production", "za", RELEASE)
    assert (made.tag, made.sha, made.status) == (name, first, "created")
    assert (again.status, again.sha) == ("exists", first)
    assert repo.tags() == {name: first}
    assert git(repo.path, "cat-file", "-t", name) == "tag"
    assert git(repo.path, "tag", "-l", "--format=%(contents:subject) %(taggername)", name) == \
        "deployed by alice Deploy Bot"


def test_without_a_known_tagger_the_tag_is_lightweight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch)
    repo = Repo.init(tmp_path / "app", identity=None)
    head = repo.commit("one")
    assert tag_release(repo.path, "staging", "uk", RELEASE, head, message="deployed").status == "created"
    assert git(repo.path, "cat-file", "-t", f"deploy/staging/uk/{RELEASE}") == "commit"


def test_a_tag_that_points_elsewhere_is_left_alone_and_reported(repo: Repo) -> None:
    first = repo.commit("one")
    second = repo.commit("two")
    tag_release(repo.path, "staging", "uk", RELEASE, first)

    result = tag_release(repo.path, "staging", "uk", RELEASE, second)

    assert (result.status, result.detail) == ("conflict", first)
    assert repo.tags() == {f"deploy/staging/uk/{RELEASE}": first}


def test_tagging_an_unknown_commit_or_outside_a_repository_is_a_clear_error(tmp_path: Path, repo: Repo) -> None:
    repo.commit("one")
    with pytest.raises(GitError, match=r"commit 0123456789ab is not in the repository at .*app"):
        tag_release(repo.path, "staging", "uk", RELEASE, "0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(GitError, match="is not in a git repository"):
        tag_release(tmp_path, "staging", "uk", RELEASE, repo.head())
    with pytest.raises(GitError, match=r"'deploy/staging/a\.\.b/.*' is not a valid git tag name"):
        tag_release(repo.path, "staging", "a..b", RELEASE, repo.head())


def test_pushed_tags_reach_the_remote_and_pushing_again_is_harmless(tmp_path: Path, repo: Repo) -> None:
    head = repo.commit("one")
    remote = repo.bare_remote(tmp_path / "remote.git")
    tags = [tag_release(repo.path, "production", region, RELEASE, head).tag for region in ("za", "uk")]

    push_tags(repo.path, "origin", tags)
    push_tags(repo.path, "origin", tags)

    assert git(remote, "tag", "-l").splitlines() == sorted(tags)
    assert git(remote, "rev-list", "-n1", tags[0]) == head


def test_a_push_the_remote_refuses_names_it(repo: Repo) -> None:
    head = repo.commit("one")
    tag = tag_release(repo.path, "staging", "uk", RELEASE, head).tag
    with pytest.raises(GitError, match=r"git push in .* failed \(exit \d+\):.*nowhere"):
        push_tags(repo.path, "nowhere", [tag])


def hanging_remote(repo: Repo, where: Path, seconds: int = 30) -> Path:
    """Remote `slow`: a bare repository whose receive-pack says nothing for `seconds` (bounded) and ends; the
    file its process id is written to."""
    repo.bare_remote(where, "slow")
    script = where.parent / "slow-receive-pack"
    pid_file = where.parent / "slow-receive-pack.pid"
    script.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep {seconds}\n')
    script.chmod(0o755)
    git(repo.path, "config", "remote.slow.receivepack", str(script))
    return pid_file


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, dead and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    except OSError:
        return False


def test_a_push_to_a_remote_that_hangs_ends_at_its_timeout_with_everything_git_started(
        tmp_path: Path, repo: Repo) -> None:
    head = repo.commit("one")
    pid_file = hanging_remote(repo, tmp_path / "slow.git")
    tag = tag_release(repo.path, "staging", "uk", RELEASE, head).tag

    began = time.monotonic()
    with pytest.raises(GitError, match=r"git push in .* took longer than 1s"):
        push_tags(repo.path, "slow", [tag], timeout=1)
    took = time.monotonic() - began
    assert took < 4, f"the push took {took:.1f}s"
    # the remote's end of the push, started by git, ended with it: killing git alone left it running
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while running(pid):
        assert time.monotonic() < deadline, f"process {pid}, started by the push, still runs"
        time.sleep(0.02)
