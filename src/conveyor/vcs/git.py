"""git, run as a subprocess: the commits between two releases, release tags, and pushing them.

Every command is an argv list (never a shell), runs with a timeout and without a terminal (git never waits
for a password), and every sha that reaches git was checked to be hex first, so it cannot be read as an
option. The timeout ends the command: git runs in a session of its own, and when its time is up the whole
session is killed (git, and the ssh or remote helper it started, which would otherwise run on). Failures are
GitError with git's own last lines; `commits_between` never fails at all: what it cannot tell is a note
beside an empty list.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from conveyor.errors import ConveyorError

TAG_PREFIX = "deploy"
GIT_TIMEOUT = 10.0
PUSH_TIMEOUT = 60.0
COMMIT_LIMIT = 200  # commits listed between two releases; more are counted, not listed

_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
# The unit separator cannot appear in a name, an email or a one-line subject.
_SEPARATOR = "\x1f"
_FORMAT = "--format=%H%x1f%an%x1f%ae%x1f%s"


class GitError(ConveyorError):
    """git is missing, timed out, or refused: the message says which command and what git said."""


class Commit(NamedTuple):
    """One commit as a changelog shows it."""

    sha: str
    author: str
    email: str
    subject: str

    def to_json(self) -> dict[str, str]:
        """{"sha", "author", "email", "subject"}."""
        return self._asdict()


@dataclass(frozen=True)
class Changes:
    """The commits `new` has that `old` has not, newest first, and a note when that is not the whole story."""

    commits: list[Commit]
    note: str | None = None


@dataclass(frozen=True)
class TagResult:
    """What tagging one release did: `created`, `exists` (already on that commit) or `conflict`."""

    tag: str
    sha: str
    status: str
    detail: str | None = None  # for a conflict: the commit the tag points at instead


def tag_name(env: str, region: str, release_id: str) -> str:
    """`deploy/<env>/<region>/<release-id>`."""
    return f"{TAG_PREFIX}/{env}/{region}/{release_id}"


def is_sha(value: object) -> bool:
    """Whether `value` looks like a (possibly abbreviated) commit sha."""
    return isinstance(value, str) and _SHA.match(value) is not None


def run_git(directory: Path, *args: str, timeout: float = GIT_TIMEOUT, env: dict[str, str] | None = None) -> str:
    """Run `git -C directory ARGS...`; its stdout, or GitError naming the command and git's last words."""
    environ = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
    argv = ["git", "-C", str(directory), *args]
    words = list(args)
    while words[:1] == ["-c"]:
        words = words[2:]  # `-c name=value` settings are not what the command is
    what = f"git {words[0] if words else ''}".rstrip()
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=environ, start_new_session=True)
    except FileNotFoundError as exc:
        raise GitError("git is not installed (or not on PATH)") from exc
    except OSError as exc:
        raise GitError(f"cannot run git in {directory}: {exc}") from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _end(process)
        raise GitError(f"{what} in {directory} took longer than {timeout:g}s") from exc
    except BaseException:
        _end(process)
        raise
    if process.returncode != 0:
        said = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        # git's own verdicts first (a refused push says `! [rejected]`); its hints and advice last, if at all.
        verdicts = [line for line in said if line.startswith(("fatal:", "error:", "!"))] or said[-3:]
        raise GitError(f"{what} in {directory} failed (exit {process.returncode}): "
                       f"{' / '.join(verdicts[:3]) or 'no output'}")
    return stdout.decode("utf-8", "replace")


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill git's session (git and whatever it started: ssh, a remote helper) and reap git; never wait for the
    output pipes, which something that left the session could still hold open."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a killed process is reaped at once: never wait longer
        process.wait(timeout=5)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _try(directory: Path, *args: str) -> str | None:
    """stdout of a git command whose failure only means "no"."""
    try:
        return run_git(directory, *args)
    except GitError:
        return None


def resolve_commit(directory: Path, sha: str) -> str | None:
    """The full sha of a commit this repository has, or None (unknown, not a sha, not a repository)."""
    if not is_sha(sha):
        return None
    found = _try(directory, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
    return found.strip() if found else None


def _is_shallow(directory: Path) -> bool:
    return (_try(directory, "rev-parse", "--is-shallow-repository") or "").strip() == "true"


def _log(directory: Path, *revisions: str, limit: int) -> list[Commit]:
    out = run_git(directory, "log", "--no-show-signature", "--no-color", f"--max-count={limit}", _FORMAT,
                  *revisions)
    commits = []
    for line in out.splitlines():
        fields = line.split(_SEPARATOR, 3)
        if len(fields) == 4:
            commits.append(Commit(*fields))
    return commits


def commits_between(directory: Path, old_sha: str | None, new_sha: str | None, *,
                    limit: int = COMMIT_LIMIT) -> Changes:
    """The commits `new_sha` has that `old_sha` has not (`git log old..new`), newest first.

    `old_sha` None (nothing ran before): just the head, `new_sha` itself. What git cannot answer (not a
    repository, a commit this clone does not have, as in a shallow CI clone) is a note, never an error.
    """
    if new_sha is None:
        return Changes([], "no git commit is recorded for the release")
    for sha in (old_sha, new_sha):
        if sha is not None and not is_sha(sha):
            return Changes([], f"{sha!r} is not a commit sha")
    if _try(directory, "rev-parse", "--git-dir") is None:
        return Changes([], f"{directory} is not in a git repository: no commits to show")
    unknown = [sha for sha in (old_sha, new_sha) if sha is not None and resolve_commit(directory, sha) is None]
    if unknown:
        hint = (" (this is a shallow clone: `git fetch --unshallow`, or clone with more depth)"
                if _is_shallow(directory) else " (fetch it, or it was built from another repository)")
        names = " and ".join(sha[:12] for sha in unknown)
        return Changes([], f"commit {names} is not in this repository{hint}")
    try:
        if old_sha is None:
            return Changes(_log(directory, new_sha, limit=1), "nothing ran there before: only the release's commit")
        commits = _log(directory, f"{old_sha}..{new_sha}", limit=limit + 1)
        note = None
        if len(commits) > limit:
            total = run_git(directory, "rev-list", "--count", f"{old_sha}..{new_sha}").strip()
            commits, note = commits[:limit], f"showing the newest {limit} of {total} commits"
        elif not commits:
            behind = run_git(directory, "rev-list", "--count", f"{new_sha}..{old_sha}").strip()
            if behind not in ("", "0"):
                note = f"nothing new: it already runs {behind} commit(s) that this release lacks (going back)"
        return Changes(commits, note)
    except GitError as exc:
        return Changes([], exc.message)


def tag_release(directory: Path, env: str, region: str, release_id: str, sha: str, *,
                message: str | None = None) -> TagResult:
    """Tag commit `sha` as `deploy/<env>/<region>/<release-id>`; idempotent.

    Annotated (with `message`) when git knows who the tagger is (user.name and user.email), lightweight
    otherwise. A tag that already points at that commit is left alone (`exists`); one that points elsewhere
    is left alone too and reported (`conflict`). GitError when the commit is unknown or git fails.
    """
    name = tag_name(env, region, release_id)
    try:
        run_git(directory, "check-ref-format", f"refs/tags/{name}")
    except GitError:
        raise GitError(f"{name!r} is not a valid git tag name") from None
    if _try(directory, "rev-parse", "--git-dir") is None:
        raise GitError(f"{directory} is not in a git repository: no release tags (git.tags)")
    commit = resolve_commit(directory, sha)
    if commit is None:
        shallow = " (a shallow clone?)" if _is_shallow(directory) else ""
        raise GitError(f"cannot tag {name}: commit {sha[:12]} is not in the repository at {directory}{shallow}")
    existing = _tagged_commit(directory, name)
    if existing is None:
        annotated = message is not None and _try(directory, "var", "GIT_COMMITTER_IDENT") is not None
        args = ["-a", "-m", message or ""] if annotated else []
        try:
            run_git(directory, "-c", "tag.gpgSign=false", "-c", "tag.forceSignAnnotated=false", "tag", *args, "--",
                    name, commit)
            return TagResult(name, commit, "created")
        except GitError:
            existing = _tagged_commit(directory, name)  # made meanwhile by another deployment?
            if existing is None:
                raise
    if existing == commit:
        return TagResult(name, commit, "exists")
    return TagResult(name, commit, "conflict", existing)


def _tagged_commit(directory: Path, name: str) -> str | None:
    found = _try(directory, "rev-parse", "--verify", "--quiet", f"refs/tags/{name}^{{commit}}")
    return found.strip() if found else None


def push_tags(directory: Path, remote: str, tags: list[str], *, timeout: float = PUSH_TIMEOUT) -> None:
    """Push `tags` to `remote` in one `git push`; GitError (with git's words) if the remote refuses any."""
    if not tags:
        return
    if remote.startswith("-"):
        raise GitError(f"{remote!r} is not a remote name")
    refspecs = [f"refs/tags/{tag}:refs/tags/{tag}" for tag in tags]
    run_git(directory, "push", "--quiet", remote, *refspecs, timeout=timeout)


def commit_times(directory: Path, shas: list[str]) -> dict[str, str]:
    """sha → its commit time (ISO 8601, as git prints `%cI`) for the shas this repository has; the others (and
    everything, when `directory` is no work tree or git is missing) are left out. Never raises."""
    wanted = sorted({sha for sha in shas if is_sha(sha)})
    found: dict[str, str] = {}
    if not wanted or _try(directory, "rev-parse", "--git-dir") is None:
        return found  # no work tree here: asked once, not once per thousand commits
    for start in range(0, len(wanted), 1000):  # one git per thousand, well inside any argv limit
        chunk = wanted[start:start + 1000]
        out = _try(directory, "log", "--no-walk=unsorted", "--ignore-missing", "--no-show-signature",
                   "--format=%H%x1f%cI", *chunk, "--")
        for line in (out or "").splitlines():
            sha, _, when = line.partition(_SEPARATOR)
            found[sha] = when
    answers: dict[str, str] = {}
    for sha in wanted:
        if sha.lower() in found:
            answers[sha] = found[sha.lower()]
        else:  # an abbreviated sha is answered by the full sha git prints
            prefixed = next((w for full, w in found.items() if full.startswith(sha.lower())), None)
            if prefixed is not None:
                answers[sha] = prefixed
    return answers
