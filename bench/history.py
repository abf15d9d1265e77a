"""History benchmark: a year of deployments in the state store, then the reads `conveyor history`,
`conveyor status` and a dashboard make, timed, on SQLite and on PostgreSQL.

    python bench/history.py                                   # 365 days x 50 a day; sqlite, postgres
    python bench/history.py --days 30 --stores sqlite --output /tmp/history.json

The year: two environments (staging, production) of 200 hosts each (4 regions, 2 roles), 50 deployments a
day between them, every deployment to all 200 hosts of its environment, written in the rows real deployments
write (deployments, host_results, events, measurements, releases, host_state, pointers), in bulk into the
same tables. Some fail, roll back, are blocked or interrupted; staging builds the releases production takes.
Each read runs in this process against a store opened once (as a command opens it), a warm-up then
`--repeats` timed runs; the median is kept. Writes bench/results/history.json and prints its Markdown section.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from measure import background_cpu, loadavg
from scale_report import history_section
from stores import KINDS, machine_facts, publish, source_commit, state_store

from conveyor.config.loader import LoadedConfig, parse_config
from conveyor.metrics.deployments import deployment_counts
from conveyor.operations.dora import report
from conveyor.operations.status import deployment_detail, history, status
from conveyor.operations.workspace import Workspace
from conveyor.state import tables as t
from conveyor.state.store import Store
from conveyor.web import pages

APP = "shop"
ENVIRONMENTS = ("staging", "production")
REGIONS = ("eu-west", "eu-central", "us-east", "ap-south")
ROLES = ("web", "worker")
HOSTS_PER_ROLE = 25  # x 2 roles x 4 regions = 200 hosts per environment
TARGET_MS = 200.0
RESULTS = Path(__file__).resolve().parent / "results" / "history.json"
USERS = ("amira", "ben", "chen", "dara", "eli", "fatima", "ci")


def config_text() -> str:
    regions = {r: {"hosts": {role: [f"{r}-{role}-{i}" for i in range(HOSTS_PER_ROLE)] for role in ROLES}}
               for r in REGIONS}
    return json.dumps({
        "app": APP,
        "roles": {role: {"restart": "true"} for role in ROLES},
        "environments": {env: {"transport": "ssh", "regions": regions} for env in ENVIRONMENTS},
        "web": {"public": True},  # the dashboard's pages are timed without signing in
    })


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _hosts() -> list[tuple[str, str, str]]:
    return [(f"{r}-{role}-{i}", r, role) for r in REGIONS for role in ROLES for i in range(HOSTS_PER_ROLE)]


class Year:
    """Deterministic deployments, day by day (seeded), as rows of the state store's tables."""

    def __init__(self, days: int, per_day: int, end: datetime, seed: int = 20) -> None:
        self.days, self.per_day, self.end = days, per_day, end
        self.random = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
        self.next_id = 1
        self.releases: list[tuple[str, datetime]] = []  # built so far (staging builds)
        self.running = dict.fromkeys(ENVIRONMENTS, "")
        self.counts = {"deployments": 0, "host_results": 0, "events": 0, "measurements": 0, "releases": 0}

    def day(self, number: int) -> dict[str, list[dict[str, Any]]]:
        rows: dict[str, list[dict[str, Any]]] = {"releases": [], "deployments": [], "host_results": [],
                                                 "events": [], "measurements": []}
        start = self.end - timedelta(days=self.days - number)
        for slot in range(self.per_day):
            moment = start + timedelta(seconds=slot * 86400 / self.per_day + self.random.uniform(0, 600))
            env = ENVIRONMENTS[slot % 2]
            self._deployment(env, moment, rows)
        for name, items in rows.items():
            self.counts[name] += len(items)
        return rows

    def _release(self, moment: datetime, rows: dict[str, list[dict[str, Any]]]) -> str:
        sha = f"{self.random.getrandbits(160):040x}"
        built = moment - timedelta(minutes=self.random.uniform(3, 20))
        rid = f"{built.strftime('%Y%m%dT%H%M%SZ')}-{sha[:8]}"
        manifest = {"id": rid, "sha256": f"{self.random.getrandbits(256):064x}", "size": 7_400_000 +
                    self.random.randrange(100_000), "files": 2005, "created_at": _iso(built),
                    "user": self.random.choice(USERS),
                    "git": {"sha": sha, "author": "dev", "email": "dev@example.com", "subject": "Change checkout",
                            "committed_at": _iso(built - timedelta(minutes=self.random.uniform(10, 600)))},
                    "compression": "gzip", "dirty": self.random.random() < 0.02, "diff_sha256": None}
        rows["releases"].append({"app": APP, "id": rid, "sha256": manifest["sha256"], "size": manifest["size"],
                                 "created_at": manifest["created_at"], "user": manifest["user"], "manifest": manifest})
        self.releases.append((rid, built))
        return rid

    def _deployment(self, env: str, moment: datetime, rows: dict[str, list[dict[str, Any]]]) -> None:
        r = self.random
        roll = r.random()
        kind = "rollback" if roll < 0.02 else "deploy"
        if kind == "rollback" and len(self.releases) > 1:
            release = self.releases[-2][0]
        elif env == "staging" or not self.releases:
            release = self._release(moment, rows)
        else:  # production takes what staging ran a few deployments ago
            release = self.releases[max(0, len(self.releases) - 1 - r.randrange(3))][0]
        status = ("blocked" if roll > 0.97 else "failed" if roll > 0.93 else "rolled_back" if roll > 0.91
                  else "interrupted" if roll > 0.905 else "succeeded")
        previous = self.running[env] or None
        did = self.next_id
        self.next_id += 1
        user = r.choice(USERS)
        duration = r.uniform(120, 420)
        finished = moment + timedelta(seconds=duration if status != "blocked" else 1)
        failed = []
        if status in ("failed", "rolled_back"):
            failed = [f"{r.choice(REGIONS)}-{r.choice(ROLES)}-{r.randrange(HOSTS_PER_ROLE)}"
                      for _ in range(r.randint(1, 3))]
        rows["deployments"].append({
            "id": did, "app": APP, "environment": env, "regions": list(REGIONS), "release": release,
            "previous": previous, "previous_by_region": dict.fromkeys(REGIONS, previous), "kind": kind,
            "status": status, "started_at": _iso(moment), "finished_at": _iso(finished), "user": user,
            "reason": "hotfix" if kind == "rollback" else None, "failed_hosts": failed,
            "summary": None if status == "succeeded" else f"{len(failed)} host(s) failed", "overrides": [],
            "approval_id": None})
        rows["events"].append({"app": APP, "at": _iso(moment), "user": user, "environment": env,
                               "kind": f"{kind}_started" if status != "blocked" else "blocked",
                               "deployment_id": did, "data": {"release": release, "regions": list(REGIONS)}})
        if status == "blocked":
            return
        rows["events"].append({"app": APP, "at": _iso(finished), "user": user, "environment": env,
                               "kind": f"{kind}_finished", "deployment_id": did,
                               "data": {"status": status, "failed_hosts": failed}})
        for host, region, role in _hosts():
            bad = host in failed
            rows["host_results"].append({
                "deployment_id": did, "host": host, "region": region, "role": role,
                "status": "failed" if bad else "succeeded", "release": previous if bad else release,
                "previous": previous, "step": "restart" if bad else None, "exit_code": 1 if bad else None,
                "output_tail": "Job for app.service failed." if bad else None,
                "error": "restart failed with exit 1" if bad else None, "note": None, "transferred": True,
                "transfer": f"delta from {previous} (12 changed, 0 removed)" if previous else "full",
                "duration": round(r.uniform(2, 9), 3)})
        for region in REGIONS:
            for check, phase in (("http /health", "verify"), ("error rate", "bake")):
                rows["measurements"].append({
                    "deployment_id": did, "phase": phase, "check": check,
                    "kind": "http" if phase == "verify" else "prometheus", "scope": f"{env}/{region}",
                    "value": "200" if phase == "verify" else f"{r.uniform(0, 0.02):.4f}",
                    "condition": "== 200" if phase == "verify" else "< 0.05", "verdict": "pass",
                    "at": _iso(finished), "detail": None})
        if status == "succeeded":
            self.running[env] = release


def generate(url: str, days: int, per_day: int) -> Year:
    """Write the year into the store at `url` (its tables made by opening a Store, as any command does)."""
    store = Store(url, APP)
    year = Year(days, per_day, datetime.now(UTC))
    now = _iso(datetime.now(UTC))
    with store.engine.begin() as conn:
        for number in range(days):
            rows = year.day(number)
            for name in ("releases", "deployments", "host_results", "events", "measurements"):
                if rows[name]:
                    conn.execute(getattr(t, name).insert(), rows[name])
        for env in ENVIRONMENTS:
            conn.execute(t.host_state.insert(), [
                {"app": APP, "environment": env, "host": host, "region": region, "role": role,
                 "release": year.running[env], "updated_at": now} for host, region, role in _hosts()])
            conn.execute(t.pointers.insert(), [
                {"app": APP, "environment": env, "region": region, "release": year.running[env],
                 "deployment_id": year.next_id - 1, "updated_at": now} for region in REGIONS])
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('deployments', 'id'), max(id)) FROM deployments")
            conn.exec_driver_sql("ANALYZE")
    store.close()
    return year


def _timed(read: Callable[[], Any], repeats: int) -> dict[str, Any]:
    read()  # warm-up: the first read of a table pays for the page cache and the statement cache
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2)}


def reads(url: str, year: Year, repeats: int) -> dict[str, dict[str, Any]]:
    """Each read a command or a dashboard makes, timed."""
    config, lines = parse_config(config_text(), "conveyor.yml")
    with tempfile.TemporaryDirectory() as tmp:  # the config's directory: not a git work tree
        ws = Workspace(LoadedConfig(config, Path(tmp) / "conveyor.yml", lines), user="bench", state_url=url)
        try:
            return _reads(ws, year, repeats)
        finally:
            ws.store.close()


def _pages(ws: Workspace, middle: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Each dashboard page as a browser gets it: the request through the Starlette app (routing, the store's
    reads in a worker thread, the template), over Starlette's TestClient, without the network."""
    from starlette.testclient import TestClient

    from conveyor.web.app import create_app

    client = TestClient(create_app(ws), base_url="https://bench")

    def get(path: str) -> Callable[[], Any]:
        def fetch() -> None:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
        return fetch

    with client:
        return {f"page {path}": _timed(get(path), repeats) for path in (
            "/", "/history", "/history?status=failed", "/history?environment=production&user=dara",
            f"/deployments/{middle}", "/dora", "/dora?weeks=52")}


def _reads(ws: Workspace, year: Year, repeats: int) -> dict[str, dict[str, Any]]:
    middle = year.next_id // 2
    return {**_calls(ws, middle, repeats), **_pages(ws, middle, repeats)}


def _calls(ws: Workspace, middle: int, repeats: int) -> dict[str, dict[str, Any]]:
    return {
        "history (20, every environment)": _timed(lambda: history(ws, None, 20), repeats),
        "history production (20)": _timed(lambda: history(ws, "production", 20), repeats),
        "history production --json (100)": _timed(lambda: json.dumps(history(ws, "production", 100)), repeats),
        f"history --id {middle} (200 hosts)": _timed(lambda: json.dumps(deployment_detail(ws, middle), default=str),
                                                     repeats),
        "status production": _timed(lambda: status(ws, "production"), repeats),
        "status (every environment)": _timed(lambda: status(ws, None), repeats),
        "report dora (12 weeks)": _timed(lambda: report(ws, None, weeks=12), repeats),
        "report dora (52 weeks)": _timed(lambda: report(ws, None, weeks=52), repeats),
        "dashboard: fleet": _timed(lambda: pages.fleet(ws), repeats),
        "dashboard: history, failed only (200)": _timed(
            lambda: pages.history(ws, environment=None, status="failed", user=None), repeats),
        "dashboard: history, interrupted only (200)": _timed(
            lambda: pages.history(ws, environment=None, status="interrupted", user=None), repeats),
        "dashboard: history of production by one user (200)": _timed(
            lambda: pages.history(ws, environment="production", status=None, user="dara"), repeats),
        "metrics: deployments by status (all time)": _timed(
            lambda: deployment_counts(ws.store, APP, list(ENVIRONMENTS)), repeats),
    }


def _size_mib(url: str) -> float:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20, 1)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
    engine.dispose()
    return round(int(size or 0) / 2**20, 1)


def measure(kinds: list[str], days: int, per_day: int, repeats: int) -> dict[str, Any]:
    started = time.time()
    stores: dict[str, Any] = {}
    year: Year | None = None
    for kind in kinds:
        with state_store(kind) as (url, _server):
            began = time.perf_counter()
            year = generate(url, days, per_day)
            generated = round(time.perf_counter() - began, 1)
            print(f"{kind}: generated {year.counts} in {generated} s", file=sys.stderr, flush=True)
            background = background_cpu(2.0)
            before = loadavg()
            queries = reads(url, year, repeats)
            stores[kind] = {"generate_s": generated, "size_mib": _size_mib(url), "queries": queries,
                            "loadavg_before": before, "loadavg_after": loadavg(),
                            "background_cpus": round(background, 2)}
            print(json.dumps({kind: stores[kind]}), file=sys.stderr, flush=True)
    assert year is not None
    return {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "command": "python bench/history.py " + " ".join(sys.argv[1:]),
        "machine": machine_facts(),
        "source": source_commit(),
        "target_ms": TARGET_MS,
        "repeats": repeats,
        "data": {"days": days, "per_day": per_day, "environments": len(ENVIRONMENTS),
                 "hosts": len(REGIONS) * len(ROLES) * HOSTS_PER_ROLE, **year.counts},
        "stores": stores,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=50)
    parser.add_argument("--stores", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    publish(measure(args.stores, args.days, args.per_day, args.repeats), args.output, history_section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
