"""Region pointer files: the release each (environment, region) should run, kept beside the releases.

The state store holds the pointers people and the CLI read. A host that starts later (autoscaling) reaches
the artifact store, not the state store, so after a region is deployed or rolled back its pointer is also
written to `<store>/pointers/<env>/<region>.json`, in one step (a single S3 PUT, or a rename), so that a
reader sees the old document or the new one, never part of one (each store's `write_pointer`):

    {"app", "environment", "region", "release", "sha256",
     "artifact": {"url", ...where the tarball is: bucket and key, or path},
     "deployment_id", "updated_at", "updated_by", "stack"?, "flags"?}

`stack` (with `consistency:` in the config) is what the region's hosts said they run in that deployment,
role → component → values: converge refuses a new instance whose own values are not among them.
`flags` (with `flags:` in the config) is the flags file the region's hosts were last given, {"content",
"sha256"}: converge writes it on a new instance before its first restart, as a deploy does. A deploy or a flag
change sets it once its region's hosts have the file; a rollback, which leaves the files as they are, keeps it.
"""

from __future__ import annotations

import hashlib
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
                     stack: Stack | None = None, flags: Mapping[str, str] | None = None) -> dict[str, Any]:
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
    if flags:
        document["flags"] = {"content": flags["content"], "sha256": flags["sha256"]}
    return document


def pointer_flags(pointer: Mapping[str, Any]) -> dict[str, str] | None:
    """The flags file a pointer carries, {"content", "sha256"}, when it carries one whose content is what its
    sha256 says; None otherwise (an older pointer, or one without flags)."""
    flags = pointer.get("flags")
    if not isinstance(flags, Mapping):
        return None
    content, sha256 = flags.get("content"), flags.get("sha256")
    if not isinstance(content, str) or not isinstance(sha256, str):
        return None
    if hashlib.sha256(content.encode("utf-8")).hexdigest() != sha256:
        raise ArtifactError("the pointer's flags file is not the one its sha256 names")
    return {"content": content, "sha256": sha256}


@dataclass(frozen=True)
class PointerFiles:
    """Writes the pointer files of one app's deployments to its artifact store."""

    store: ArtifactStore
    app: str
    user: str

    def write(self, environment: str, region: str, release_id: str, deployment_id: int | None, *,
              stack: Stack | None = None) -> dict[str, Any]:
        """Point (environment, region) at `release_id` (with the region's stack); the document written. The
        flags file the pointer carried stays: the region's hosts keep theirs."""
        try:  # an unreadable old pointer must not stand in the way of the new one
            before = self.store.read_pointer(environment, region)
            flags = pointer_flags(before) if before else None
        except ArtifactError:
            flags = None
        return self.store.write_pointer(environment, region, release_id, app=self.app,
                                        deployment_id=deployment_id, user=self.user, stack=stack, flags=flags)

    def set_flags(self, environment: str, region: str, content: str, sha256: str) -> dict[str, Any] | None:
        """Give the region's pointer the flags file its hosts now have (the release, its stack, kept); None
        when the region has no pointer yet (nothing for a new instance to install)."""
        before = self.store.read_pointer(environment, region)
        if before is None or not isinstance(before.get("release"), str):
            return None
        deployment = before.get("deployment_id")
        stack = before.get("stack")
        return self.store.write_pointer(environment, region, before["release"], app=self.app,
                                        deployment_id=deployment if isinstance(deployment, int) else None,
                                        user=self.user, stack=stack if isinstance(stack, dict) else None,
                                        flags={"content": content, "sha256": sha256})
