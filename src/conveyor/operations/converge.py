"""`conveyor converge`: a host that starts (an autoscaled instance at boot) installs the release its region
runs, with the same host scripts a deployment uses, and nothing but read access to the artifact store.

The region's pointer file (written after each deployment or rollback of the region) says which release;
the release is fetched from the store and verified against the pointer's sha256 and the manifest's; the
host receives it, switches (writing the flags file the pointer carries, when the config has `flags:`),
restarts and runs its role's checks. Running it again changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.artifact.base import ArtifactStore
from conveyor.artifact.pointers import pointer_flags
from conveyor.config.models import check_host_name
from conveyor.engine.events import EventBus, Subscriber
from conveyor.engine.flagging import FlagFile
from conveyor.engine.plan import make_plan
from conveyor.engine.results import HostOutcome, HostStatus
from conveyor.engine.rollout import Rollout, RolloutSpec
from conveyor.engine.stack import Reading, stack_of
from conveyor.errors import ArtifactError, UsageError
from conveyor.gates.drift import against
from conveyor.inventory import Host
from conveyor.operations.shipping import shipment
from conveyor.operations.stack import rows_of
from conveyor.operations.workspace import Workspace
from conveyor.transport.local import ThisMachine


@dataclass
class ConvergeResult:
    """What converge did on this host."""

    environment: str
    region: str
    role: str
    host: str
    release: str | None
    status: str            # converged | unchanged | failed | no_pointer
    message: str | None = None
    outcome: HostOutcome | None = None

    @property
    def exit_code(self) -> int:
        """0 when the host runs its region's release (or the region has none yet), 1 when it failed."""
        return 1 if self.status == "failed" else 0

    def to_json(self) -> dict[str, Any]:
        """The result document of `converge --json`."""
        return {"environment": self.environment, "region": self.region, "role": self.role, "host": self.host,
                "release": self.release, "status": self.status, "message": self.message,
                "outcome": self.outcome.to_json() if self.outcome else None}


def host_name(given: str | None) -> str:
    """This host's name: given (checked like a host name in conveyor.yml), else the machine's, made safe."""
    if given is not None:
        try:
            return check_host_name(given)
        except ValueError as exc:
            raise UsageError(f"--host {given!r}: {exc}") from None
    return re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-.") or "localhost"


def region_judge(environment: str, region: str, stack: Any, on_drift: str, warnings: list[str]
                 ) -> Callable[[Host, Mapping[str, Reading]], str | None]:
    """What converge asks of this host's components: the values its region's hosts ran when the region was last
    deployed (its pointer's `stack`). A value not among them refuses the install (`consistency.converge:
    refuse`: a stale image never serves traffic silently) or is added to `warnings` (`warn`)."""
    def judge(host: Host, readings: Mapping[str, Reading]) -> str | None:
        expected = stack.get(host.role) if isinstance(stack, dict) else None
        if not isinstance(expected, dict):
            return None  # the region's pointer says nothing of this role's stack: nothing to compare with
        reference = {name: [v for v in values if isinstance(v, str)] for name, values in expected.items()
                     if isinstance(values, list)}
        findings = against("this host", rows_of(host, readings), reference, kind="region",
                           where=f"{environment}/{region}'s {host.role} hosts")
        if not findings:
            return None
        detail = "; ".join(f.detail for f in findings)
        if on_drift == "refuse":
            return (f"not installed: its stack differs from its region's: {detail} (a stale image? "
                    "consistency.converge: warn lets it in)")
        warnings.append(detail)
        return None

    return judge


def _region_store(ws: Workspace, region: str) -> ArtifactStore:
    """Where the region's hosts read pointers and releases: its own S3 store if it has one."""
    return ws.artifacts.region_store(region)


def converge(ws: Workspace, environment: str, region: str, role: str, *, name: str | None = None,
             root: Path = Path("/"), subscribers: list[Subscriber] | None = None) -> ConvergeResult:
    """Bring this machine to the release its region's pointer names."""
    ws.environment(environment)
    regions = ws.config.environments[environment].regions
    if region not in regions:
        raise UsageError(f"unknown region {region!r} in {environment}; known: {', '.join(regions)}")
    if role not in ws.config.roles:
        raise UsageError(f"unknown role {role!r}; known: {', '.join(ws.config.roles)}")
    host = Host(name=host_name(name), environment=environment, region=region, role=role, address="localhost")
    store = _region_store(ws, region)
    pointer = store.read_pointer(environment, region)
    if pointer is None:
        return ConvergeResult(environment, region, role, host.name, None, "no_pointer",
                              f"{environment}/{region} has not been deployed yet: nothing to install")
    release_id = pointer.get("release")
    if not isinstance(release_id, str):
        raise ArtifactError(f"the pointer of {environment}/{region} names no release")
    release = store.get(release_id)  # fetched into the local cache and verified against its manifest
    if pointer.get("sha256") != release.sha256:
        raise ArtifactError(f"the pointer of {environment}/{region} says {release_id} has sha256 "
                            f"{pointer.get('sha256')}, the store's manifest says {release.sha256}")
    plan = make_plan(ws.config, environment, {region: [host]}, regions=[region], roles=[role])
    spec = RolloutSpec(
        app=ws.config.app, environment=environment, kind="deploy", user=ws.user, deployment_id=None,
        targets={region: release.id},
        shipments={release.id: shipment(ws, release)},
        limits={region: ws.limits(environment)[region]}, revert_on_failure=True, bake_canaries=False,
    )
    flags = pointer_flags(pointer) if ws.config.flags is not None else None
    if flags is not None and ws.config.flags is not None:
        # The file the region's hosts were last given, written before the first restart as a deploy writes it;
        # where it goes is this config's to say, not the pointer's.
        carried = FlagFile(flags["content"], flags["sha256"]).carried(ws.config.flags.path)
        spec.carry = lambda _host: carried
    warnings: list[str] = []
    if ws.config.consistency is not None:
        spec.stack = stack_of(ws.config.consistency)
        spec.judge_stack = region_judge(environment, region, pointer.get("stack"), ws.config.consistency.converge,
                                        warnings)
    rollout = Rollout(ws.config, spec, ThisMachine(root), EventBus(subscribers or []))
    outcome = asyncio.run(rollout.run(plan))[0].hosts[0]
    if outcome.status == HostStatus.UNCHANGED:
        status, message = "unchanged", f"already runs {release.id}"
    elif outcome.status == HostStatus.SUCCEEDED:
        status, message = "converged", f"now runs {release.id} (was {outcome.previous or 'nothing'})"
    else:
        status, message = "failed", f"{outcome.step}: {outcome.error}"
    if warnings:
        message = f"{message}; warning: {'; '.join(warnings)}"
    return ConvergeResult(environment, region, role, host.name, release.id, status, message, outcome)

