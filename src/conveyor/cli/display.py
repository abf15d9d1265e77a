"""The terminal display of a deployment: a live progress per region on a terminal, plain lines elsewhere."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from conveyor.ci.sections import for_log
from conveyor.engine.events import (
    BakeFinished,
    BakeStarted,
    BatchStarted,
    CanaryBakeFinished,
    CanaryBakeStarted,
    DeploymentFinished,
    DeploymentStarted,
    Event,
    HostFinished,
    HostsJoined,
    HostStarted,
    HostStep,
    LockTakenOver,
    Measured,
    RegionFinished,
    RegionRollingBack,
    Warning,
    WaveFinished,
    WaveStarted,
)
from conveyor.engine.plan import Plan
from conveyor.engine.results import DeploymentResult, HostOutcome
from conveyor.secrets import mask
from conveyor.values import format_duration

if TYPE_CHECKING:
    from conveyor.gates.analysis import Measurement

# How often the line about long steps is refreshed: every second on a terminal; in a log at most every 10 s,
# and only for what has been running that long.
LIVE_INTERVAL = 1.0
LOG_INTERVAL = 10.0


class Display:
    """Subscribes to engine events and shows them to a person."""

    def __init__(self, console: Console, *, live: bool, clock: Callable[[], float] = time.monotonic,
                 ticker: bool = True) -> None:
        self.console = console
        self.live = live
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.clock = clock
        self.started = clock()
        # In a GitLab or GitHub job's log each wave folds into a section; elsewhere this is None.
        self.sections = for_log(console.file, live=live)
        self.run = "deployment"
        # What is under way now: host -> (region, step, since), bake label -> (ends at, region(s)).
        self.running: dict[str, tuple[str, str, float]] = {}
        self.bakes: dict[str, tuple[float, Sequence[str]]] = {}
        self.last_reading: str | None = None  # the latest measurement, for a bake's countdown
        self.status_task: TaskID | None = None
        self.last_log_tick = self.started
        self.ticker = ticker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self, text: str, style: str | None = None) -> None:
        """Print one line above the live display (or plainly)."""
        target = self.progress.console if self.progress else self.console
        target.print(mask(text), style=style, highlight=False, markup=False)

    shows_warnings = True  # the bus hands it warnings to print above the progress, masked

    def __call__(self, event: Event) -> None:
        """Show one event."""
        match event:
            case LockTakenOver():
                self.on_lock_taken_over(event.environment, event.previous, event.interrupted)
            case DeploymentStarted():
                self.on_deployment_started(event.id, event.environment, event.deployment_kind, event.release,
                                           event.plan, event.user)
            case HostStarted():
                self.on_host_started(event.host, event.region)
            case HostStep():
                self.on_host_step(event.host, event.region, event.step)
            case WaveStarted():
                self.on_wave_started(event.wave, event.regions)
            case WaveFinished():
                self.on_wave_finished()
            case BatchStarted():
                self.on_batch_started(event.region, event.role, event.batch, event.canary, event.hosts)
            case HostFinished():
                self.on_host_finished(event.outcome)
            case HostsJoined():
                self.on_hosts_joined(event.region, event.hosts)
            case BakeStarted():
                self.on_bake_started(event.wave, event.regions, event.seconds)
            case BakeFinished():
                self.on_bake_finished(event.wave, event.verdicts)
            case CanaryBakeStarted():
                self.on_canary_bake_started(event.region, event.role, event.hosts, event.seconds)
            case CanaryBakeFinished():
                self.on_canary_bake_finished(event.region, event.role, event.verdict, event.reason)
            case Measured():
                self.on_measurement(event.phase, event.measurement)
            case RegionRollingBack():
                self.on_region_rolling_back(event.region, event.hosts)
            case RegionFinished():
                self.on_region_finished(event.region, event.status, event.message)
            case DeploymentFinished():
                self.on_deployment_finished(event.result)
            case Warning():
                self.line(f"conveyor: warning: {event.message}", "yellow")

    def on_lock_taken_over(self, environment: str, previous: str, interrupted: int | None) -> None:
        """A dead holder's lock was taken over."""
        what = f"; deployment #{interrupted} marked interrupted" if interrupted else ""
        self.line(f"took over the lock of {environment} from a dead holder ({previous}){what}", "yellow")

    def on_deployment_started(self, id: int, environment: str, kind: str, release: str | None,
                              plan: Plan, user: str) -> None:
        """Announce the deployment and start the progress bars."""
        self.run = f"{kind}_{id}"
        what = release or ("each region's previous release (read from its hosts)" if kind == "rollback"
                           else "(release to be chosen)")
        self.line(f"{kind} #{id}: {what} to {environment} by {user}: {len(plan.hosts)} host(s) in "
                  f"{len(plan.regions)} region(s), {len(plan.waves)} wave(s)", "bold")
        if self.live:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console, transient=False,
            )
            for region in plan.regions:
                self.tasks[region.region] = self.progress.add_task(f"{region.region:<12}",
                                                                   total=len(region.hosts))
            self.status_task = self.progress.add_task("", total=None)
            self.progress.start()
        if self.ticker:
            self._thread = threading.Thread(target=self._tick_until_done, name="conveyor-display", daemon=True)
            self._thread.start()

    # -- long steps: what runs now and for how long ----------------------------------------------
    def _tick_until_done(self) -> None:
        while not self._stop.wait(LIVE_INTERVAL if self.live else 1.0):
            self.tick()

    def under_way(self, now: float) -> Sequence[str]:
        """What is running now, longest first: `uk/web-1 restart 12s`, `bake wave 1 (uk): 4m10s left, ...`."""
        items = [f"{region}/{host} {step} {now - since:.0f}s"
                 for host, (region, step, since) in sorted(self.running.items(), key=lambda kv: kv[1][2])]
        for label, (ends, _regions) in self.bakes.items():
            left = max(0.0, ends - now)
            items.append(f"{label}: {format_duration(round(left))} left"
                         + (f", last reading {self.last_reading}" if self.last_reading else ""))
        return items

    def tick(self) -> None:
        """Refresh the line about long steps (a terminal), or print it when due (a log)."""
        now = self.clock()
        if self.live:
            if self.progress is not None and self.status_task is not None:
                items = self.under_way(now)
                self.progress.update(self.status_task, description=mask("  " + " · ".join(items[:4])
                                                                        + (" …" if len(items) > 4 else "")))
            return
        if now - self.last_log_tick < LOG_INTERVAL:
            return
        long_hosts = any(now - since >= LOG_INTERVAL for _, _, since in self.running.values())
        if not (long_hosts or self.bakes):
            return
        self.last_log_tick = now
        items = self.under_way(now)
        self.line("  still running: " + "; ".join(items[:8]) + (f"; and {len(items) - 8} more" if len(items) > 8
                                                                  else ""), "dim")

    def on_host_started(self, host: str, region: str) -> None:
        """A host's work begins."""
        self.running[host] = (region, "start", self.clock())

    def on_host_step(self, host: str, region: str, step: str) -> None:
        """A host moved on to another step."""
        since = self.running.get(host, (region, step, self.clock()))[2]
        self.running[host] = (region, step, since)

    def on_wave_started(self, wave: int, regions: Sequence[str]) -> None:
        """A wave begins (in a CI log: a section titled so)."""
        title = f"wave {wave}: {', '.join(regions)}"
        if self.sections:
            self.sections.open(f"conveyor_{self.run}_wave_{wave}", mask(title))
        else:
            self.line(title)

    def on_wave_finished(self) -> None:
        """A wave is done, its bake included: its CI log section ends."""
        if self.sections:
            self.sections.close()

    def on_batch_started(self, region: str, role: str, batch: int, canary: bool, hosts: Sequence[str]) -> None:
        """A batch begins."""
        if not self.live:
            label = "canary" if canary else f"batch {batch}"
            self.line(f"  {region} {role} {label}: {', '.join(hosts)}")

    def on_host_finished(self, outcome: HostOutcome) -> None:
        """A host is done (or was switched back)."""
        host = outcome.host
        self.running.pop(host.name, None)
        where = f"  {host.region}/{host.name}"
        if outcome.status in ("rolled_back", "left"):
            self.line(f"{where} {outcome.note}", "yellow")
            return
        if outcome.failed:
            detail = f" (exit {outcome.exit_code})" if outcome.exit_code is not None else ""
            self.line(f"{where} failed at {outcome.step}{detail}: {outcome.error}"
                      + (f"; {outcome.note}" if outcome.note else ""), "red")
            for text in outcome.output_tail.splitlines()[-5:]:
                self.line(f"      | {text}", "dim")
        elif not self.live:
            note = " (already there)" if outcome.status == "unchanged" else ""
            self.line(f"{where} {outcome.status} {outcome.release or ''}{note} in {outcome.duration:.1f}s")
        if self.progress and host.region in self.tasks:
            self.progress.advance(self.tasks[host.region])

    def on_hosts_joined(self, region: str, hosts: Sequence[str]) -> None:
        """Hosts appeared in a region's inventory while it moved: they are caught up now."""
        self.line(f"{region}: {len(hosts)} host(s) joined during the deployment, catching up: {', '.join(hosts)}",
                  "cyan")
        if self.progress and region in self.tasks:
            task = self.tasks[region]
            total = self.progress.tasks[task].total or 0
            self.progress.update(task, total=total + len(hosts))

    def on_bake_started(self, wave: int, regions: Sequence[str], seconds: float) -> None:
        """A wave's bake begins."""
        self.line(f"wave {wave}: baking {', '.join(regions)} for {seconds:g}s")
        self.bakes[f"bake wave {wave} ({', '.join(regions)})"] = (self.clock() + seconds, list(regions))

    def on_bake_finished(self, wave: int, verdicts: dict[str, str]) -> None:
        """A wave's bake ended."""
        self.bakes = {k: v for k, v in self.bakes.items() if not k.startswith(f"bake wave {wave} (")}
        self.line(f"wave {wave}: bake " + ", ".join(f"{r} {v}" for r, v in verdicts.items()),
                  "green" if all(v == "pass" for v in verdicts.values()) else "red")

    def on_canary_bake_started(self, region: str, role: str, hosts: Sequence[str], seconds: float) -> None:
        """A canary bake begins."""
        self.line(f"  {region} {role} canary {', '.join(hosts)}: baking for {seconds:g}s")
        self.bakes[f"canary bake {region} {role}"] = (self.clock() + seconds, [region])

    def on_canary_bake_finished(self, region: str, role: str, verdict: str, reason: str) -> None:
        """A canary bake ended."""
        self.bakes.pop(f"canary bake {region} {role}", None)
        self.line(f"  {region} {role} canary bake: {verdict}" + (f" — {reason}" if verdict != "pass" else ""),
                  "green" if verdict == "pass" else "red")

    def on_measurement(self, phase: str, measurement: Measurement) -> None:
        """Show measurements that did not pass (the passing ones are kept in history)."""
        self.last_reading = f"{measurement.scope}: {measurement.check} = {measurement.value} ({measurement.verdict})"
        if str(measurement.verdict) != "pass":
            self.line(f"    {phase} {measurement.scope}: {measurement.check} = {measurement.value} "
                      f"({measurement.verdict}: {measurement.detail})", "yellow")

    def on_region_rolling_back(self, region: str, hosts: Sequence[str]) -> None:
        """A region is being switched back."""
        self.line(f"{region}: switching {len(hosts)} host(s) back", "yellow")

    def on_region_finished(self, region: str, status: str, message: str | None = None) -> None:
        """A region is done."""
        style = "green" if status == "succeeded" else "red"
        self.line(f"{region}: {status}" + (f" — {message}" if message else ""), style)

    def on_deployment_finished(self, result: DeploymentResult) -> None:
        """Stop the progress bars and print the verdict."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.sections:  # the verdict stays outside any section, however the deployment ended
            self.sections.close()
        if self.progress:
            self.progress.stop()
            self.progress = None
        elapsed = time.monotonic() - self.started
        style = "bold green" if result.status == "succeeded" else "bold red"
        text = f"{result.kind} #{result.id} {result.status} in {elapsed:.1f}s"
        if result.failed_hosts:
            text += f"; failed hosts: {', '.join(result.failed_hosts)}"
        if result.message:
            text += f" — {result.message}"
        self.line(text, style)
        if result.status == "held" and result.kind == "deploy" and result.id is not None:
            # The one command a person needs, with the id filled in.
            self.line(f"to carry on once you have looked: conveyor deploy {result.environment} --resume {result.id}",
                      "yellow")
