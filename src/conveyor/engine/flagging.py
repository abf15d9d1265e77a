"""A flags file as host work: each host of a region gets its region's flags document in one round trip
(written beside the old one and renamed over it, the old one kept in .conveyor/), then its role's checks run
against the release it serves; switching back puts the kept file back. The rollout around it (waves, canary
first, bakes, switching back a halted region) is the same as a release's (see `HostWork` in spec.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.engine import commands
from conveyor.engine.moving import Mover, StepFailed
from conveyor.engine.probe import last_step, markers, why
from conveyor.engine.results import HostOutcome, HostStatus

__all__ = ["FlagFile", "FlagWork", "flags_id"]


def flags_id(sha256: str) -> str:
    """The name a flags document goes by in history and outcomes: `flags-` and 12 hex digits of its sha256."""
    return f"flags-{sha256[:12]}"


@dataclass(frozen=True)
class FlagFile:
    """One region's flags document: the file's text and its sha256."""

    content: str
    sha256: str

    @property
    def id(self) -> str:
        """Its name in history (see flags_id)."""
        return flags_id(self.sha256)

    def carried(self, path: str) -> dict[str, str]:
        """What a release's switch carries to write this file at `path` before the restart (activate.sh)."""
        return {"CONVEYOR_FLAGS_PATH": path, "CONVEYOR_FLAGS_CONTENT": self.content,
                "CONVEYOR_FLAGS_SHA256": self.sha256}


class FlagWork:
    """Writes each host's flags file (and switches it back): `HostWork` for a deployment of kind `flags`."""

    def __init__(self, files: Mapping[str, FlagFile], path_on_host: str, on_change: Mapping[str, str]) -> None:
        self.files = dict(files)                # target (a FlagFile's id) → the file
        self.path_on_host = path_on_host        # absolute, or relative to deploy_to
        self.on_change = dict(on_change)        # role → command run after its hosts' file changed

    def path(self, deploy_to: str) -> str:
        """The flags file on a host whose application lives in `deploy_to`."""
        return self.path_on_host if self.path_on_host.startswith("/") else f"{deploy_to}/{self.path_on_host}"

    async def move(self, mover: Mover, outcome: HostOutcome, target: str | None) -> None:
        """Write the region's document; then the role's checks, against the release the host serves."""
        file = self.files.get(target or "")
        if file is None:
            raise StepFailed("flags", f"no flags document {target} to write")
        done, said = await self._run(mover, outcome, "write", file)
        was = said.get("was") or ""
        outcome.previous = flags_id(was) if was else None
        release = said.get("release") or None
        outcome.release = release
        if said.get("changed") == "yes":
            outcome.moved = True
        if done.exit_code != 0:
            step = last_step(done.output) or "flags"
            raise StepFailed(step, why(step, done), done)
        if said.get("unchanged") == "yes":
            outcome.status, outcome.step = HostStatus.UNCHANGED, None
            return
        await mover._checks(outcome, release)
        outcome.status, outcome.step = HostStatus.SUCCEEDED, None

    async def revert(self, mover: Mover, outcome: HostOutcome) -> None:
        """Put back the flags file this host had before its move."""
        done, _ = await self._run(mover, outcome, "revert", None, track=False)
        if done.exit_code != 0:
            step = last_step(done.output) or "flags"
            raise StepFailed(step, why(step, done), done)

    async def _run(self, mover: Mover, outcome: HostOutcome, mode: str, file: FlagFile | None, *,
                   track: bool = True) -> tuple[Any, dict[str, str]]:
        host = outcome.host
        deploy_to = mover.deploy_to(host)
        path = self.path(deploy_to)
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "event": f"flags_{mode}",
                 "flags": file.id if file else outcome.previous, "previous": outcome.previous if file else
                 outcome.target, "deployment": mover.spec.deployment_id, "user": mover.spec.user,
                 "app": mover.spec.app, "environment": host.environment, "region": host.region, "host": host.name}
        env = mover.env(host, outcome.release, None, mover.spec.kind, deploy_to)
        env["CONVEYOR_FLAGS_FILE"] = path
        command = commands.flags(deploy_to, path, file.content if file else "", file.sha256 if file else "",
                                 mode, json.dumps(entry, sort_keys=True), self.on_change.get(host.role, ""), env)
        done = await mover.run(outcome, "flags", command, track=track)
        return done, dict(markers(done.output))
