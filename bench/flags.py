#!/usr/bin/env python3
"""A flag change against a rollback, on the same fleet of real sshd hosts (tests/sshfleet).

    python bench/flags.py --hosts 100 --runs 3

One region of N web hosts (canary 0, batch 100%, no checks: the engine's own cost), one small release deployed
twice (R1, then R2). Then, alternating, measured by wall time: `conveyor rollback prod` (back to R1, the release
still on the hosts: no transfer) and `conveyor deploy prod --release R2` (forward again), and `conveyor flags set
prod banner festive|plain` (a flags file on every host, one round trip each). The issue's bar: a flag change
costs no more than a rollback. Prints one JSON document with each step's times and medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from sshfleet import Fleet  # noqa: E402

FLAGS = """\
flags:
  banner:
    state: ENABLED
    variants: {plain: plain, festive: festive}
    defaultVariant: plain
"""


def conveyor(root: Path, *args: str) -> tuple[float, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_USER="bench", NO_COLOR="1")
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "conveyor"), "-c", str(root / "conveyor.yml"), *args,
                           "--yes", "--json"], capture_output=True, text=True, env=env, cwd=root, timeout=900,
                          check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"conveyor {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-flags-bench-") as tmp:
        root = Path(tmp)
        with Fleet(root / "fleet", options.hosts) as fleet:
            hosts = [{"name": h.name, "address": "127.0.0.1", "port": h.port} for h in fleet.all_hosts]
            settings = {
                "app": "bench", "artifact": {"path": "app"}, "deploy_to": "/srv/bench",
                "ssh": {"user": "root", "identity_file": str(fleet.client_key),
                        "known_hosts_file": str(fleet.known_hosts), "max_concurrency": options.hosts,
                        "connect_timeout": "30s", "command_timeout": "10m"},
                "roles": {"web": {"restart": "true", "canary": 0, "batch": "100%"}},
                "environments": {"prod": {"transport": "ssh", "regions": {"local": {"hosts": {"web": hosts}}}}},
                "flags": {},
            }
            (root / "conveyor.yml").write_text(json.dumps(settings, indent=2))
            (root / "flags").mkdir()
            (root / "flags" / "flags.yaml").write_text(FLAGS)
            (root / "app").mkdir()
            releases = []
            for version in ("1", "2"):
                (root / "app" / "VERSION").write_text(version)
                releases.append(conveyor(root, "deploy", "prod")[1]["release"])
            times: dict[str, list[float]] = {"rollback": [], "deploy (forward again)": [], "flags set": []}
            for run in range(options.runs):
                times["rollback"].append(conveyor(root, "rollback", "prod")[0])
                times["deploy (forward again)"].append(conveyor(root, "deploy", "prod", "--release",
                                                                releases[1])[0])
                variant = "festive" if run % 2 == 0 else "plain"
                seconds, result = conveyor(root, "flags", "set", "prod", "banner", variant, "--reason", "bench")
                assert result["status"] == "succeeded", result
                times["flags set"].append(seconds)
            print(json.dumps({"hosts": options.hosts, "runs": options.runs, "seconds": times,
                              "median": {k: round(statistics.median(v), 2) for k, v in times.items()}}, indent=2))


if __name__ == "__main__":
    main()
