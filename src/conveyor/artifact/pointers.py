"""Region pointer files: the release each (environment, region) should run, kept beside the releases.

The state store holds the pointers people and the CLI read. A host that starts later (autoscaling) reaches
the artifact store, not the state store, so after a region is deployed or rolled back its pointer is also
written to `<store>/pointers/<env>/<region>.json`, in one step (a single S3 PUT, or a rename), so that a
reader sees the old document or the new one, never part of one:

    {"app", "environment", "region", "release", "sha256",
     "artifact": {"url", ...where the tarball is: bucket and key, or path},
     "deployment_id", "updated_at", "updated_by"}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.artifact.release import Release
from conveyor.artifact.store import LocalStore, write_atomically
from conveyor.errors import ArtifactError

POINTERS = "pointers"
# Environment and region names as the config allows them: safe as a file name and as a key part.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def pointer_name(environment: str, region: str) -> str:
    """`pointers/<env>/<region>.json`: where a pointer lives relative to a store's root (or prefix)."""
    for what, name in (("environment", environment), ("region", region)):
        if not _NAME.fullmatch(name):
            raise ArtifactError(f"no pointer file for the {what} {name!r}: not a name conveyor.yml allows")
    return f"{POINTERS}/{environment}/{region}.json"


def pointer_document(*, app: str, environment: str, region: str, release: Release, artifact: Mapping[str, str],
                     deployment_id: int | None, user: str, now: datetime | None = None) -> dict[str, Any]:
    """The pointer of (environment, region) at `release`, whose tarball is at `artifact`."""
    return {
        "app": app,
        "environment": environment,
        "region": region,
        "release": release.id,
        "sha256": release.sha256,
        "artifact": dict(artifact),
        "deployment_id": deployment_id,
        "updated_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(),
        "updated_by": user,
    }


def local_pointer_path(store: LocalStore, environment: str, region: str) -> Path:
    """Where a local store keeps the pointer of (environment, region)."""
    return store.root / pointer_name(environment, region)


def write_pointer(store: LocalStore, environment: str, region: str, release_id: str, *, app: str,
                  deployment_id: int | None, user: str, now: datetime | None = None) -> dict[str, Any]:
    """Point (environment, region) at a release of `store` (local or S3); the document written."""
    from conveyor.artifact.s3 import S3Store

    if isinstance(store, S3Store):
        return store.write_pointer(environment, region, release_id, app=app, deployment_id=deployment_id,
                                   user=user, now=now)
    release = store.get(release_id)
    tarball = release.path.resolve()
    document = pointer_document(app=app, environment=environment, region=region, release=release,
                                artifact={"url": tarball.as_uri(), "path": str(tarball)},
                                deployment_id=deployment_id, user=user, now=now)
    path = local_pointer_path(store, environment, region)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise ArtifactError(f"cannot write the pointer {path}: {exc}") from exc
    return document


def read_pointer(store: LocalStore, environment: str, region: str) -> dict[str, Any] | None:
    """The pointer of (environment, region) in `store` (local or S3); None if none was written."""
    from conveyor.artifact.s3 import S3Store

    if isinstance(store, S3Store):
        return store.read_pointer(environment, region)
    path = local_pointer_path(store, environment, region)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read the pointer {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ArtifactError(f"the pointer {path} is not a JSON object")
    return document


@dataclass(frozen=True)
class PointerFiles:
    """Writes the pointer files of one app's deployments to its artifact store."""

    store: LocalStore
    app: str
    user: str

    def write(self, environment: str, region: str, release_id: str, deployment_id: int | None) -> dict[str, Any]:
        """Point (environment, region) at `release_id`; the document written."""
        return write_pointer(self.store, environment, region, release_id, app=self.app,
                             deployment_id=deployment_id, user=self.user)
