#!/usr/bin/env python3
"""A kept fleet for finding where Conveyor's time goes: the fan-out benchmark's hosts, seeded as it seeds them,
left running while you measure, then stopped.

    python bench/lab.py --hosts 100                  # starts, seeds, deploys new then small, waits for Ctrl-C
    python bench/lab.py --hosts 100 --once 'rollback' # ...or runs one measured step and stops

While it waits it prints the environment to reach the fleet (`conveyor -c … rollback prod --yes`), the floor's
rollback script for the same hosts, and `measure`, which runs any command and says its wall time, its CPU and
the whole machine's CPU (what every host spent too: on a machine this size the hosts' work is most of it). A
rollback goes back to `new`; `deploy prod --release SMALL` puts the hosts on `small` again for the next one.

The benchmark's own numbers come from bench/fanout.py, which seeds a fresh fleet for every run and checks every
host after every step; this keeps one fleet so that a change can be measured in seconds, not in an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

from fanout import (  # noqa: E402
    _sh,
    build_releases,
    conveyor_executable,
    image_size_mb,
    seed_fleet,
    write_fast_ssh_config,
)

from sshfleet import Fleet  # noqa: E402
from tools import Conveyor, Site, parallel_script, remote_switch  # noqa: E402


def machine_busy() -> float:
    """CPU seconds every process of the machine has spent busy so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, float]:
    """Run `argv`: its exit code, wall seconds, its own CPU seconds (children included) and the machine's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, began = machine_busy(), time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=False, timeout=600)
    wall, machine = time.monotonic() - began, machine_busy() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"exit": done.returncode, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "machine_cpu_s": round(machine, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--once", choices=["rollback", "floor-rollback"], default=None,
                        help="measure this once (three times), print it as JSON and stop")
    args = parser.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conveyor-bench"
    conveyor = conveyor_executable(None)
    releases = build_releases(cache, conveyor)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="conveyor-lab-"))
    fleet = Fleet(work / "fleet", args.hosts, fast_crypto=False, image_size_mb=image_size_mb(args.hosts),
                  ready_timeout=max(30.0, args.hosts * 0.5))
    fleet.start()
    try:
        site_dir = work / "site"
        site_dir.mkdir(parents=True, exist_ok=True)
        fast = site_dir / "ssh_config.fast"
        write_fast_ssh_config(fleet.ssh_config, fast)
        site = Site(work=site_dir, names=[h.name for h in fleet.hosts], ports={h.name: h.port for h in fleet.hosts},
                    client_key=fleet.client_key, known_hosts=fleet.known_hosts, ssh_config_default=fleet.ssh_config,
                    ssh_config_fast=fast, cache=cache)
        templates = fleet.mountpoint / "templates"
        templates.mkdir(parents=True, exist_ok=True)
        for name in ("old1", "old2"):
            _sh(f"rm -rf '{templates / releases[name].id}' && cp -a '{releases[name].dir}' "
                f"'{templates / releases[name].id}'")
        seed_fleet(fleet, templates, releases)
        tool = Conveyor(site, conveyor, cache / "conveyor-store-zstd")
        tool.begin_run(0)
        env, new, small = tool.env(), releases["new"].id, releases["small"].id
        deploy = [conveyor, "-c", str(tool.config), "deploy", "prod", "--yes", "--json", "--release"]
        for release in (new, small):
            step = measure([*deploy, release], env, tool.dir)
            print(f"deployed {release}: {json.dumps(step)}", flush=True)
        floor = site_dir / "floor-rollback.sh"
        line = f"ssh -F {shlex.quote(str(fast))} -- @HOST@ {shlex.quote(remote_switch(new))}"
        floor.write_text(parallel_script({h: line.replace("@HOST@", h) for h in site.names}, site_dir / "floor-logs"))
        rollback = [conveyor, "-c", str(tool.config), "rollback", "prod", "--yes", "--json"]
        if args.once:
            runs = []
            for _ in range(3):
                argv = rollback if args.once == "rollback" else ["sh", str(floor)]
                runs.append(measure(argv, env, tool.dir))
                measure([*deploy, small], env, tool.dir)
            print(json.dumps({"hosts": args.hosts, "measured": args.once, "runs": runs}), flush=True)
            return 0
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("CONVEYOR_", "NO_COLOR")))
        print(f"\nThe fleet runs ({args.hosts} hosts, work in {work}). In another shell:\n"
              f"  export {exports}\n  cd {tool.dir}\n"
              f"  python {BENCH / 'lab.py'} measure {shlex.join(rollback)}\n"
              f"  {shlex.join([*deploy, small])}   # back on small for the next rollback\n"
              f"  python {BENCH / 'lab.py'} measure sh {floor}   # the floor's rollback (to new)\n"
              "Ctrl-C stops the fleet.", flush=True)
        # Stopped by Ctrl-C, or by `kill PID` (a shell's background job ignores SIGINT): the fleet goes with it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    finally:
        fleet.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(measure(sys.argv[2:])))
        sys.exit(0)
    sys.exit(main())
