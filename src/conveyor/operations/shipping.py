"""What a rollout needs from outside the engine: migrations per region, the inventory read again for
catch-up, presigned URLs for hosts that pull, deltas made once per (base, target)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from conveyor.artifact import Release
from conveyor.artifact.compression import COMPRESSIONS
from conveyor.artifact.delta import Delta, build_delta
from conveyor.artifact.encodings import reencode
from conveyor.engine.rollout import RolloutSpec, Shipment
from conveyor.errors import (
    ArtifactError,
    ConveyorError,
)
from conveyor.inventory import Host
from conveyor.operations.request import Request
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.operations.migrations import RegionMigrations


def add_migrations(ws: Workspace, spec: RolloutSpec, release: Release, plans: dict[str, RegionMigrations],
                    deployment_id: int) -> None:
    """Each region runs its migrations before its hosts switch: on a host of `run_on`, or here."""
    from conveyor.operations.migrations import here, migrator

    settings = ws.config.migrations
    assert settings is not None
    spec.migrate = migrator(ws, spec.environment, release, plans, deployment_id)
    if settings.run_on == "local":
        spec.migrate_here = here(ws, release)
    else:
        spec.migrate_on = settings.run_on

def inventory_refresher(ws: Workspace, env: str,
                         request: Request) -> Callable[[str], Awaitable[list[Host] | None]] | None:
    """For an environment with inventory providers: read a region's hosts again (in a thread), for the
    catch-up at the end of each region. A provider that fails then is a warning: the region's pointer,
    written at its end, is what any host it missed starts from (`conveyor converge`)."""
    regions = ws.config.environments[env].regions
    if not any(region.inventory is not None for region in regions.values()):
        return None

    async def refresh(region: str) -> list[Host] | None:
        if regions[region].inventory is None:
            return None
        try:
            found = await asyncio.to_thread(ws.hosts, env, [region], refresh=True)
        except ConveyorError as exc:
            print(f"conveyor: warning: {env}/{region}: cannot read the inventory again to catch up hosts that "
                  f"joined: {exc.message}", file=sys.stderr)
            return None
        return [h for h in found.get(region, []) if not request.roles or h.role in request.roles]

    return refresh

PULL_URL_SECONDS = 6 * 3600  # a region's hosts may start downloading hours after the deployment started

def pull_source(ws: Workspace, env: str) -> Callable[[str, Shipment], Awaitable[str]] | None:
    """For `transfer: pull`: the URL a region's hosts download a release from, made once per (region,
    release): the release copied into the region's own S3 store if it has one, then a presigned URL; for a
    local store (a shared filesystem), a file:// URL."""
    if ws.config.environments[env].transfer != "pull":
        return None
    made: dict[tuple[str, str], asyncio.Future[str]] = {}

    def url_for(region: str, release_id: str) -> str:
        store = ws.artifacts
        return store.download_url(store.get(release_id), region, expires=PULL_URL_SECONDS)

    async def pull(region: str, shipment: Shipment) -> str:
        key = (region, shipment.release)
        if key not in made:
            made[key] = asyncio.ensure_future(asyncio.to_thread(url_for, region, shipment.release))
        return await made[key]

    return pull

def delta_factory(ws: Workspace) -> Callable[[str, str, str], Awaitable[Delta | None]]:
    """Deltas made once per (base, target, compression), in a thread, shared by every host that needs them."""
    made: dict[tuple[str, str, str], asyncio.Task[Delta | None]] = {}

    def build(base: str, target: str, compression: str) -> Delta | None:
        if base not in ws.artifacts or target not in ws.artifacts or compression not in COMPRESSIONS:
            return None  # the base was built elsewhere: hosts get the whole release
        try:
            # Nothing at or under a shared path travels in a delta: that data is the host's (security.md).
            return build_delta(ws.artifacts.get(base), ws.artifacts.get(target), ws.artifacts.root / "deltas",
                               shared=ws.config.shared, compression=compression)
        except ArtifactError:
            return None

    async def delta(base: str, target: str, compression: str) -> Delta | None:
        key = (base, target, compression)
        if key not in made:
            made[key] = asyncio.create_task(asyncio.to_thread(build, *key))
        return await asyncio.shield(made[key])

    return delta


def shipment(ws: Workspace, release: Release) -> Shipment:
    """How `release` is sent to hosts: its stored tarball; under `artifact.compression: auto`, a zstd release
    also offers a gzip copy (made once, in a thread, when the first host without zstd asks)."""
    if ws.config.artifact.compression != "auto" or release.compression != "zstd":
        return Shipment(release.id, release.sha256, release.path, release.compression)
    made: list[asyncio.Future[Shipment]] = []

    def encode() -> Shipment:
        encoded = reencode(release, ws.artifacts.root / "encodings", "gzip")
        return Shipment(release.id, encoded.sha256, encoded.path, encoded.compression)

    async def fallback() -> Shipment:
        if not made:
            made.append(asyncio.ensure_future(asyncio.to_thread(encode)))
        return await asyncio.shield(made[0])

    return Shipment(release.id, release.sha256, release.path, release.compression, fallback=fallback)
