"""Probing a host's stack costs no round trip: the same deployments, with and without `consistency:`, run the
same host commands in the same order on every host (the real local transport, each command it runs counted
by phase), and with it every host's components are recorded.

Also how much the probes add to the probe step itself on one host (reported, not judged: no timed test).
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.inventory import Host
from conveyor.operations.deploy import Request, deploy
from conveyor.operations.release import build
from conveyor.operations.workspace import Workspace
from conveyor.transport.base import Completed, Connection
from conveyor.transport.local import LocalTransport

pytestmark = pytest.mark.integration


class Counted:
    """The local transport, noting which phase each command it runs is (`conveyor-probe`, ...), per host."""

    def __init__(self, inner: LocalTransport) -> None:
        self.inner = inner
        self.phases: dict[str, list[str]] = {}

    async def connect(self, host: Host) -> Connection:
        connection = await self.inner.connect(host)
        phases = self.phases.setdefault(host.name, [])

        class Noting:
            async def run(self, command: str, *, stdin: Path | None = None, timeout: float | None = None
                          ) -> Completed:
                phases.append(next(w for w in shlex.split(command) if w.startswith("conveyor-")))
                return await connection.run(command, stdin=stdin, timeout=timeout)

            async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True
                               ) -> tuple[int, str]:
                return await connection.http_get(url, timeout, follow_redirects=follow_redirects)

            async def close(self) -> None:
                await connection.close()

        return Noting()

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        return self.inner.deploy_path(host, deploy_to)

    async def aclose(self) -> None:
        await self.inner.aclose()


def settings(with_stack: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop", "shared": ["log"],
        "roles": {"web": {"restart": "true", "checks": [{"command": "test -f VERSION"}]}, "batch": {}},
        "environments": {"production": {"transport": "local", "regions": {
            "za": {"hosts": {"web": ["za-web-1", "za-web-2", "za-web-3"], "batch": ["za-b-1"]}},
            "uk": {"hosts": {"web": ["uk-web-1"]}}}}},
    }
    if with_stack:
        config["consistency"] = {"components": {
            "os": {"probe": ". /etc/os-release && echo \"$ID-$VERSION_ID\""}, "kernel": {"probe": "uname -r"},
            "tar": {"probe": "tar --version | head -n 1", "roles": ["web"]},
            "passwd": {"probe": "sha256sum /etc/passwd | cut -c1-12"}}}
    return config


def deployments(root: Path, with_stack: bool) -> tuple[dict[str, list[str]], list[Any]]:
    root.mkdir()
    (root / "conveyor.yml").write_text(yaml.safe_dump(settings(with_stack)))
    counted = Counted(LocalTransport(root / "hosts"))
    ws = Workspace.load(root / "conveyor.yml", transports={"production": counted},
                        state_url=f"sqlite:///{root / 'state.db'}")
    try:
        for version in ("1", "2"):
            shutil.rmtree(root / "app", ignore_errors=True)
            (root / "app").mkdir()
            (root / "app" / "VERSION").write_text(version)
            release, _ = build(ws)
            result = deploy(ws, Request("production", release=release.id), subscribers=[])
            assert str(result.status) == "succeeded", result.to_json()
        return counted.phases, ws.store.host_components("production")
    finally:
        ws.close()


def test_probing_components_adds_no_host_command(tmp_path: Path) -> None:
    plain, nothing = deployments(tmp_path / "plain", with_stack=False)
    probed, recorded = deployments(tmp_path / "probed", with_stack=True)
    assert probed == plain  # the same commands, in the same order, on every host
    assert plain["za-web-1"][:2] == ["conveyor-probe", "conveyor-receive"]
    assert nothing == []
    assert sorted({(r.host, r.component) for r in recorded}) == sorted(
        [(h, c) for h in ("za-web-1", "za-web-2", "za-web-3", "uk-web-1") for c in ("kernel", "os", "passwd", "tar")]
        + [("za-b-1", c) for c in ("kernel", "os", "passwd")])
    assert all(r.value and r.error is None for r in recorded), recorded


def test_the_probe_step_with_four_components_on_one_host(tmp_path: Path) -> None:
    """Not a timed test: it prints what the probes add to one host's probe step, for the record."""
    import resource
    import time

    from conveyor.engine import commands
    from conveyor.engine.stack import ComponentProbe

    asked = [ComponentProbe(name, spec["probe"], 10.0)
             for name, spec in settings(True)["consistency"]["components"].items()]

    def cost(components: list[ComponentProbe]) -> tuple[float, float]:
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        for _ in range(20):
            done = asyncio.run(LocalTransport(tmp_path).connect(
                Host(name="h", environment="e", region="r", role="web", address="h")))
            asyncio.run(done.run(commands.probe(str(tmp_path / "srv"), "", components)))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return (time.perf_counter() - started) / 20 * 1000, cpu / 20 * 1000

    plain, probed = cost([]), cost(asked)
    print(f"\nprobe step on one host: {plain[0]:.1f} ms wall / {plain[1]:.1f} ms CPU without components, "
          f"{probed[0]:.1f} ms wall / {probed[1]:.1f} ms CPU with four")
    assert probed[1] > 0  # it measured something
