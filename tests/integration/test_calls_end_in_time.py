"""Every call to the outside world ends at its deadline, whatever the far end does.

The real `conveyor` CLI deploys a local fleet while a webhook, Grafana or a Pushgateway answers one byte every
half second for a minute (never silent long enough for a socket timeout, never done), or while a git remote
says nothing for half a minute. Each time the process exits within the configured timeout (and a small
margin) of the time the same deploy takes when nobody holds it up, says why on stderr, and the deployment is
succeeded; nothing it started is left running.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from httprecorder import recording_server

from gitrepo import Repo, git, isolate

pytestmark = pytest.mark.integration

TIMEOUT = 2.0
# Beyond the timeout: starting and killing the caller process, reporting the failure, the noise of a shared
# machine. The far ends hold on for 30 to 60 seconds.
MARGIN = 4.0


def config(**extra: Any) -> dict[str, Any]:
    """One environment, one region, one local web host."""
    return {"app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop", **extra,
            "roles": {"web": {"restart": "true"}},
            "environments": {"staging": {"transport": "local", "regions": {"uk": {"hosts": {"web": ["uk-web-1"]}}}}}}


def timed(fleet: Any, release: str) -> tuple[Any, float]:
    """`conveyor deploy staging --release R --yes --json`, and how long the process took to exit (at most 90s,
    well beyond any deadline here: a run that long fails the test with its time, not a hang)."""
    began = time.monotonic()
    try:
        done = fleet.run("deploy", "staging", "--release", release, "--yes", "--json", timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"conveyor did not exit within 90s (a deadline of {TIMEOUT:g}s was configured)")
    return done, time.monotonic() - began


def held_up(fleet: Any, prompt: dict[str, Any], slow: dict[str, Any]) -> tuple[Any, float, float]:
    """Deploy release 1 with the integration at a far end that answers at once (how long a deploy takes
    here, starting the caller processes included; with a timeout to spare, for a machine that is slow to load
    Apprise), then release 2 with it at the one that holds on: the second run's result, its time, and the
    first one's."""
    first, second = fleet.build("1"), fleet.build("2")
    fleet.settings.update(prompt)
    fleet.write_config()
    quick, quick_took = timed(fleet, first)
    assert quick.json()["status"] == "succeeded"
    assert "warning" not in quick.stderr, str(quick)
    fleet.settings.update(slow)
    fleet.write_config()
    done, took = timed(fleet, second)
    return done, took, quick_took


def warned(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


def test_a_webhook_that_trickles_costs_the_deploy_its_timeout_and_the_process_exits(make_fleet: Any) -> None:
    with recording_server() as web:
        web.trickle("/hooks/slow")

        def target(path: str, timeout: str) -> dict[str, Any]:
            return {"notify": [{"url": f"json://127.0.0.1:{web.port}{path}", "events": ["succeeded"],
                                "timeout": timeout}]}

        fleet = make_fleet(config())
        done, took, quick = held_up(fleet, target("/hooks/fine", "10s"), target("/hooks/slow", "2s"))
        held = web.received("POST", "/hooks/slow")

    assert took < quick + TIMEOUT + MARGIN, f"exited after {took:.1f}s; the same deploy alone took {quick:.1f}s"
    assert len(held) == 1, str(done)  # the message was sent, and the server held on to it
    assert done.json()["status"] == "succeeded"
    assert warned(done.stderr, "conveyor: warning: notify") == [
        f"conveyor: warning: notify json://127.0.0.1:{web.port}/…: no answer within 2s"]


def test_a_grafana_that_trickles_costs_the_deploy_its_timeout_and_the_process_exits(make_fleet: Any) -> None:
    with recording_server() as fine, recording_server() as grafana:
        grafana.trickle("/api/annotations")
        fleet = make_fleet(config())
        done, took, quick = held_up(fleet, {"grafana": {"url": fine.url, "timeout": "10s"}},
                                    {"grafana": {"url": grafana.url, "timeout": "2s"}})
        held = grafana.received("POST", "/api/annotations")

    assert took < quick + TIMEOUT + MARGIN, f"exited after {took:.1f}s; the same deploy alone took {quick:.1f}s"
    assert len(held) == 1, str(done)
    assert done.json()["status"] == "succeeded"
    assert warned(done.stderr, "conveyor: warning: notify") == [
        f"conveyor: warning: notify grafana {grafana.url}: annotation for uk not added: POST /api/annotations: "
        "no answer within 2s"]


def test_a_pushgateway_that_trickles_costs_the_deploy_its_timeout_and_the_process_exits(make_fleet: Any) -> None:
    with recording_server() as fine, recording_server() as gateway:
        gateway.trickle("/metrics")
        fleet = make_fleet(config())
        done, took, quick = held_up(fleet, {"metrics": {"pushgateway": fine.url, "timeout": "10s"}},
                                    {"metrics": {"pushgateway": gateway.url, "timeout": "2s"}})
        held = gateway.received("PUT", "/metrics/job/conveyor/app/shop/environment/staging")

    assert took < quick + TIMEOUT + MARGIN, f"exited after {took:.1f}s; the same deploy alone took {quick:.1f}s"
    assert len(held) == 1, str(done)
    assert done.json()["status"] == "succeeded"
    assert warned(done.stderr, "conveyor: warning: metrics") == [
        f"conveyor: warning: metrics: pushgateway {gateway.url}: no answer within 2s"]


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, dead and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    except OSError:
        return False


def test_a_git_remote_that_hangs_costs_the_push_its_timeout_and_leaves_nothing_running(
        make_fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch)
    fleet = make_fleet(config(git={"tags": True}))
    repo = Repo.init(fleet.root)
    repo.commit("Add the shop")
    origin = repo.bare_remote(tmp_path / "origin.git")
    remote = repo.bare_remote(tmp_path / "slow.git", "slow")
    # The remote's receive-pack says nothing for 30s (then ends): a server that accepted and went quiet.
    pid_file = tmp_path / "receive-pack.pid"
    script = tmp_path / "slow-receive-pack"
    script.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 30\n')
    script.chmod(0o755)
    git(repo.path, "config", "remote.slow.receivepack", str(script))

    done, took, quick = held_up(fleet, {"git": {"tags": True, "push": "origin", "timeout": "2s"}},
                                {"git": {"tags": True, "push": "slow", "timeout": "2s"}})

    assert len(git(origin, "tag", "-l").splitlines()) == 1  # the quick deploy's push went through
    assert done.json()["status"] == "succeeded"
    (warning,) = warned(done.stderr, "conveyor: warning: git tags")
    assert warning.startswith("conveyor: warning: git tags: push to slow: git push in ")
    assert warning.endswith(" took longer than 2s")
    assert took < quick + TIMEOUT + MARGIN, f"exited after {took:.1f}s; the same deploy alone took {quick:.1f}s"
    assert git(remote, "tag", "-l") == ""
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while running(pid):
        assert time.monotonic() < deadline, f"the remote's process {pid}, started by the push, still runs"
        time.sleep(0.02)
