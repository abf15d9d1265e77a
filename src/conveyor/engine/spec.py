"""What a rollout is asked to do: the release each region runs, what to ship, the limits, the hooks it calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from conveyor.artifact.delta import Delta
from conveyor.config.models import Check
from conveyor.engine.limits import Limits
from conveyor.engine.probe import Probe
from conveyor.engine.results import HostOutcome
from conveyor.engine.stack import ComponentProbe, Reading
from conveyor.gates.analysis import Fetch
from conveyor.inventory import Host
from conveyor.transport.base import Completed

__all__ = ["PROVING_KINDS", "HostWork", "MigrationRun", "RolloutSpec", "Shipment"]

PROVING_KINDS = frozenset({"deploy", "flags"})
"""Kinds of deployment whose change is watched (bakes, canary bakes): a rollback returns to what ran before."""


class HostWork(Protocol):
    """Work on each host other than moving a release (a flags file, engine/flagging.py): how one host moves to
    its region's target, and how it goes back. `mover` is the rollout's `Mover` (its connection, its run)."""

    async def move(self, mover: Any, outcome: HostOutcome, target: str | None) -> None:
        """Move one host to `target`; raise `StepFailed` when a step fails."""
        ...

    async def revert(self, mover: Any, outcome: HostOutcome) -> None:
        """Put back what the host had before its move; raise `StepFailed` when it cannot."""
        ...


@dataclass(frozen=True)
class Shipment:
    """A release's tarball on the controller, ready to send to hosts that lack it."""

    release: str
    sha256: str
    path: Path
    compression: str = "gzip"
    # For a host that cannot decompress `compression` (no zstd): the same release in gzip, made when first
    # asked for and shared by every host that needs it. None: such a host is refused with the reason.
    fallback: Callable[[], Awaitable[Shipment]] | None = field(default=None, compare=False, repr=False)


MigrationRun = Callable[[str, dict[str, str], float], Awaitable[Completed]]


@dataclass
class RolloutSpec:
    """Everything a rollout needs besides the plan: who, what, where, and the limits."""

    app: str
    environment: str
    kind: str                                  # deploy | rollback
    user: str
    deployment_id: int | None
    targets: dict[str, str | None]             # region → release to run (None: no release, undo a first deploy)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)   # host key → a probe made just before
    # host key → the release the state store says it runs: such a host is switched in one round trip, on
    # the condition (checked on the host) that it runs that and its journal agrees; otherwise it is read first.
    expect: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)   # region → its limits
    max_concurrency: int = 64                                  # hosts at once across the environment
    revert_on_failure: bool = True
    bake: float | None = None                                  # watch between waves, seconds
    checks: list[Check] = field(default_factory=list)          # the environment's analysis checks
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    fetch: Fetch | None = None                                 # HTTP for Prometheus/Alertmanager
    before_wave: Callable[[int], str | None] | None = None     # a reason to stop before wave N (N > 1)
    # (base, target, compression) → what changed, compressed that way (None: send the whole release)
    deltas: Callable[[str, str, str], Awaitable[Delta | None]] | None = None
    # A rollback reads every host first (over the connections it then reuses) and decides the targets.
    resolve_targets: Callable[[dict[str, Probe]], dict[str, str | None]] | None = None
    # A region's hosts as its inventory lists them now (None if it cannot be read): hosts that joined while
    # the region moved are caught up at its end; failed hosts that left are not failures.
    refresh_hosts: Callable[[str], Awaitable[list[Host] | None]] | None = None
    # transfer: pull — (region, shipment) → a URL the region's hosts download the tarball from themselves.
    pull: Callable[[str, Shipment], Awaitable[str]] | None = None
    bake_canaries: bool = True                                 # converge moves one host: no canary bake
    # Schema migrations of a region, run before any of its hosts switches: (region, run) → why it failed, or
    # None. `run(command, env, timeout)` runs a command in the new release's directory on one host of the
    # role `migrate_on` (the release is put there first), or on this machine with `migrate_here`.
    migrate: Callable[[str, MigrationRun], Awaitable[str | None]] | None = None
    migrate_on: str | None = None
    migrate_here: MigrationRun | None = None
    # The components a host is asked about in its probe step (conveyor.yml's consistency:), and a judge of
    # what it answered: a reason refuses the host before anything is put on it (converge on a stale image).
    stack: Callable[[Host], Sequence[ComponentProbe]] | None = None
    judge_stack: Callable[[Host, Mapping[str, Reading]], str | None] | None = None
    work: HostWork | None = None                               # None: move releases
    # What a deploy's switch carries besides the release: variables for a host's activate script (the region's
    # flags file: CONVEYOR_FLAGS_PATH, _CONTENT, _SHA256), written in the same round trip.
    carry: Callable[[Host], Mapping[str, str]] | None = None

    def limits_for(self, region: str) -> Limits:
        """A region's limits (defaults when it has none of its own)."""
        return self.limits.get(region) or Limits()

    @property
    def visits_hosts_once(self) -> bool:
        """Nothing after a host's own steps comes back to it in this rollout: no bake or check watches it, and
        no failure elsewhere switches it back (a rollback, say). Its connection can close once it is done."""
        return (self.kind not in PROVING_KINDS and not self.revert_on_failure and not self.bake
                and not self.checks)
