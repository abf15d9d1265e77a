"""Region pointer files: the release each (environment, region) should run, kept beside the releases.

The state store holds the pointers people and the CLI read. A host that starts later (autoscaling) reaches
the artifact store, not the state store, so after a region is deployed or rolled back its pointer is also
written to `<store>/pointers/<env>/<region>.json`, in one step (a single S3 PUT, or a rename), so that a
reader sees the old document or the new one, never part of one (each store's `write_pointer`):

    {"app", "environment", "region", "release", "sha256",
     "artifact": {"url", ...where the tarball is: bucket and key, or path},
     "deployment_id", "updated_at", "updated_by", "stack"?}

`stack` (with `consistency:` in the config) is what the region's hosts said they run in that deployment,
role → component → values: converge refuses a new instance whose own values are not among them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.errors import ArtifactError

if TYPE_CHECKING:
    from conveyor.artifact.base import ArtifactStore, Stack
    from conveyor.artifact.release import Release

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
                     deployment_id: int | None, user: str, now: datetime | None = None,
                     stack: Stack | None = None) -> dict[str, Any]:
    """The pointer of (environment, region) at `release`, whose tarball is at `artifact`."""
    document: dict[str, Any] = {
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
    if stack:
        document["stack"] = {role: {name: list(values) for name, values in components.items()}
                             for role, components in stack.items()}
    return document


@dataclass(frozen=True)
class PointerFiles:
    """Writes the pointer files of one app's deployments to its artifact store."""

    store: ArtifactStore
    app: str
    user: str

    def write(self, environment: str, region: str, release_id: str, deployment_id: int | None, *,
              stack: Stack | None = None) -> dict[str, Any]:
        """Point (environment, region) at `release_id` (with the region's stack); the document written."""
        return self.store.write_pointer(environment, region, release_id, app=self.app,
                                        deployment_id=deployment_id, user=self.user, stack=stack)
