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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.operations.workspace import Workspace
    from conveyor.state.outcomes import Outcome

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



@dataclass(frozen=True)
class Outline:
    """One environment's deployments in a window, as much of them as the figures need.

    `succeeded` and `changed` count deploys per ISO week (that succeeded; that changed hosts); `deliveries`
    are each release's first successful deploy, as (release, finished, its ISO week); `runs` are the deployments
    failures are judged on: every failed or rolled-back deploy, every rollback that succeeded with the deploys
    it may have undone, and what restored each failure (more is harmless: a plain history gives them all)."""

    succeeded: Mapping[str, int]
    changed: Mapping[str, int]
    deliveries: Sequence[tuple[str, datetime | None, str]]
    runs: Sequence[Mapping[str, Any]]


def outline(deployments: Sequence[Mapping[str, Any]], *, since: datetime, until: datetime) -> Outline:
    """The outline of a plain list of one environment's deployments (`report` has the store make it)."""
    succeeded: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    deliveries: list[tuple[str, datetime | None, str]] = []
    delivered: set[str] = set()
    for run in _runs(deployments):
        row = run.row
        if row.get("kind") != "deploy" or not since <= run.at < until:
            continue
        status, release = row.get("status"), row.get("release")
        if status == "succeeded":
            succeeded[week_of(run.at)] += 1
            if release and release not in delivered:
                delivered.add(release)
                deliveries.append((release, run.finished, week_of(run.at)))
        if status in CHANGED:
            changed[week_of(run.at)] += 1
    return Outline(succeeded, changed, deliveries, deployments)


def environment_figures(deployments: Sequence[Mapping[str, Any]] | Outline, commit_times: Mapping[str, datetime],
                        *, since: datetime, until: datetime) -> dict[str, Any]:
    """One environment's figures: `total` over [since, until) and `weeks`, every ISO week in it, oldest first.

    `deployments` are that environment's, as history gives them (or their `Outline`); `commit_times` maps a
    release id to the time of the commit it was built from (a release it does not name has no lead time)."""
    shape = deployments if isinstance(deployments, Outline) else outline(deployments, since=since, until=until)
    labels = []
    monday = since
    while monday < until:
        labels.append((week_of(monday), monday.date()))
        monday += timedelta(weeks=1)
    weeks = {label: _Tally() for label, _ in labels}
    total = _Tally()

    def tallies(week: str) -> list[_Tally]:
        return [total, weeks[week]] if week in weeks else [total]

    for week, number in shape.succeeded.items():
        for tally in tallies(week):
            tally.deployments += number
    for week, number in shape.changed.items():
        for tally in tallies(week):
            tally.changes += number
    for release, finished, week in shape.deliveries:
        committed = commit_times.get(release)
        if committed is not None and finished is not None:
            for tally in tallies(week):
                tally.lead_times.append(max(0.0, (finished - committed).total_seconds()))
    runs = _runs(shape.runs)
    undone = _undone_by_rollback(runs)
    for position, run in enumerate(runs):
        row = run.row
        status = row.get("status")
        if row.get("kind") != "deploy" or status not in CHANGED or not since <= run.at < until:
            continue
        restore: float | None = None
        if status == "rolled_back":
            restore = (run.at - run.started).total_seconds()
        elif status == "failed":
            back = _restored_at(runs, position)
            restore = (back - run.started).total_seconds() if back else None
        elif position in undone:
            rollback = undone[position]
            restore = ((rollback.finished - run.at).total_seconds() if rollback.finished else None)
        else:
            continue
        for tally in tallies(week_of(run.at)):
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
    """The report from a plain list of deployments: the window (the last `weeks` ISO weeks up to `now`) and
    each environment's figures."""
    since = window_start(now, weeks)
    by_environment: dict[str, list[Mapping[str, Any]]] = {env: [] for env in environments}
    for row in deployments:
        if row.get("environment") in by_environment:
            by_environment[row["environment"]].append(row)
    return _document(since, now, weeks, {env: environment_figures(rows, commit_times, since=since, until=now)
                                         for env, rows in by_environment.items()})


def _document(since: datetime, now: datetime, weeks: int, environments: dict[str, Any]) -> dict[str, Any]:
    return {
        "since": since.isoformat(timespec="seconds"),
        "until": now.astimezone(UTC).isoformat(timespec="seconds"),
        "weeks": weeks,
        "environments": environments,
    }


def commit_time(sha: object, committed_at: object, from_git: Mapping[str, str]) -> datetime | None:
    """A release's commit time: git's word where the work tree has the commit (`from_git`, sha → time), else
    the commit time its manifest recorded (`committed_at`); None with neither."""
    found = _moment(from_git.get(sha)) if isinstance(sha, str) else None
    return found or (_moment(committed_at) if isinstance(committed_at, str) else None)


def release_commit_times(manifests: Mapping[str, Mapping[str, Any]],
                         from_git: Mapping[str, str]) -> dict[str, datetime]:
    """release id → the time of its commit (`commit_time`) from its manifest; a release with none is left out."""
    found: dict[str, datetime] = {}
    for release, manifest in manifests.items():
        git = manifest.get("git")
        if not isinstance(git, Mapping):
            continue
        moment = commit_time(git.get("sha"), git.get("committed_at"), from_git)
        if moment is not None:
            found[release] = moment
    return found


def _restorers(rows: Sequence[Outcome]) -> set[int]:
    """What restored each failed deploy among one environment's `rows` (in start order): the first deployment
    after it that succeeded (and finished) in one of its regions."""
    found: set[int] = set()
    for position, row in enumerate(rows):
        if row.kind != "deploy" or row.status != "failed":
            continue
        regions = set(row.region_list())
        later = next((i for i in range(position + 1, len(rows)) if rows[i].status == "succeeded"
                      and rows[i].finished_at and regions & set(rows[i].region_list())), None)
        if later is not None:
            found.add(rows[later].id)
    return found


def _outline_of(rows: Sequence[Outcome], since: str, until: str) -> Outline:
    """One environment's `Outline` from its deployments in start order (`Store.outcomes_since`): their scalar
    columns, with regions (and what a rollback left) decoded only for the few that failures are judged on.
    Times are compared as the text the store writes (ISO 8601 in UTC, one form: it sorts in time order, and
    its first ten characters are the day)."""
    succeeded: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    deliveries: list[tuple[str, datetime | None, str]] = []
    delivered: set[str] = set()
    labels: dict[str, str] = {}
    judged: dict[int, Outcome] = {}
    for row in rows:
        if row.kind == "rollback" and row.status == "succeeded":
            judged[row.id] = row
        if row.kind != "deploy":
            continue
        if row.status in FAILED:
            judged[row.id] = row
        moment = row.finished_at or row.started_at
        if not since <= moment < until:
            continue
        day = moment[:10]
        if day not in labels:
            year, week, _ = date.fromisoformat(day).isocalendar()
            labels[day] = f"{year}-W{week:02d}"
        if row.status == "succeeded":
            succeeded[labels[day]] += 1
            if row.release and row.release not in delivered:
                delivered.add(row.release)
                deliveries.append((row.release, _moment(row.finished_at), labels[day]))
        if row.status in CHANGED:
            changed[labels[day]] += 1
    left = {bad for row in judged.values() if row.kind == "rollback" for bad in row.left_by_region().values() if bad}
    wanted = {*judged, *(row.id for row in rows if row.kind == "deploy" and row.status == "succeeded"
                         and row.release in left), *_restorers(rows)}
    return Outline(succeeded, changed, deliveries, [row.outline() for row in rows if row.id in wanted])


def report(ws: Workspace, environment: str | None = None, *, weeks: int = 12,
           now: datetime | None = None) -> dict[str, Any]:
    """`conveyor report dora`: the figures of the last `weeks` ISO weeks, read from the state store and git.

    The store gives every deployment's scalar columns and the full rows only of those failures are judged on
    (`_outline_of`); the rules are `environment_figures`', the same `figures` applies to a plain list."""
    from conveyor.state.store import iso, utcnow
    from conveyor.vcs.git import commit_times

    if environment is not None:
        ws.environment(environment)
    moment = now or utcnow()
    since = window_start(moment, weeks)
    by_environment: dict[str, list[Outcome]] = {}
    for row in ws.store.outcomes_since(iso(since), environment):
        by_environment.setdefault(row.environment, []).append(row)
    outlines = {env: _outline_of(rows, iso(since), moment.astimezone(UTC).isoformat())
                for env, rows in by_environment.items()}
    delivered = {release for shape in outlines.values() for release, _, _ in shape.deliveries}
    commits = ws.store.release_commits(delivered)
    from_git = commit_times(ws.directory, [sha for sha, _ in commits.values() if isinstance(sha, str)])
    times = {release: found for release, (sha, committed) in commits.items()
             if (found := commit_time(sha, committed, from_git)) is not None}
    envs = [environment] if environment else [
        *ws.config.environments, *sorted(set(by_environment) - set(ws.config.environments))]
    empty = Outline({}, {}, [], [])
    return _document(since, moment, weeks, {env: environment_figures(outlines.get(env, empty), times, since=since,
                                                                      until=moment) for env in envs})
