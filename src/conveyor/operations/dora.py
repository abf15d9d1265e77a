"""DORA's four figures from the deployment history, per environment and ISO week (`conveyor report dora`).

- deployment frequency: deployments of kind `deploy` that succeeded;
- lead time for changes: from the commit a release was built from to the end of the first deployment that
  put that release into the environment successfully (a release that reaches the regions in several
  deployments counts once);
- change failure rate: of the deploys that changed hosts (succeeded, failed or rolled back), those that
  failed, were rolled back by themselves, or were undone later by a `conveyor rollback`;
- time to restore: for each such failure, until the environment ran a good release again: a deploy rolled
  back by itself is restored when it ends; a failed one by the next deployment that succeeded there; one
  undone by a rollback, from the end of the bad deploy to the end of the rollback.

A week is the ISO week of the moment a deployment finished (or started, when it has not). `figures` is pure:
it is given the deployments and each release's commit time; `report` reads them from the state store and git.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.operations.workspace import Workspace

CHANGED = frozenset({"succeeded", "failed", "rolled_back"})  # a deploy with these statuses changed hosts
FAILED = frozenset({"failed", "rolled_back"})


def week_of(moment: datetime) -> str:
    """The ISO week a moment (in UTC) falls in, as `2026-W49`."""
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def window_start(now: datetime, weeks: int) -> datetime:
    """Monday 00:00 UTC of the ISO week `weeks - 1` weeks before the one `now` is in."""
    today = now.astimezone(UTC).date()
    monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass
class _Tally:
    """What one week (or the whole window) of one environment adds up to."""

    deployments: int = 0
    lead_times: list[float] = field(default_factory=list)
    changes: int = 0
    failures: int = 0
    restores: list[float] = field(default_factory=list)
    unrestored: int = 0

    def figures(self) -> dict[str, Any]:
        return {
            "deployments": self.deployments,
            "lead_time_median_seconds": _median(self.lead_times),
            "lead_time_samples": len(self.lead_times),
            "changes": self.changes,
            "failures": self.failures,
            "change_failure_rate": round(self.failures / self.changes, 4) if self.changes else None,
            "time_to_restore_median_seconds": _median(self.restores),
            "restores": len(self.restores),
            "unrestored": self.unrestored,
        }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


@dataclass(frozen=True)
class _Run:
    """One deployment with its times read."""

    row: Mapping[str, Any]
    started: datetime
    finished: datetime | None

    @property
    def at(self) -> datetime:
        return self.finished or self.started

    @property
    def regions(self) -> set[str]:
        return set(self.row.get("regions") or [])


def _runs(deployments: Iterable[Mapping[str, Any]]) -> list[_Run]:
    runs = []
    for row in deployments:
        started = _moment(row.get("started_at"))
        if started is not None:
            runs.append(_Run(row, started, _moment(row.get("finished_at"))))
    return sorted(runs, key=lambda run: (run.started, run.row.get("id") or 0))


def _undone_by_rollback(runs: list[_Run]) -> dict[int, _Run]:
    """index of a succeeded deploy → the later rollback that took one of its regions back off its release."""
    undone: dict[int, _Run] = {}
    for position, rollback in enumerate(runs):
        if rollback.row.get("kind") != "rollback" or rollback.row.get("status") != "succeeded":
            continue
        left = rollback.row.get("previous_by_region") or {}
        for region in rollback.regions:
            bad = left.get(region)
            for earlier in range(position - 1, -1, -1):
                row = runs[earlier].row
                if (row.get("kind") == "deploy" and row.get("status") == "succeeded" and row.get("release") == bad
                        and region in runs[earlier].regions):
                    undone.setdefault(earlier, rollback)
                    break
    return undone


def _restored_at(runs: list[_Run], position: int) -> datetime | None:
    """When a failed deploy's environment next ran a good release: the end of the next deployment that
    succeeded in one of its regions."""
    failed = runs[position]
    for later in runs[position + 1:]:
        if later.row.get("status") == "succeeded" and later.finished and later.regions & failed.regions:
            return later.finished
    return None


def environment_figures(deployments: Sequence[Mapping[str, Any]], commit_times: Mapping[str, datetime], *,
                        since: datetime, until: datetime) -> dict[str, Any]:
    """One environment's figures: `total` over [since, until) and `weeks`, every ISO week in it, oldest first.

    `deployments` are that environment's, as history gives them; `commit_times` maps a release id to the
    time of the commit it was built from (a release it does not name has no lead time)."""
    runs = _runs(deployments)
    undone = _undone_by_rollback(runs)
    labels = []
    monday = since
    while monday < until:
        labels.append((week_of(monday), monday.date()))
        monday += timedelta(weeks=1)
    weeks = {label: _Tally() for label, _ in labels}
    total = _Tally()
    delivered: set[str] = set()
    for position, run in enumerate(runs):
        row = run.row
        if row.get("kind") != "deploy" or not since <= run.at < until:
            continue
        tallies = [total, weeks[week_of(run.at)]] if week_of(run.at) in weeks else [total]
        status = row.get("status")
        release = row.get("release")
        if status == "succeeded":
            lead: float | None = None
            if release and release not in delivered:
                delivered.add(release)
                committed = commit_times.get(release)
                if committed is not None and run.finished is not None:
                    lead = max(0.0, (run.finished - committed).total_seconds())
            for tally in tallies:
                tally.deployments += 1
                if lead is not None:
                    tally.lead_times.append(lead)
        if status not in CHANGED:
            continue
        restore: float | None = None
        failed = True
        if status == "rolled_back":
            restore = (run.at - run.started).total_seconds()
        elif status == "failed":
            back = _restored_at(runs, position)
            restore = (back - run.started).total_seconds() if back else None
        elif position in undone:
            rollback = undone[position]
            restore = ((rollback.finished - run.at).total_seconds() if rollback.finished else None)
        else:
            failed = False
        for tally in tallies:
            tally.changes += 1
            if failed:
                tally.failures += 1
                if restore is None:
                    tally.unrestored += 1
                else:
                    tally.restores.append(max(0.0, restore))
    days = max((until - since).total_seconds() / 86400, 1 / 24)
    return {
        "total": {**total.figures(), "deployments_per_day": round(total.deployments / days, 3)},
        "weeks": [{"week": label, "start": start.isoformat(), **weeks[label].figures()} for label, start in labels],
    }


def duration(seconds: float | None) -> str:
    """A duration as a person reads it: `45s`, `12m`, `3h 12m`, `2d 4h`; `-` when there is none."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if hours == 0:
        return f"{minutes}m"
    if days == 0:
        return f"{hours}h {minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d {hours % 24}h" if hours % 24 else f"{days}d"


def figures(deployments: Sequence[Mapping[str, Any]], commit_times: Mapping[str, datetime],
            environments: Sequence[str], *, weeks: int, now: datetime) -> dict[str, Any]:
    """The report: the window (the last `weeks` ISO weeks up to `now`) and each environment's figures."""
    since = window_start(now, weeks)
    by_environment: dict[str, list[Mapping[str, Any]]] = {env: [] for env in environments}
    for row in deployments:
        if row.get("environment") in by_environment:
            by_environment[row["environment"]].append(row)
    return {
        "since": since.isoformat(timespec="seconds"),
        "until": now.astimezone(UTC).isoformat(timespec="seconds"),
        "weeks": weeks,
        "environments": {env: environment_figures(rows, commit_times, since=since, until=now)
                         for env, rows in by_environment.items()},
    }


def release_commit_times(manifests: Mapping[str, Mapping[str, Any]],
                         from_git: Mapping[str, str]) -> dict[str, datetime]:
    """release id → the time of its commit: git's word where the work tree has the commit (`from_git`, sha →
    time), else the commit time its manifest recorded; a release with neither is left out."""
    found: dict[str, datetime] = {}
    for release, manifest in manifests.items():
        git = manifest.get("git")
        if not isinstance(git, Mapping):
            continue
        sha = git.get("sha")
        moment = _moment(from_git.get(sha) if isinstance(sha, str) else None) or _moment(git.get("committed_at"))
        if moment is not None:
            found[release] = moment
    return found


def report(ws: Workspace, environment: str | None = None, *, weeks: int = 12,
           now: datetime | None = None) -> dict[str, Any]:
    """`conveyor report dora`: the figures of the last `weeks` ISO weeks, read from the state store and git."""
    from conveyor.state.store import iso, utcnow
    from conveyor.vcs.git import commit_times

    if environment is not None:
        ws.environment(environment)
    moment = now or utcnow()
    rows = ws.store.deployments_since(iso(window_start(moment, weeks)), environment)
    manifests = ws.store.release_manifests([row["release"] for row in rows
                                            if row["kind"] == "deploy" and row["release"]])
    shas = [str(m["git"]["sha"]) for m in manifests.values() if isinstance(m.get("git"), dict)
            and isinstance(m["git"].get("sha"), str)]
    times = release_commit_times(manifests, commit_times(ws.directory, shas))
    envs = [environment] if environment else [*ws.config.environments,
                                              *sorted({r["environment"] for r in rows} - set(ws.config.environments))]
    return figures(rows, times, envs, weeks=weeks, now=moment)

