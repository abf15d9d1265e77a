"""`conveyor demo`: the embedded default job works on a fresh directory, and again on the same one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CONVEYOR = shutil.which("conveyor") or "conveyor"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVEYOR_USER": "demo-tester"}
    env.pop("CONVEYOR_STATE_URL", None)
    return subprocess.run([CONVEYOR, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)


def test_the_demo_deploys_two_releases_and_rolls_one_region_back(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    done = run("demo", "--dir", str(demo), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "promote_from" in done.stderr  # production refused the untested release on the way

    status = json.loads(run("-c", str(demo / "conveyor.yml"), "status", "--verify", "--json", cwd=tmp_path).stdout)
    production = status["environments"]["production"]["regions"]
    staging = status["environments"]["staging"]["regions"]
    assert all(region["consistent"] for region in (*production.values(), *staging.values()))
    second = staging["uk"]["release"]
    assert production["za"]["release"] == second
    assert production["us"]["release"] == second
    assert production["uk"]["release"] != second  # rolled back to the first release
    assert len(production["za"]["hosts"]) == 6

    history = json.loads(run("-c", str(demo / "conveyor.yml"), "history", "--json", cwd=tmp_path).stdout)
    kinds = [(d["environment"], d["kind"], d["status"]) for d in history["deployments"]]
    assert kinds[0] == ("production", "rollback", "succeeded")
    assert ("production", "deploy", "blocked") in kinds
    assert all(d["user"] == "demo-tester" for d in history["deployments"])

    # It ends with the command that serves this history in a browser, and that dashboard shows it unsigned.
    command = f"conveyor -c {demo / 'conveyor.yml'} serve"
    assert f"See this history in a browser: `{command}`" in done.stdout + done.stderr
    from starlette.testclient import TestClient

    from conveyor.operations.workspace import Workspace
    from conveyor.web.app import create_app

    ws = Workspace.load(demo / "conveyor.yml")
    page = TestClient(create_app(ws), base_url="https://testserver").get("/history", follow_redirects=False)
    ws.close()
    assert page.status_code == 200
    assert page.text.count('href="/deployments/') == len(history["deployments"])

    again = run("demo", "--dir", str(demo), cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_the_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    done = run("demo", "--dir", str(mine), cwd=tmp_path)
    assert done.returncode == 2
    assert "not made by `conveyor demo`" in done.stderr
    assert (mine / "precious.txt").read_text() == "keep me"
