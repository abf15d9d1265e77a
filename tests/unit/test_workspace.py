"""SSH settings and limits resolved per region and per host, as the transport and the engine see them."""

from __future__ import annotations

from pathlib import Path

from conveyor.operations.workspace import Workspace
from conveyor.transport.clients import SSHClients

CONFIG = """\
app: www
ssh: {user: deploy, connect_timeout: 7s, identity_file: keys/deploy}
roles: {web: {}}
environments:
  production:
    ssh: {max_concurrency: 20}
    regions:
      za:
        ssh: {jump: "ops@bastion.za:2222", command_timeout: 1m}
        hosts:
          web:
            - za-web-1
            - {name: za-web-2, address: 10.0.0.2, port: 2200, ssh: {jump: "ops@other-bastion", user: root}}
      uk: {hosts: {web: [uk-web-1]}}
"""


def workspace(tmp_path: Path) -> Workspace:
    path = tmp_path / "conveyor.yml"
    path.write_text(CONFIG)
    return Workspace.load(path)


def test_settings_merge_from_the_top_to_the_region_to_the_host(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    transport = ws.transport("production")
    assert isinstance(transport, SSHClients)
    hosts = {h.name: h for region in ws.hosts("production").values() for h in region}
    first = transport.settings_for(hosts["za-web-1"])
    assert (first.user, first.jump, first.command_timeout, first.connect_timeout) == (
        "deploy", "ops@bastion.za:2222", 60.0, 7.0)
    second = transport.settings_for(hosts["za-web-2"])
    assert (second.user, second.jump) == ("root", "ops@other-bastion")
    assert (hosts["za-web-2"].address, hosts["za-web-2"].port) == ("10.0.0.2", 2200)
    uk = transport.settings_for(hosts["uk-web-1"])
    assert (uk.jump, uk.command_timeout) == (None, 600.0)


def test_relative_key_paths_are_read_from_the_config_directory(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    transport = ws.transport("production")
    assert isinstance(transport, SSHClients)
    host = ws.hosts("production")["uk"][0]
    assert transport.settings_for(host).identity_file == str(tmp_path / "keys/deploy")


def test_limits_are_per_region_and_concurrency_per_environment(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    limits = ws.limits("production")
    assert (limits["za"].command_timeout, limits["uk"].command_timeout) == (60.0, 600.0)
    assert limits["za"].connect_timeout == 7.0
    assert ws.concurrency("production") == 20
