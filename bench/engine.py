"""Engine-only benchmark: 10,000 hosts in 4 regions and 4 roles through plan + rollout + state writes,
with a transport that does no I/O. Shows what the engine itself costs, and that nothing grows worse than
linearly: run it at several sizes and compare the per-host cost.

    python bench/engine.py --hosts 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from conveyor.config.loader import parse_config
from conveyor.engine.events import EventBus
from conveyor.engine.limits import Limits
from conveyor.engine.plan import make_plan
from conveyor.engine.rollout import Rollout, RolloutSpec, Shipment
from conveyor.inventory import Host, static_hosts
from conveyor.operations.recording import StoreRecorder
from conveyor.state.store import Store
from conveyor.transport.base import Completed

REGIONS = ("za", "uk", "ca", "us")
MARK = re.compile(r"' conveyor-[a-z-]+ ([0-9a-f]{32}) ")  # the mark the engine gave a command: markers carry it
ROLES = ("web", "batch", "processor", "daemon")


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
            return Completed(0, f"{say}step=switch\n{say}step=restart\n{say}step=done\n")
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


def config_text(hosts: int) -> str:
    per = hosts // (len(REGIONS) * len(ROLES))
    regions = {
        region: {"hosts": {role: [f"{region}-{role}-{i}" for i in range(per)] for role in ROLES}}
        for region in REGIONS
    }
    return json.dumps({
        "app": "bench",
        "roles": {role: {"restart": "true", "batch": "25%"} for role in ROLES},
        "environments": {"production": {"transport": "ssh", "waves": [["za"], ["uk", "ca", "us"]],
                                        "regions": regions}},
    })


def run(hosts: int) -> dict[str, float]:
    started = time.perf_counter()
    config, _ = parse_config(config_text(hosts), "bench.yml")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/state.db", "bench")
        plan = make_plan(config, "production", static_hosts(config, "production"))
        deployment = store.start_deployment(environment="production", regions=list(REGIONS), release="R1",
                                            previous_by_region={}, kind="deploy", user="bench")
        bus = EventBus([StoreRecorder(store, "production", deployment)])
        artifact = Path(tmp) / "r1.tar.gz"
        artifact.write_bytes(b"")
        spec = RolloutSpec(app="bench", environment="production", kind="deploy", user="bench",
                           deployment_id=deployment, targets=dict.fromkeys(REGIONS, "R1"),
                           shipments={"R1": Shipment("R1", "0" * 64, artifact)},
                           limits={r: Limits() for r in REGIONS}, max_concurrency=256)
        outcomes = asyncio.run(Rollout(config, spec, NullTransport(), bus).run(plan))
        store.finish_deployment(deployment, "succeeded", [])
        moved = sum(1 for region in outcomes for h in region.hosts if h.status == "succeeded")
        rows = len(store.host_results(deployment))
        store.close()
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert moved == rows == len(plan.hosts), (moved, rows, len(plan.hosts))
    return {"hosts": len(plan.hosts), "seconds": round(elapsed, 2), "peak_mib": round(peak, 1),
            "ms_per_host": round(elapsed * 1000 / len(plan.hosts), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[10000])
    args = parser.parse_args()
    for hosts in args.hosts:
        print(json.dumps(run(hosts)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
