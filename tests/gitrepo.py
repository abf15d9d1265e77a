"""A real git repository for tests: commits by named authors, shallow clones and bare remotes.

A plain module (tests/ is on sys.path, like motoserver.py). `isolate` keeps the machine's own git config
(a global identity, signing, hooks paths) out of a test and of the `conveyor` runs it starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ALICE = ("Alice Dlamini", "alice@example.com")
BOB = ("Bob Smith", "bob@example.org")
CAROL = ("Carol Nkosi", "carol@example.net")


def isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global or system git config for this test and its subprocesses; loopback never via a proxy."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                 "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def git(directory: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in `directory`; its stdout (stripped), failing the test with git's words if it fails."""
    done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})}, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass
class Repo:
    """A work tree whose commits the test makes one by one."""

    path: Path

    @classmethod
    def init(cls, path: Path, *, identity: tuple[str, str] | None = ("Deploy Bot", "deploy@example.com")) -> Repo:
        """`git init` in `path` (which may hold files already); `identity` is the repository's user (the
        tagger of annotated tags); None makes git refuse to guess one."""
        path.mkdir(parents=True, exist_ok=True)
        git(path, "-c", "init.defaultBranch=main", "init", "--quiet")
        if identity is None:
            git(path, "config", "user.useConfigOnly", "true")
        else:
            git(path, "config", "user.name", identity[0])
            git(path, "config", "user.email", identity[1])
        return cls(path)

    def commit(self, subject: str, author: tuple[str, str] = ALICE) -> str:
        """Commit one more line of `CHANGES` as `author`; the new commit's full sha."""
        changes = self.path / "CHANGES"
        with changes.open("a", encoding="utf-8") as out:
            out.write(subject + "\n")
        name, email = author
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
               "GIT_COMMITTER_EMAIL": email}
        git(self.path, "add", "--", "CHANGES")
        git(self.path, "commit", "--quiet", "--no-verify", "-m", subject, env=env)
        return self.head()

    def head(self) -> str:
        """The sha HEAD points at."""
        return git(self.path, "rev-parse", "HEAD")

    def tags(self, pattern: str = "deploy/*") -> dict[str, str]:
        """tag → the commit it points at."""
        names = git(self.path, "tag", "-l", pattern).splitlines()
        return {name: git(self.path, "rev-list", "-n1", name) for name in names}

    def bare_remote(self, where: Path, name: str = "origin") -> Path:
        """A bare repository at `where`, added as remote `name`."""
        git(where.parent, "init", "--quiet", "--bare", str(where))
        git(self.path, "remote", "add", name, str(where))
        return where

    def make_shallow(self, depth: int = 1) -> None:
        """Replace this repository with a clone of it `depth` commits deep, as CI jobs often check out."""
        clone = self.path.parent / f"{self.path.name}-shallow"
        subprocess.run(["git", "clone", "--quiet", f"--depth={depth}", f"file://{self.path}", str(clone)],
                       check=True, capture_output=True, timeout=30)
        shutil.rmtree(self.path / ".git")
        (clone / ".git").rename(self.path / ".git")
        shutil.rmtree(clone)
