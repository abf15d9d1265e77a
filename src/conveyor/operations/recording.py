"""The state store as an event subscriber: host outcomes, what each host runs, region pointers.

It is the one required subscriber: when it cannot record (the store is unreachable or full, or the
deployment's lease was taken over), the deployment stops before the next host changes.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from conveyor.engine.events import (
    BakeStarted,
    BatchStarted,
    CanaryBakeStarted,
    Event,
    HostFinished,
    Measured,
    RegionFinished,
    RegionRollingBack,
    WaveFinished,
    WaveHeld,
)
from conveyor.errors import ConveyorError, LockLost, StateError
from conveyor.state.components import ComponentRow

if TYPE_CHECKING:
    from conveyor.artifact.pointers import PointerFiles
    from conveyor.engine.results import DeploymentResult
    from conveyor.state.store import Store

# Host outcomes are written in groups, so a large batch is one transaction rather than one per host. The
# truth about a host is on the host: what a killed controller had not written yet, `status --verify` reads.
FLUSH_HOSTS = 200
FLUSH_SECONDS = 1.0
_FLUSH_ON = (BatchStarted, RegionRollingBack, RegionFinished, WaveFinished, WaveHeld, BakeStarted,
             CanaryBakeStarted)
# Every event `record` acts on; the others (a host's steps, most of them) pass by without a look.
_RECORDED = (HostFinished, Measured, *_FLUSH_ON)


class StoreRecorder:
    """Keeps the store in step with what hosts report during a deployment. Give it the store `under` the
    deployment's lease: each batch starts only once the store has confirmed the lease is still ours."""

    name = "the state store"

    def __init__(self, store: Store, environment: str, deployment_id: int, *,
                 pointer_files: PointerFiles | None = None, pointers: bool = True) -> None:
        self.store = store
        self.pointers = pointers  # False: the deployment moves no release (flags), so no region pointer moves
        self.pointer_files = pointer_files  # region pointers for hosts that start later, beside the releases
        self.environment = environment
        self.deployment_id = deployment_id
        self.results: list[dict[str, Any]] = []
        self.releases: list[tuple[str, str, str, str | None]] = []
        self.components: list[ComponentRow] = []  # what hosts' probe steps said of their stack
        # region → role → component → how many of its hosts said each value, for the region's pointer file:
        # converge lets a new instance in only with the value most of them run
        self.stacks: dict[str, dict[str, dict[str, Counter[str]]]] = {}
        self.zstd: dict[str, bool] = {}  # host → whether it can decompress zstd, for those probed
        self.flushed = time.monotonic()
        self.closed = False
        # Hosts whose outcome this deployment has recorded: it is the only writer of its rows (its record is new,
        # written under its lease), so a host not in here has none to replace.
        self.written: set[str] = set()

    def flush(self) -> None:
        """Write what is buffered."""
        results, releases, components, zstd = self.results, self.releases, self.components, self.zstd
        self.results, self.releases, self.components, self.zstd = [], [], [], {}
        self.flushed = time.monotonic()
        first = {result["host"] for result in results} - self.written
        with self.store.batch():  # one transaction, one lease check, for the whole group
            self.store.record_host_results(self.deployment_id, results, first=first)
            self.store.set_host_releases(self.environment, releases, zstd)
            if components:
                self.store.record_components(self.environment, components, deployment_id=self.deployment_id)
        self.written |= first

    def __call__(self, event: Event) -> None:
        """Record the events that change what runs where; raise (StateError, LockLost) when it cannot."""
        if self.closed or not isinstance(event, _RECORDED):
            return
        with _plainly():
            self.record(event)

    def close(self, result: DeploymentResult) -> None:
        """Record the hosts never reached (a halted region, a skipped wave) and what is still buffered, while
        the deployment still holds its lease; nothing is recorded after this."""
        self.closed = True
        with _plainly():
            for region in result.regions:
                self.results += [pending.to_json() for pending in region.hosts
                                 if pending.status in ("pending", "interrupted")]
            self.flush()

    def record(self, event: Event) -> None:
        """Record one event."""
        if isinstance(event, BatchStarted):
            self.store.check_lease()  # the fencing token, before any host of the batch changes
        match event:
            case HostFinished(outcome=outcome):
                host = outcome.host
                self.results.append(outcome.to_json())
                if outcome.status == "left":
                    self.store.forget_hosts(self.environment, [host.name])  # scaled in: it runs nothing now
                elif outcome.status != "pending":
                    self.releases.append((host.name, host.region, host.role, outcome.release))
                    if outcome.zstd is not None:
                        self.zstd[host.name] = outcome.zstd
                self.components += [ComponentRow(host.name, host.region, host.role, name, r.value, r.error)
                                    for name, r in outcome.components.items()]
                for name, reading in outcome.components.items():
                    if reading.value is not None:
                        (self.stacks.setdefault(host.region, {}).setdefault(host.role, {})
                         .setdefault(name, Counter())[reading.value]) += 1
                if len(self.results) >= FLUSH_HOSTS or time.monotonic() - self.flushed >= FLUSH_SECONDS:
                    self.flush()
                return
            case _ if isinstance(event, _FLUSH_ON):
                self.flush()
        match event:
            case Measured(phase=phase, measurement=measurement):
                self.store.record_measurement(self.deployment_id, phase, measurement.to_json())
            case RegionFinished(status="succeeded", region=region, release=release) if release and self.pointers:
                self.store.set_pointer(self.environment, region, release, self.deployment_id)
                self.write_pointer_file(region, release)

    def write_pointer_file(self, region: str, release: str) -> None:
        """Write the region's pointer file too; a failure is a warning, and the state store's pointer stands."""
        if self.pointer_files is None:
            return
        stack = {role: {name: sorted(v for v, n in counts.items() if n == max(counts.values()))
                        for name, counts in components.items()}
                 for role, components in self.stacks.get(region, {}).items()}
        try:
            self.pointer_files.write(self.environment, region, release, self.deployment_id, stack=stack or None)
        except Exception as exc:  # the file serves hosts that start later: never worth failing a deployment
            reason = exc.message if isinstance(exc, ConveyorError) else f"{type(exc).__name__}: {exc}"
            print(f"conveyor: warning: {self.environment}/{region}: the pointer file was not written "
                  f"(the state store points at {release}): {reason}", file=sys.stderr)
            self.store.add_event("pointer_file_failed", self.pointer_files.user, environment=self.environment,
                                 deployment_id=self.deployment_id, region=region, release=release, error=reason)


@contextmanager
def _plainly() -> Iterator[None]:
    """A store error, said as what it means for the deployment (a lost lock says so itself)."""
    try:
        yield
    except LockLost:
        raise
    except StateError as exc:
        reason = exc.message.removeprefix("state store error: ")
        raise StateError(f"the state store cannot record this deployment: {reason}") from exc
