"""Engine-only benchmark: N hosts in 4 regions and 4 roles through plan + rollout + state writes, with a
transport that does no I/O, on SQLite and on PostgreSQL. Shows what the engine itself costs, and that nothing
grows worse than linearly: the per-host cost at each size should stay flat.

    python bench/engine.py                                  # 1,000, 10,000, 100,000 hosts; sqlite, postgres
    python bench/engine.py --hosts 1000 10000 --stores sqlite --output /tmp/engine.json
    python bench/engine.py --hosts 10000 --stores sqlite --profile /tmp/engine.prof   # cProfile, one run

Each run is its own process (so its peak RSS is its own) against an empty store: a SQLite file, or a fresh
database in a throwaway PostgreSQL cluster on 127.0.0.1 started by the script (bench/stores.py). The
deployment takes the environment's lock and writes under its lease, as `conveyor deploy` does.
Writes bench/results/engine.json and prints its Markdown section (bench/report.py renders it into
docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import background_cpu, loadavg
from scale_report import engine_section
from stores import KINDS, machine_facts, publish, source_commit, state_store

from conveyor.config.loader import parse_config
from conveyor.engine.events import Event, EventBus
from conveyor.engine.limits import Limits
from conveyor.engine.plan import make_plan
from conveyor.engine.results import DeploymentResult, DeploymentStatus
from conveyor.engine.rollout import Rollout, RolloutSpec, Shipment
from conveyor.inventory import Host, static_hosts
from conveyor.operations.recording import StoreRecorder
from conveyor.state.store import Store
from conveyor.transport.base import Completed

REGIONS = ("za", "uk", "ca", "us")
MARK = re.compile(r"' conveyor-[a-z-]+ ([0-9a-f]{32}) ")  # the mark the engine gave a command: markers carry it
ROLES = ("web", "batch", "processor", "daemon")
RESULTS = Path(__file__).resolve().parent / "results" / "engine.json"
TARGET_SECONDS = 60.0
TARGET_MIB = 1024.0


class NullConnection:
    """Answers every host script the way a healthy host would, instantly."""

    def __init__(self) -> None:
        self.current = "R0"

    async def run(self, command: str, *, stdin: Path | None = None, timeout: float | None = None) -> Completed:
        found = MARK.search(command)
        say = f"@@conveyor {found.group(1) if found else ''} "
        if "conveyor-probe" in command:
            return Completed(0, f"{say}current={self.current}\n{say}release=R0\n{say}journal\n")
        if "conveyor-activate" in command:
            return Completed(0, f"{say}step=switch\n{say}step=restart\n{say}step=done\n{say}current=R1\n")
        return Completed(0, f"{say}step=place\n")

    async def http_get(self, url: str, timeout: float) -> tuple[int, str]:
        return 200, "ok"

    async def close(self) -> None:
        return None


class NullTransport:
    """A transport that reaches nothing."""

    async def connect(self, host: Host) -> NullConnection:
        return NullConnection()

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        return deploy_to

    async def aclose(self) -> None:
        return None


class TimedRecorder(StoreRecorder):
    """The state store's subscriber, timed: how long the rollout waited on state writes."""

    spent = 0.0

    def __call__(self, event: Event) -> None:
        started = time.perf_counter()
        try:
            super().__call__(event)
        finally:
            self.spent += time.perf_counter() - started

    def close(self, result: DeploymentResult) -> None:
        started = time.perf_counter()
        try:
            super().close(result)
        finally:
            self.spent += time.perf_counter() - started


def config_text(hosts: int) -> str:
    """conveyor.yml (as JSON) with `hosts` hosts listed, spread evenly over the regions and roles."""
    groups = [(region, role) for region in REGIONS for role in ROLES]
    sizes = [hosts // len(groups) + (1 if i < hosts % len(groups) else 0) for i in range(len(groups))]
    listed = {group: [f"{group[0]}-{group[1]}-{i}" for i in range(size)]
              for group, size in zip(groups, sizes, strict=True)}
    regions = {region: {"hosts": {role: listed[region, role] for role in ROLES}} for region in REGIONS}
    return json.dumps({
        "app": "bench",
        "roles": {role: {"restart": "true", "batch": "25%"} for role in ROLES},
        "environments": {"production": {"transport": "ssh", "waves": [["za"], ["uk", "ca", "us"]],
                                        "regions": regions}},
    })


def one_run(hosts: int, url: str) -> dict[str, Any]:
    """One deployment to `hosts` hosts recorded in the store at `url`: phase times, CPU, peak RSS."""
    clock = time.perf_counter
    cpu0 = time.process_time()
    t0 = clock()
    config, _ = parse_config(config_text(hosts), "bench.yml")
    t1 = clock()
    store = Store(url, "bench")
    t_open = clock()
    plan = make_plan(config, "production", static_hosts(config, "production"))
    t2 = clock()
    lease = store.lock("production", owner="bench", reason=None, pid=os.getpid(), lease=600)
    ledger = store.under(lease)
    deployment = ledger.start_deployment(environment="production", regions=list(REGIONS), release="R1",
                                         previous_by_region={}, kind="deploy", user="bench")
    store.set_lock_deployment(lease, deployment)
    recorder = TimedRecorder(ledger, "production", deployment)
    bus = EventBus()
    bus.subscribe(recorder, required=True)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "r1.tar.gz"
        artifact.write_bytes(b"")
        spec = RolloutSpec(app="bench", environment="production", kind="deploy", user="bench",
                           deployment_id=deployment, targets=dict.fromkeys(REGIONS, "R1"),
                           shipments={"R1": Shipment("R1", "0" * 64, artifact)},
                           limits={r: Limits() for r in REGIONS}, max_concurrency=256)
        outcomes = asyncio.run(Rollout(config, spec, NullTransport(), bus).run(plan))
    t3 = clock()
    result = DeploymentResult(deployment, "production", "deploy", "R1", DeploymentStatus.SUCCEEDED,
                              regions=outcomes)
    recorder.close(result)
    ledger.finish_deployment(deployment, "succeeded", [])
    store.release(lease)
    t4 = clock()
    assert bus.failure is None, bus.failure
    moved = sum(1 for region in outcomes for h in region.hosts if h.status == "succeeded")
    rows = len(store.host_results(deployment))
    running = store.host_releases("production")
    store.close()
    assert moved == rows == len(plan.hosts) == len(running), (moved, rows, len(plan.hosts), len(running))
    assert set(running.values()) == {"R1"}
    count = len(plan.hosts)
    return {
        "hosts": count,
        "seconds": round(t4 - t0, 2),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "phases_s": {"config": round(t1 - t0, 2), "open": round(t_open - t1, 2),
                     "plan": round(t2 - t_open, 2), "rollout": round(t3 - t2, 2),
                     "state_writes": round(recorder.spent, 2), "finish": round(t4 - t3, 2)},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ms_per_host": round((t4 - t0) * 1000 / count, 3),
        "engine_ms_per_host": round((t4 - t1) * 1000 / count, 3),
    }


def _fresh_database(kind: str, url: str, name: str) -> str:
    """A new empty database in the cluster (PostgreSQL), or a new file beside the last (SQLite)."""
    if kind == "sqlite":
        return url.rsplit("/", 1)[0] + f"/{name}.db"
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def measure(sizes: list[int], kinds: list[str], runs: int) -> dict[str, Any]:
    """Every (store, size) run in a child process; load recorded beside each."""
    records: list[dict[str, Any]] = []
    started = time.time()
    for kind in kinds:
        with state_store(kind) as (url, server):
            for size in sizes:
                for number in range(runs):
                    target = _fresh_database(kind, url, f"bench_{size}_{number}")
                    background = background_cpu(2.0)
                    load_before = loadavg()
                    server_cpu = server.cpu_seconds() if server else None
                    child = subprocess.run([sys.executable, __file__, "--child", str(size), "--url", target],
                                           capture_output=True, text=True, check=False)
                    if child.returncode != 0:
                        raise SystemExit(f"{kind} {size}: {child.stderr[-2000:]}")
                    record = json.loads(child.stdout.strip().splitlines()[-1])
                    record.update(store=kind, run=number + 1, loadavg_before=load_before, loadavg_after=loadavg(),
                                  background_cpus=round(background, 2))
                    if server is not None and server_cpu is not None:
                        record["server_cpu_s"] = round(server.cpu_seconds() - server_cpu, 2)
                    records.append(record)
                    print(json.dumps(record), file=sys.stderr, flush=True)
    return {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "command": "python bench/engine.py " + " ".join(sys.argv[1:]),
        "machine": machine_facts(),
        "source": source_commit(),
        "targets": {"seconds": TARGET_SECONDS, "peak_rss_mib": TARGET_MIB},
        "runs": records,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--stores", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--profile", type=Path, help="write a cProfile of one run here (no results file)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child, args.url)))
        return 0
    if args.profile:
        import cProfile

        with state_store(args.stores[0]) as (url, _server):
            cProfile.runctx("print(json.dumps(one_run(size, url)))", globals(),
                            {"one_run": one_run, "size": args.hosts[0], "url": url, "json": json},
                            str(args.profile))
        return 0
    publish(measure(args.hosts, args.stores, args.runs), args.output, engine_section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
