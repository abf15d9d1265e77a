"""build and releases: turn the build output into a content-addressed release."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from conveyor.artifact import Release, build_release, git_info, run_build
from conveyor.artifact.compression import stored_as
from conveyor.artifact.release import working_tree_changes
from conveyor.errors import ArtifactError
from conveyor.operations.stack import build_stack
from conveyor.operations.workspace import Workspace


def build(ws: Workspace, *, ref: str | None = None) -> tuple[Release, bool]:
    """Run the build command if any, then ingest `artifact.path`: (release, newly created)."""
    artifact = ws.config.artifact
    if artifact.build:
        run_build(artifact.build, ws.directory)
    source = Path(artifact.path)
    source = source if source.is_absolute() else ws.directory / source
    if not source.exists():
        raise ArtifactError(f"artifact.path {artifact.path}: no such file or directory"
                            + ("" if artifact.build else " (and no artifact.build command to make it)"))
    git = git_info(ws.directory)
    if git is not None and ref:
        git = {**git, "ref": ref}
    diff = working_tree_changes(ws.directory, ignore=_own_directories(ws)) if git is not None else None
    release, created = build_release(source, ws.artifacts, user=ws.user, now=datetime.now(UTC), git=git,
                                     compression=stored_as(ws.config.artifact.compression), diff_sha256=diff)
    record_release(ws, release, stack=build_stack(ws))
    return release, created


def _own_directories(ws: Workspace) -> tuple[str, ...]:
    """What Conveyor writes inside the work tree (its state, the local store, local hosts): not changes."""
    own = [".conveyor"]
    for path in (getattr(ws.artifacts, "root", None),):
        if isinstance(path, Path) and path.resolve().is_relative_to(ws.directory.resolve()):
            own.append(str(path.resolve().relative_to(ws.directory.resolve())))
    return tuple(own)


def record_release(ws: Workspace, release: Release, *, stack: dict[str, dict[str, str | None]] | None = None
                   ) -> None:
    """Remember a release in the state store, with the migrations it carries (when the config has them), so
    a rollback can tell what the schema needs even once the tarball has left the store, and the stack it was
    built on (`consistency.build`, as this machine answered; the first build of a content is the one kept)."""
    manifest = release.manifest()
    if stack:
        manifest["stack"] = stack
    if ws.config.migrations is not None:
        from conveyor.migrations.catalog import migrations_of

        manifest["migrations"] = [m.to_json() for m in migrations_of(release, ws.config.migrations.dir)]
    ws.store.record_release(manifest)
