"""Deployment metrics, computed from the state store (so counters keep counting across runs and machines).

    conveyor_deployments_total{app,environment,kind,status}              counter: finished deployments
    conveyor_rollbacks_total{app,environment}                            counter: rollback runs + automatic
                                                                                  switch-backs (rolled_back)
    conveyor_deployment_duration_seconds{app,environment,kind,status}    gauge: the last finished deployment
    conveyor_deployment_hosts{app,environment,kind,status}               gauge: its hosts by their outcome
    conveyor_last_success_timestamp_seconds{app,environment,region}      gauge: when the region last finished
                                                                                  moving to a release
Time since the last success is a PromQL expression: `time() - conveyor_last_success_timestamp_seconds`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from conveyor.errors import StateError
from conveyor.metrics.exposition import Family

if TYPE_CHECKING:
    from conveyor.engine.results import DeploymentResult
    from conveyor.state.store import Store

KINDS = ("deploy", "rollback", "flags")
# Every status a finished deployment can have; each gets a series (zero too) so `increase()` sees the first one.
STATUSES = ("succeeded", "failed", "rolled_back", "interrupted", "blocked", "held")
HOST_STATUSES = ("succeeded", "unchanged", "failed", "rolled_back", "pending")


def deployment_counts(store: Store, app: str, environments: list[str]) -> Counter[tuple[str, str, str]]:
    """(environment, kind, status) → how many deployments the state store holds, running ones excluded."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from conveyor.state import tables as t

    d = t.deployments
    query = (sa.select(d.c.environment, d.c.kind, d.c.status, sa.func.count())
             .where(d.c.app == app, d.c.environment.in_(environments), d.c.status != "running")
             .group_by(d.c.environment, d.c.kind, d.c.status))
    try:
        # A count the Store API does not offer: one grouped read of the table it writes.
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise StateError(f"cannot count deployments in the state store: {exc}") from exc
    return Counter({(row[0], row[1], row[2]): int(row[3]) for row in rows})


def _seconds(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds())
    except ValueError:
        return None


def collect(store: Store, app: str, environments: list[str], *, current: DeploymentResult | None = None,
            current_seconds: float | None = None) -> list[Family]:
    """Every family of `app` for these environments; `current` (and how long it took, measured) is the
    deployment just finished, whose own outcome is more exact than what the store rounds to the second."""
    total = Family("conveyor_deployments_total", "counter",
                   "Finished deployments by environment, kind (deploy, rollback) and final status.")
    rollbacks = Family("conveyor_rollbacks_total", "counter",
                       "Rollbacks: rollback runs that were not blocked, plus deploys switched back automatically.")
    duration = Family("conveyor_deployment_duration_seconds", "gauge",
                      "How long the last finished deployment of the environment took.")
    hosts = Family("conveyor_deployment_hosts", "gauge",
                   "Hosts of the last finished deployment of the environment, by the host's outcome (status).")
    last_success = Family("conveyor_last_success_timestamp_seconds", "gauge",
                          "When the region last finished moving to a release (Unix time); "
                          "time() - this is the time since its last successful deploy.")
    counts = deployment_counts(store, app, environments)
    for env in environments:
        for kind in KINDS:
            for status in STATUSES:
                total.add(counts[(env, kind, status)], app=app, environment=env, kind=kind, status=status)
        rolled = sum(n for (e, kind, status), n in counts.items() if e == env and (
            (kind == "rollback" and status != "blocked") or (kind == "deploy" and status == "rolled_back")))
        rollbacks.add(rolled, app=app, environment=env)
        _last(store, app, env, duration, hosts, current, current_seconds)
        for region, pointer in sorted(store.pointers(env).items()):
            try:
                moment = datetime.fromisoformat(pointer["updated_at"])
            except (TypeError, ValueError):
                continue
            last_success.add(moment.timestamp(), app=app, environment=env, region=region)
    return [total, rollbacks, duration, hosts, last_success]


def _last(store: Store, app: str, env: str, duration: Family, hosts: Family, current: DeploymentResult | None,
          current_seconds: float | None) -> None:
    """The duration and host outcomes of the environment's last finished deployment."""
    if current is not None and current.environment == env and current.id is not None:
        kind, status = current.kind, str(current.status)
        seconds = current_seconds
        outcomes = Counter(str(h.status) for region in current.regions for h in region.hosts)
        if seconds is None:
            record = store.deployment(current.id)
            seconds = _seconds(record["started_at"], record["finished_at"]) if record else None
    else:
        finished = [d for d in store.history(env, 10) if d["status"] != "running"]
        if not finished:
            return
        last = finished[0]
        kind, status = last["kind"], last["status"]
        seconds = _seconds(last["started_at"], last["finished_at"])
        outcomes = Counter(str(h["status"]) for h in store.host_results(last["id"]))
    if seconds is not None:
        duration.add(seconds, app=app, environment=env, kind=kind, status=status)
    for host_status in (*HOST_STATUSES, *sorted(set(outcomes) - set(HOST_STATUSES))):
        hosts.add(outcomes[host_status], app=app, environment=env, kind=kind, status=host_status)
