"""The commit each release was built from, and the commits between two releases.

A release's commit is in its manifest: the state store's releases table (every build recorded here), else
the artifact store (a release built elsewhere). The operations use these to show what is going out (`plan`,
`diff`: conveyor.operations.changes), notifications to name what went out, release tags to tag the commit
a region now runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StateError
from conveyor.vcs.git import Changes, commits_between, is_sha

if TYPE_CHECKING:
    from conveyor.artifact import ArtifactStore
    from conveyor.state.store import Store


def release_commits(store: Store, artifacts: ArtifactStore, app: str, ids: Iterable[str]) -> dict[str, str | None]:
    """release id → the git sha it was built from (None when its manifest records none); unknown ids are left
    out."""
    wanted = {i for i in ids if i}
    found: dict[str, str | None] = {}
    if not wanted:
        return found
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from conveyor.state import tables as t

    releases = t.releases
    try:
        # The Store has no reader for one manifest; this is a read of the table it writes on every build.
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(releases.c.id, releases.c.manifest).where(
                releases.c.app == app, releases.c.id.in_(sorted(wanted)))).all()
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read releases from the state store: {exc}") from exc
    for row in rows:
        found[row.id] = _sha(row.manifest)
    if wanted - set(found):
        for release in artifacts.list():  # built elsewhere, never recorded here: its manifest says
            if release.id in wanted and release.id not in found:
                found[release.id] = _sha({"git": release.git})
    return found


def _sha(manifest: Any) -> str | None:
    git = manifest.get("git") if isinstance(manifest, dict) else None
    sha = git.get("sha") if isinstance(git, dict) else None
    return sha if is_sha(sha) else None


class Comparer:
    """Commits between releases, each pair asked of git once."""

    def __init__(self, directory: Path, commits_of: Callable[[Iterable[str]], dict[str, str | None]]) -> None:
        """`directory` is in the git work tree; `commits_of` maps release ids to the commit each was built
        from (`release_commits` over the caller's stores)."""
        self.directory = directory
        self.commits_of = commits_of
        self.shas: dict[str, str | None] = {}
        self.done: dict[tuple[str | None, str], Changes] = {}

    def prepare(self, ids: Iterable[str | None]) -> None:
        """Read the commits of these releases in one go."""
        missing = {i for i in ids if i and i not in self.shas}
        if missing:
            found = self.commits_of(missing)
            self.shas.update({i: found.get(i) for i in missing})

    def compare(self, source: str | None, target: str | None) -> Changes:
        """The commits `source` has that `target` lacks (what replacing `target` with `source` ships)."""
        if source is None:
            return Changes([], None)
        if source == target:
            return Changes([], None)
        self.prepare([source, target])
        new_sha = self.shas.get(source)
        if new_sha is None:
            return Changes([], f"release {source} records no git commit (built outside a git work tree?)")
        old_sha = None
        if target is not None:
            old_sha = self.shas.get(target)
            if old_sha is None:
                return Changes([], f"release {target} records no git commit (built outside a git work tree?)")
        key = (old_sha, new_sha)
        if key not in self.done:
            self.done[key] = commits_between(self.directory, old_sha, new_sha)
        return self.done[key]
