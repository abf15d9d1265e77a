"""One host's move: read it, get the release onto it (a delta, a download or the whole tarball), switch it,
verify it. Each step is a host command from commands.py, run over the host's one connection; a step that
fails raises `StepFailed`, which becomes the host's outcome, never the rollout's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from conveyor.checks import Place, kind_of
from conveyor.config.models import Config
from conveyor.engine import commands
from conveyor.engine.checking import OnHost
from conveyor.engine.connections import Connections
from conveyor.engine.events import EventBus, HostFinished, HostStarted, HostStep
from conveyor.engine.exits import SEND_WHOLE, HostExit
from conveyor.engine.probe import Probe, current_at_exit, last_step, parse_probe, tail, why
from conveyor.engine.results import HostOutcome, HostStatus
from conveyor.engine.spec import RolloutSpec, Shipment
from conveyor.engine.stack import host_env, read_components
from conveyor.engine.stopping import Stopping
from conveyor.errors import ConveyorError, TransportError
from conveyor.gates.analysis import Scope, Verdict, http_fetch
from conveyor.inventory import Host
from conveyor.secrets import mask
from conveyor.transport.base import Completed, Connection, Transport

__all__ = ["Mover", "StepFailed"]


class StepFailed(Exception):
    """A host step failed; carries what the outcome needs."""

    def __init__(self, step: str, message: str, completed: Completed | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.completed = completed


class Mover:
    """Moves hosts to a release, one coroutine each, as many at once as the environment and region allow."""

    def __init__(self, config: Config, spec: RolloutSpec, transport: Transport, bus: EventBus,
                 connections: Connections, stopping: Stopping) -> None:
        self.config = config
        self.spec = spec
        self.transport = transport
        self.bus = bus
        self.connections = connections
        self.stopping = stopping
        self.semaphore = asyncio.Semaphore(spec.max_concurrency)
        self.region_semaphores = {region: asyncio.Semaphore(limits.max_concurrency)
                                  for region, limits in spec.limits.items()}

    @contextlib.asynccontextmanager
    async def slot(self, host: Host) -> AsyncIterator[None]:
        """A place among the hosts working at once: in the environment, and in the host's region."""
        async with self.semaphore:
            region = self.region_semaphores.get(host.region)
            if region is None:
                yield
            else:
                async with region:
                    yield

    async def move(self, outcome: HostOutcome, target: str | None) -> None:
        """Move one host to `target` (None: no release), recording how it went in `outcome`."""
        host = outcome.host
        outcome.target = target
        async with self.slot(host):
            if self.stopping.interrupted():
                return  # not reached: it stays pending
            started = time.monotonic()
            self.bus.emit(HostStarted(host=host.name, region=host.region, role=host.role))
            try:
                if self.spec.work is not None:
                    await self.spec.work.move(self, outcome, target)
                else:
                    await self._steps(outcome, target)
            except StepFailed as exc:
                outcome.failed = True
                outcome.status = HostStatus.FAILED
                outcome.step = exc.step
                outcome.error = mask(str(exc))
                if exc.completed is not None:
                    outcome.exit_code = exc.completed.exit_code
                    outcome.output_tail = mask(tail(exc.completed.output))
            except TransportError as exc:
                outcome.failed = True
                outcome.status = HostStatus.FAILED
                outcome.step = outcome.step or "connect"
                outcome.error = mask(exc.message)
            outcome.duration = time.monotonic() - started
            self.bus.emit(HostFinished(outcome=outcome))
            if self.spec.visits_hosts_once:
                self.connections.release(host)

    async def run(self, outcome: HostOutcome, step: str, command: str, *, stdin: Path | None = None,
                  timeout: float | None = None, track: bool = True) -> Completed:
        """Run one host command as `step` (the outcome's step, if `track`), within the region's timeout."""
        connection = await self.connections.get(outcome.host)
        if track:
            outcome.step = step
        self.bus.emit(HostStep(host=outcome.host.name, region=outcome.host.region, step=step))
        limit = self.spec.limits_for(outcome.host.region).command_timeout
        return await connection.run(command, stdin=stdin, timeout=timeout or limit)

    def deploy_to(self, host: Host) -> str:
        """Where the application lives on `host`, as its transport names it."""
        return self.transport.deploy_path(host, self.config.target_dir)

    async def _steps(self, outcome: HostOutcome, target: str | None) -> None:
        host = outcome.host
        deploy_to = self.deploy_to(host)
        probe = self.spec.probes.get(host.key)
        expected = self.spec.expect.get(host.key)
        if probe is None and expected is not None and target is not None and expected != target:
            outcome.previous = outcome.release = expected
            if await self.activate(outcome, target, self.spec.kind, expected, expect=expected):
                outcome.release = target
                await self._checks(outcome, target)
                outcome.status = HostStatus.SUCCEEDED
                outcome.step = None
                return
        if probe is None:
            done = await self.run(outcome, "probe", self.probe_command(host, target))
            if done.exit_code != 0:
                raise StepFailed("probe", why("probe", done), done)
            probe = parse_probe(done.output)
        self._stack(outcome, probe)
        # Re-deploying the release a host already points at (its restart failed, or we were killed before
        # it finished): what it ran before is the journal's, not `current`.
        outcome.previous = probe.rollback_target() if probe.current == target else probe.current
        outcome.release, outcome.zstd = probe.current, probe.zstd
        if target is not None and probe.ready(target):
            outcome.status = HostStatus.UNCHANGED
            outcome.step = None
            return
        if target is None and probe.current is None:
            outcome.status = HostStatus.UNCHANGED
            return
        if target is not None and target not in probe.releases:
            await self._receive(outcome, probe, target, deploy_to)
        # Pruning rides in the switch's round trip, and only when something new arrived.
        keep = self._protected(outcome, probe, target) if outcome.transferred else None
        await self.activate(outcome, target, self.spec.kind, outcome.previous, prune=keep)
        outcome.release = target
        await self._checks(outcome, target)
        outcome.status = HostStatus.SUCCEEDED
        outcome.step = None

    async def _receive(self, outcome: HostOutcome, probe: Probe, target: str, deploy_to: str) -> None:
        """Get `target` onto the host, complete and verified: a delta, a download, or the whole tarball."""
        shipment = self.spec.shipments.get(target)
        if shipment is None:
            raise StepFailed("receive", f"release {target} is not on the host and its artifact is not "
                                        "in the store to send")
        reencoded = False
        if shipment.compression == "zstd" and not probe.zstd:
            if shipment.fallback is None:
                raise StepFailed("receive", f"release {target} is compressed with zstd, which this host lacks: "
                                            "install zstd there, or set artifact.compression: auto or gzip")
            try:
                shipment, reencoded = await shipment.fallback(), True
            except ConveyorError as exc:
                raise StepFailed("receive", exc.message) from exc
        if not await self._receive_delta(outcome, probe, target, deploy_to, shipment.compression):
            # A gzip copy made here for a host without zstd is not in the region's store: it is sent.
            if self.spec.pull is not None and not reencoded:
                url = await self._pull_url(outcome, shipment)
                done = await self.run(outcome, "receive", commands.receive_url(
                    url, deploy_to, target, shipment.sha256, self.config.shared, shipment.compression))
            else:
                done = await self.run(outcome, "receive",
                                      commands.receive(deploy_to, target, shipment.sha256, self.config.shared,
                                                       shipment.compression),
                                      stdin=shipment.path)
            if done.exit_code != 0:
                step = last_step(done.output) or "receive"
                raise StepFailed(step, why(step, done), done)
            outcome.transfer = ("pulled by the host" if self.spec.pull is not None and not reencoded
                                else "full, gzip (no zstd on the host)" if reencoded else "full")
        outcome.transferred = True

    async def stage(self, outcome: HostOutcome, target: str) -> str:
        """Put `target` on a host without switching it (for migrations that run from the new release before
        any host of the region switches); the release's directory there. Its move later finds it on disk."""
        deploy_to = self.deploy_to(outcome.host)
        async with self.slot(outcome.host):
            done = await self.run(outcome, "probe", self.probe_command(outcome.host, target), track=False)
            if done.exit_code != 0:
                raise StepFailed("probe", why("probe", done), done)
            probe = parse_probe(done.output)
            if target not in probe.releases:
                await self._receive(outcome, probe, target, deploy_to)
                probe = dataclasses.replace(probe, releases=tuple(sorted({*probe.releases, target})))
        self.spec.probes[outcome.host.key] = probe
        return f"{deploy_to}/releases/{target}"

    async def _pull_url(self, outcome: HostOutcome, shipment: Shipment) -> str:
        """Where the host downloads the release from (the region's store), or the reason it cannot."""
        assert self.spec.pull is not None
        outcome.step = "receive"
        try:
            return await self.spec.pull(outcome.host.region, shipment)
        except ConveyorError as exc:
            raise StepFailed("receive", f"no URL to download release {shipment.release} from: {exc.message}") from exc

    async def _receive_delta(self, outcome: HostOutcome, probe: Probe, target: str, deploy_to: str,
                             compression: str) -> bool:
        """Send only what changed since the release the host runs; False when a full transfer is needed."""
        base = probe.current
        if self.spec.deltas is None or base is None or base not in probe.releases:
            return False
        delta = await self.spec.deltas(base, target, compression)
        if delta is None:
            return False
        done = await self.run(outcome, "receive", commands.receive_delta(
            deploy_to, target, base, delta.sha256, self.config.shared, list(delta.deletions), compression),
            stdin=delta.path)
        if done.exit_code in SEND_WHOLE:
            return False  # the base is gone, or the host cannot hard-link: send it whole
        if done.exit_code != 0:
            step = last_step(done.output) or "receive"
            raise StepFailed(step, why(step, done), done)
        outcome.transfer = f"delta from {base} ({delta.changed} changed, {len(delta.deletions)} removed)"
        return True

    async def activate(self, outcome: HostOutcome, release: str | None, kind: str, previous: str | None,
                       *, track: bool = True, prune: list[str] | None = None, expect: str | None = None) -> bool:
        """Switch (journal, restart, prune); with `expect`, only if the host runs that and its journal says it
        replaced `release`: False (nothing changed) when it does not."""
        host = outcome.host
        deploy_to = self.deploy_to(host)
        role = self.config.roles[host.role]
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"), "event": "activate", "kind": kind,
            "release": release, "previous": previous, "deployment": self.spec.deployment_id,
            "user": self.spec.user, "app": self.spec.app, "environment": host.environment,
            "region": host.region, "host": host.name,
        }
        ready = {**entry, "event": "ready"}
        env = self.env(host, release, previous, kind, deploy_to)
        if expect is not None:
            env["CONVEYOR_EXPECT_CURRENT"] = expect
        if self.spec.carry is not None and release and kind == self.spec.kind:
            env.update(self.spec.carry(host))
        done = await self.run(outcome, "switch", commands.activate(
            deploy_to, release or "", json.dumps(entry, sort_keys=True), json.dumps(ready, sort_keys=True),
            role.restart or "", env, keep=self.config.keep_releases if prune is not None else None,
            protected=prune or []), track=track)
        step = last_step(done.output) or "switch"
        if expect is not None and done.exit_code == HostExit.EXPECTATION_UNMET:
            return False
        pointed = current_at_exit(done.output)  # read back by the script as it ended; None if it was killed
        if step in {"restart", "prune", "done"} if pointed is None else pointed == (release or ""):
            outcome.release = release  # `current` points at it now, whatever the restart does
            outcome.moved = outcome.moved or kind == self.spec.kind
        if done.exit_code != 0:
            reason = why(step, done)
            if done.timed_out and step == "restart":  # its output is shown once it ends (activate.sh)
                reason += f" (what it printed so far: {deploy_to}/.conveyor/restart.log on the host)"
            raise StepFailed(step, reason, done)
        return True

    def probe_command(self, host: Host, target: str | None) -> str:
        """The probe step's command for `host`: its layout, and its components' probes when it has any."""
        components = self.spec.stack(host) if self.spec.stack is not None else ()
        env = self.env(host, target, None, self.spec.kind, self.deploy_to(host)) if components else None
        return commands.probe(self.deploy_to(host), target or "", components, env)

    def _stack(self, outcome: HostOutcome, probe: Probe) -> None:
        """Read the host's components from its probe, and refuse a host whose stack is judged wrong."""
        if self.spec.stack is None:
            return
        asked = self.spec.stack(outcome.host)
        if not asked:
            return
        outcome.components = read_components(probe.components, asked)
        reason = self.spec.judge_stack(outcome.host, outcome.components) if self.spec.judge_stack else None
        if reason is not None:
            raise StepFailed("consistency", reason)

    def env(self, host: Host, release: str | None, previous: str | None, kind: str,
            deploy_to: str) -> dict[str, str]:
        """The CONVEYOR_* variables a host's restart, checks and probes see."""
        return host_env(self.spec.app, host, release, previous, kind, deploy_to)

    async def _checks(self, outcome: HostOutcome, release: str | None) -> None:
        """Verify a host after its restart: each host check of its role, with the check's retries."""
        if release is None:
            return
        host = outcome.host
        scope = Scope(app=self.spec.app, environment=host.environment, region=host.region, release=release,
                      host=host.name)
        for check in self.config.roles[host.role].checks:
            kind = kind_of(check)
            if kind.verify is None:
                continue  # a region's signal (prometheus, alerts) is watched by bakes, not asked of one host
            outcome.step = "check"
            on_host = self.on_host(outcome, release, track=True)
            measured = await kind.verify(check, self.place(scope, on_host))
            if measured.verdict is not Verdict.PASS:
                raise StepFailed("check", measured.detail, on_host.last)

    def _protected(self, outcome: HostOutcome, probe: Probe, release: str | None) -> list[str]:
        """Releases a prune must keep: the new one, what ran before, and (for a rollback) where it goes back to."""
        protected = [release or "", outcome.previous or "", probe.current or ""]
        if self.spec.kind == "rollback" and release:
            back = Probe(release, True, probe.releases, probe.journal).rollback_target()
            protected.append(back or "")
        return [p for p in protected if p]

    def on_host(self, outcome: HostOutcome, release: str, *, track: bool) -> OnHost:
        """The host as its checks reach it; verification `track`s its step, a bake's measurements do not."""
        host = outcome.host
        deploy_to = self.deploy_to(host)

        async def run(command: str, timeout: float) -> Completed:
            return await self.run(outcome, "check", command, timeout=timeout, track=track)

        async def connection() -> Connection:
            return await self.connections.get(host)

        return OnHost(run, connection, f"{deploy_to}/releases/{release}",
                      self.env(host, release, outcome.previous, self.spec.kind, deploy_to))

    def place(self, scope: Scope, on_host: OnHost | None) -> Place:
        """Where a check measures: `scope`, through `on_host` when it runs on a host."""
        return Place(scope, host=on_host, fetch=self.spec.fetch or http_fetch, clock=self.spec.clock,
                     sleep=self.spec.sleep)
