"""What happened: per host, per region, per deployment. Partial failure is a value, not an exception."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conveyor.engine.stack import Reading
from conveyor.inventory import Host


class DeploymentStatus(StrEnum):
    """A deployment's lifecycle, as stored and shown by history."""

    RUNNING = "running"          # hosts are moving
    SUCCEEDED = "succeeded"      # every region moved (failed hosts within max_failures are listed)
    FAILED = "failed"            # a region failed and could not be put back completely
    ROLLED_BACK = "rolled_back"  # a region failed and was switched back to its previous release
    INTERRUPTED = "interrupted"  # the controller stopped (killed, cancelled) before the end
    BLOCKED = "blocked"          # a gate or a lock held it; nothing changed
    HELD = "held"                # a check was inconclusive after hosts moved; resume it with --resume ID


class HostStatus(StrEnum):
    """One host's outcome in a deployment."""

    PENDING = "pending"          # not reached (its region halted, or a later wave)
    SUCCEEDED = "succeeded"      # runs the target release and passed its checks
    UNCHANGED = "unchanged"      # already ran the target release; nothing done
    FAILED = "failed"            # a step failed; see step, exit code and output
    ROLLED_BACK = "rolled_back"  # moved, then switched back to its previous release
    LEFT = "left"                # left the inventory during the deployment (scaled in): not a failure
    INTERRUPTED = "interrupted"  # stopped mid-step by a second Ctrl-C (or SIGTERM): `step` says where


class RegionStatus(StrEnum):
    """One region's outcome."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    SKIPPED = "skipped"          # an earlier wave failed, so it never started
    HELD = "held"                # a check was inconclusive: it waits for a person (deploy --resume)
    INTERRUPTED = "interrupted"  # the controller stopped changing hosts before the region finished


@dataclass
class HostOutcome:
    """What one host did: its status, where it stopped, and why."""

    host: Host
    status: HostStatus = HostStatus.PENDING
    release: str | None = None        # the release it runs at the end, as far as we know
    previous: str | None = None       # what it ran before this deployment
    target: str | None = None
    step: str | None = None
    exit_code: int | None = None
    output_tail: str = ""
    error: str | None = None
    duration: float = 0.0
    moved: bool = False               # current was switched by this deployment
    transferred: bool = False
    transfer: str | None = None       # how the release got there: full, or a delta from a base
    failed: bool = False              # a step failed here (it may have been switched back since)
    note: str | None = None           # what happened after: switched back, alone or with its region
    components: dict[str, Reading] = field(default_factory=dict)  # its stack, as its probe step said
    zstd: bool | None = None          # whether it can decompress zstd, if it was probed

    def to_json(self) -> dict[str, Any]:
        """The host's outcome as stored and printed."""
        return {
            "host": self.host.name, "region": self.host.region, "role": self.host.role,
            "status": str(self.status), "release": self.release, "previous": self.previous,
            "step": self.step, "exit_code": self.exit_code, "error": self.error,
            "output_tail": self.output_tail, "duration": round(self.duration, 3),
            "transferred": self.transferred, "transfer": self.transfer, "failed": self.failed,
            "note": self.note,
            **({"components": {name: r.to_json() for name, r in self.components.items()}}
               if self.components else {}),
        }


@dataclass
class RegionOutcome:
    """One region's hosts and how the region ended."""

    region: str
    target: str | None
    status: RegionStatus = RegionStatus.PENDING
    hosts: list[HostOutcome] = field(default_factory=list)
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The region's outcome as printed."""
        return {"region": self.region, "release": self.target, "status": str(self.status),
                "message": self.message, "hosts": [h.to_json() for h in self.hosts]}


@dataclass
class DeploymentResult:
    """A deployment's outcome: every region, every host."""

    id: int | None
    environment: str
    kind: str
    release: str | None
    status: DeploymentStatus
    regions: list[RegionOutcome] = field(default_factory=list)
    message: str | None = None
    warnings: list[str] = field(default_factory=list)  # what open gates warned of ("consistency: warning: …")

    @property
    def failed_hosts(self) -> list[str]:
        """Names of the hosts that failed, in the order they moved."""
        return [h.host.name for region in self.regions for h in region.hosts if h.failed]

    @property
    def exit_code(self) -> int:
        """0 succeeded, 1 failed or rolled back or interrupted, 3 blocked."""
        if self.status == DeploymentStatus.SUCCEEDED:
            return 0
        if self.status in (DeploymentStatus.BLOCKED, DeploymentStatus.HELD):
            return 3
        return 1

    def to_json(self) -> dict[str, Any]:
        """The final result document of `deploy --json` and `rollback --json`."""
        return {
            "id": self.id, "environment": self.environment, "kind": self.kind, "release": self.release,
            "status": str(self.status), "message": self.message, "failed_hosts": self.failed_hosts,
            "regions": {r.region: r.to_json() for r in self.regions}, "warnings": list(self.warnings),
        }
