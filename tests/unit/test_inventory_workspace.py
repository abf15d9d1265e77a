"""Workspace.hosts: listed hosts and found hosts merged per region, providers asked once, only where needed.

Inventory commands here are real scripts that count their runs in a file beside the config, so a test can
tell which regions' providers were asked and how many times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conveyor.errors import InventoryError, UsageError
from conveyor.inventory import Host, ListedProvider
from conveyor.operations.workspace import Workspace

# A script that prints the hosts of `hosts-<region>.json` and logs each run in `runs`.
INVENTORY = """\
#!/bin/sh
echo "$CONVEYOR_ENV/$CONVEYOR_REGION" >> runs
cat "hosts-$CONVEYOR_REGION.json"
"""

CONFIG = """\
app: www
roles: {web: {}, batch: {}}
environments:
  production:
    transport: local
    regions:
      za: {hosts: {batch: [za-batch-1]}, inventory: {command: ./inventory.sh}}
      uk: {inventory: {command: ./inventory.sh}}
      us: {hosts: {web: [us-web-1]}}
"""


def workspace(tmp_path: Path, config: str = CONFIG, **regions: object) -> Workspace:
    (tmp_path / "inventory.sh").write_text(INVENTORY)
    (tmp_path / "inventory.sh").chmod(0o755)
    for region, document in regions.items():
        set_hosts(tmp_path, region, document)
    (tmp_path / "conveyor.yml").write_text(textwrap.dedent(config))
    return Workspace.load(tmp_path / "conveyor.yml")


def set_hosts(tmp_path: Path, region: str, document: object) -> None:
    (tmp_path / f"hosts-{region}.json").write_text(json.dumps(document))


def runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "runs"
    return log.read_text().split() if log.exists() else []


def names(hosts: dict[str, list[Host]]) -> dict[str, list[tuple[str, str]]]:
    return {region: [(h.role, h.name) for h in members] for region, members in hosts.items()}


def test_listed_hosts_come_first_then_the_inventory_region_by_region(tmp_path: Path) -> None:
    ws = workspace(tmp_path, za={"web": ["za-web-1", "za-web-2"]}, uk={"web": ["uk-web-1"], "batch": ["uk-b-1"]})
    assert names(ws.hosts("production")) == {
        "za": [("batch", "za-batch-1"), ("web", "za-web-1"), ("web", "za-web-2")],
        "uk": [("web", "uk-web-1"), ("batch", "uk-b-1")],
        "us": [("web", "us-web-1")],
    }
    assert sorted(runs(tmp_path)) == ["production/uk", "production/za"]


def test_only_the_regions_asked_for_have_their_inventory_read(tmp_path: Path) -> None:
    ws = workspace(tmp_path, za={"web": ["za-web-1"]})  # uk has no hosts file: reading it would fail
    assert names(ws.hosts("production", ["us", "za"])) == {
        "za": [("batch", "za-batch-1"), ("web", "za-web-1")],
        "us": [("web", "us-web-1")],
    }
    assert runs(tmp_path) == ["production/za"]


def test_an_inventory_is_read_once_per_workspace_unless_refreshed(tmp_path: Path) -> None:
    ws = workspace(tmp_path, za={"web": ["za-web-1"]}, uk={"web": ["uk-web-1"]})
    ws.hosts("production")
    set_hosts(tmp_path, "za", {"web": ["za-web-1", "za-web-2"]})  # the group scaled out
    assert names(ws.hosts("production", ["za"]))["za"] == [("batch", "za-batch-1"), ("web", "za-web-1")]
    assert sorted(runs(tmp_path)) == ["production/uk", "production/za"]
    refreshed = ws.hosts("production", ["za"], refresh=True)
    assert names(refreshed)["za"] == [("batch", "za-batch-1"), ("web", "za-web-1"), ("web", "za-web-2")]
    assert sorted(runs(tmp_path)) == ["production/uk", "production/za", "production/za"]
    # The refreshed answer is the one kept; uk was not asked again.
    assert names(ws.hosts("production"))["za"] == names(refreshed)["za"]
    assert runs(tmp_path).count("production/uk") == 1


def test_a_host_twice_in_a_region_is_an_error_naming_both_places(tmp_path: Path) -> None:
    ws = workspace(tmp_path, za={"web": ["ZA-BATCH-1"]})
    with pytest.raises(InventoryError) as info:
        ws.hosts("production", ["za"])
    assert info.value.message == ("inventory of production/za (command './inventory.sh'): host 'ZA-BATCH-1' (web, "
                                  "from the inventory) is already in the region (batch, from the hosts:)")
    ws = workspace(tmp_path, uk={"web": ["uk-1"], "batch": ["uk-1"]})
    with pytest.raises(InventoryError, match="host 'uk-1' \\(batch, from the inventory\\) is already in the region "
                                             "\\(web, from the inventory\\)"):
        ws.hosts("production", ["uk"])


def test_the_same_name_in_two_regions_is_allowed(tmp_path: Path) -> None:
    ws = workspace(tmp_path, za={"web": ["web-1"]}, uk={"web": ["web-1"]})
    assert {h.key for region in ws.hosts("production").values() for h in region} >= {"za/web-1", "uk/web-1"}


def test_every_failing_region_is_reported_at_once(tmp_path: Path) -> None:
    ws = workspace(tmp_path, za={"wbe": ["za-web-1"]})  # uk has no hosts file: cat fails
    with pytest.raises(InventoryError) as info:
        ws.hosts("production")
    lines = info.value.message.splitlines()
    assert lines[0] == "inventory of production/za (command './inventory.sh'): printed hosts that cannot be used:"
    assert lines[1] == "wbe: unknown role 'wbe'; known: web, batch"
    assert lines[2] == "inventory of production/uk (command './inventory.sh'): exited with status 1; its stderr ends:"
    assert "hosts-uk.json" in lines[3]


def test_a_failed_read_is_not_kept(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    with pytest.raises(InventoryError):
        ws.hosts("production", ["za"])
    set_hosts(tmp_path, "za", {"web": ["za-web-1"]})
    assert names(ws.hosts("production", ["za"]))["za"] == [("batch", "za-batch-1"), ("web", "za-web-1")]


def test_an_unknown_region_or_environment_is_a_usage_error(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    with pytest.raises(UsageError, match="unknown region 'eu' in production; known: za, uk, us"):
        ws.hosts("production", ["eu"])
    with pytest.raises(UsageError, match="unknown environment 'prod'"):
        ws.hosts("prod")
    assert runs(tmp_path) == []


def test_an_injected_provider_replaces_the_configured_one(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    found = Host("uk-web-7", "elsewhere", "elsewhere", "web", "10.0.0.7", labels={"rack": "b"})
    ws.providers[("production", "uk")] = ListedProvider((found,))
    ws.providers[("production", "us")] = ListedProvider(problem="the API said no")
    (uk,) = ws.hosts("production", ["uk"])["uk"]
    assert (uk.key, uk.environment, uk.address, uk.labels) == ("uk/uk-web-7", "production", "10.0.0.7", {"rack": "b"})
    with pytest.raises(InventoryError, match=r"^inventory of production/us \(listed\): the API said no$"):
        ws.hosts("production", ["us"])
    assert runs(tmp_path) == []


def test_a_missing_boto3_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = workspace(tmp_path, config=CONFIG.replace("{command: ./inventory.sh}}\n      uk",
                                                   "{aws: {region: eu-west-2, groups: {web: www-web}}}}\n      uk"))
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` meets when it is not installed
    with pytest.raises(InventoryError) as info:
        ws.hosts("production", ["za"])
    assert info.value.message == ("inventory of production/za (aws eu-west-2): an aws inventory needs boto3, which "
                                  "is not installed: pip install 'conveyor-deploy[aws]'")


def test_boto3_loads_only_when_an_aws_inventory_is_read() -> None:
    code = ("import sys, conveyor.operations.workspace, conveyor.inventory.aws, conveyor.cli.app; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'moto'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
