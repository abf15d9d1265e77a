"""Smoke test of the fan-out benchmark (bench/fanout.py --quick): 3 real sshd hosts, Conveyor and the plain
OpenSSH floor, every scenario once, every host verified. It proves the benchmark still runs end to end (and
that Conveyor still deploys over SSH); it measures nothing worth keeping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from sshfleet import missing_requirements  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_requirements()),
        reason=f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)",
    ),
]


def test_quick_benchmark_verifies_conveyor_and_the_floor(tmp_path: Path) -> None:
    output = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fanout.py"), "--quick", "--output", str(output),
         "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    results = json.loads(output.read_text())
    assert results["quick"] is True
    records = results["records"]
    for scenario in ("new", "small", "rollback"):
        for tool in ("conveyor", "floor"):
            rows = [r for r in records if r["scenario"] == scenario and r["tool"] == tool]
            assert rows, f"no {tool} result for {scenario}"
            for row in rows:
                assert row["verified"] is True, row
                assert row["hosts"] == 3
                assert row["wall_s"] > 0
        assert results["ratios"]["3"][scenario]["conveyor/floor"]["wall"] > 0
