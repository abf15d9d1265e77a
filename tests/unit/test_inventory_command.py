"""The command inventory provider, run for real: scripts written into the test's directory, run with `sh`.

What a team's inventory script can do wrong (fail, hang, print junk, name hosts dangerously) ends as one
InventoryError naming the environment, the region and the command, with the script's own words.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError, InventoryError
from conveyor.inventory import Host, Scope
from conveyor.inventory.command import CommandProvider
from conveyor.inventory.providers import read_provider

ROLES = ("web", "batch", "daemon")


def scope(tmp_path: Path) -> Scope:
    return Scope("www", "production", "ca", tmp_path, ROLES)


def script(tmp_path: Path, body: str, name: str = "inventory.sh") -> str:
    """Write an executable script; return the command that runs it (relative: commands run in the config dir)."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return f"./{name}"


def prints(tmp_path: Path, document: object) -> str:
    """A script that prints a document as JSON."""
    (tmp_path / "inventory.json").write_text(json.dumps(document))
    return script(tmp_path, "cat inventory.json\n")


def read(tmp_path: Path, command: str, timeout: float = 10.0) -> list[Host]:
    return read_provider(CommandProvider(command, timeout=timeout), scope(tmp_path))


def failure(tmp_path: Path, command: str, timeout: float = 10.0) -> str:
    with pytest.raises(InventoryError) as info:
        read(tmp_path, command, timeout)
    error = info.value
    assert error.exit_code == 1
    assert (error.environment, error.region, error.provider) == ("production", "ca", f"command {command!r}")
    prefix = f"inventory of production/ca (command {command!r}): "
    assert error.message.startswith(prefix), error.message
    return error.message[len(prefix):]


def summary(hosts: list[Host]) -> list[tuple[str, str, str, int | None, str | None, dict[str, str]]]:
    return [(h.role, h.name, h.address, h.port, h.user, h.labels) for h in hosts]


# --- what a good command gives --------------------------------------------------------------------------


def test_a_command_runs_in_the_config_directory_with_the_documented_variables(tmp_path: Path) -> None:
    command = script(tmp_path, """\
        cat <<EOF
        {"web": ["$CONVEYOR_REGION-web-1",
                 {"name": "$CONVEYOR_REGION-web-2", "address": "10.0.0.2", "port": 2222, "user": "deploy",
                  "labels": {"app": "$CONVEYOR_APP", "env": "$CONVEYOR_ENV", "cwd": "$(pwd)"}}],
         "daemon": ["ca-d-1"]}
        EOF
        """.replace("        ", ""))
    hosts = read(tmp_path, command)
    assert summary(hosts) == [
        ("web", "ca-web-1", "ca-web-1", None, None, {}),
        ("web", "ca-web-2", "10.0.0.2", 2222, "deploy", {"app": "www", "env": "production", "cwd": str(tmp_path)}),
        ("daemon", "ca-d-1", "ca-d-1", None, None, {}),
    ]
    assert {(h.environment, h.region) for h in hosts} == {("production", "ca")}


def test_an_empty_role_list_or_object_is_no_hosts(tmp_path: Path) -> None:
    assert read(tmp_path, prints(tmp_path, {"web": []})) == []
    assert read(tmp_path, prints(tmp_path, {})) == []


def test_ansible_inventory_list_output_is_read_by_groups_named_after_roles(tmp_path: Path) -> None:
    document = {
        "_meta": {"hostvars": {
            "ca-web-1": {"ansible_host": "10.1.0.1", "ansible_port": "2222", "ansible_user": "deploy"},
            "ca-web-2": {"ansible_ssh_host": "10.1.0.2", "ansible_python_interpreter": "/usr/bin/python3"},
            "ca-batch-1": {"ansible_host": "ca-batch-1.internal"},
            "ca-db-1": {"ansible_host": "10.1.9.9"},
        }},
        "all": {"children": ["ungrouped", "web", "batch", "db"]},
        "ungrouped": {},
        "web": {"hosts": ["ca-web-1"], "children": ["web_blue"]},
        "web_blue": {"hosts": ["ca-web-2", "ca-web-1"]},
        "batch": {"hosts": ["ca-batch-1"]},
        "db": {"hosts": ["ca-db-1"]},   # not a role of the config: ignored
    }
    assert summary(read(tmp_path, prints(tmp_path, document))) == [
        ("web", "ca-web-1", "10.1.0.1", 2222, "deploy", {}),
        ("web", "ca-web-2", "10.1.0.2", None, None, {}),
        ("batch", "ca-batch-1", "ca-batch-1.internal", None, None, {}),
    ]


def test_ansible_output_is_recognised_without_meta_by_its_group_objects(tmp_path: Path) -> None:
    hosts = read(tmp_path, prints(tmp_path, {"web": {"hosts": ["ca-web-1"]}, "all": {"children": ["web"]}}))
    assert summary(hosts) == [("web", "ca-web-1", "ca-web-1", None, None, {})]


def test_ansible_output_with_no_group_named_after_a_role_is_an_error(tmp_path: Path) -> None:
    document = {"_meta": {"hostvars": {}}, "webservers": {"hosts": ["ca-web-1"]}, "all": {"children": ["webservers"]}}
    assert failure(tmp_path, prints(tmp_path, document)) == (
        "no group is named after a role (web, batch, daemon); groups: webservers, all")


def test_an_empty_ansible_inventory_is_no_hosts(tmp_path: Path) -> None:
    document = {"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]}, "ungrouped": {}}
    assert read(tmp_path, prints(tmp_path, document)) == []


# --- what a failing command gives ------------------------------------------------------------------------


def test_a_command_that_fails_is_reported_with_its_status_and_the_tail_of_its_stderr(tmp_path: Path) -> None:
    command = script(tmp_path, 'for i in $(seq 1 30); do echo "line $i" >&2; done\necho "{}"\nexit 3\n')
    message = failure(tmp_path, command)
    assert message == "exited with status 3; its stderr ends:\n" + "\n".join(f"line {i}" for i in range(23, 31))


def test_a_command_that_fails_silently_says_so(tmp_path: Path) -> None:
    assert failure(tmp_path, "exit 4") == "exited with status 4 (nothing on stderr)"


def test_a_missing_command_is_reported_as_sh_reports_it(tmp_path: Path) -> None:
    message = failure(tmp_path, "./no-such-inventory.sh ca")
    assert message.startswith("exited with status 127; its stderr ends:\n")
    assert "no-such-inventory.sh" in message
    assert "not found" in message


def test_a_command_killed_by_a_signal_says_which(tmp_path: Path) -> None:
    assert failure(tmp_path, "kill -TERM $$") == "was killed by signal 15 (nothing on stderr)"


def test_a_command_that_outlives_its_timeout_is_stopped_with_its_children(tmp_path: Path) -> None:
    # The script starts a child that would keep stdout open for a minute, and waits for it.
    command = script(tmp_path, "sleep 60 &\necho $! > child.pid\nwait\n")
    started = time.monotonic()
    message = failure(tmp_path, command, timeout=0.5)
    assert time.monotonic() - started < 10
    assert message == "did not finish within 0.5s and was stopped (raise inventory.timeout if it needs longer)"
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, f"the command's child {child} still runs after the timeout"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


@pytest.mark.parametrize(("output", "message"), [
    ("", 'printed nothing; expected JSON like {"web": ["web-1", {"name": "web-2", "address": "10.0.0.2"}]}'),
    ("Usage: inventory.sh REGION\n",
     "printed text that is not JSON (Expecting value at line 1, column 1); it begins 'Usage: inventory.sh REGION'"),
    ('{"web": ["ca-web-1",]}',
     "printed text that is not JSON (Expecting value at line 1, column 21); it begins '{\"web\": [\"ca-web-1\",]}'"),
    ('["ca-web-1"]', 'expected a JSON object of role → hosts like {"web": ["web-1", {"name": "web-2", '
                     '"address": "10.0.0.2"}]}, got a list'),
], ids=["nothing", "usage-text", "trailing-comma", "a-list"])
def test_output_that_is_not_an_inventory_document(tmp_path: Path, output: str, message: str) -> None:
    (tmp_path / "out.txt").write_text(output)
    assert failure(tmp_path, script(tmp_path, "cat out.txt\n")) == message


UNUSABLE = "printed hosts that cannot be used:\n"


@pytest.mark.parametrize(("document", "problems"), [
    ({"wbe": ["ca-web-1"]}, ["wbe: unknown role 'wbe'; known: web, batch, daemon"]),
    ({"web": "ca-web-1"}, ['web: expected a list of hosts like {"web": ["web-1", {"name": "web-2", '
                           '"address": "10.0.0.2"}]}, got text \'ca-web-1\'']),
    ({"web": [7]}, ['web.0: expected a host name or an object like {"name": "web-1", "address": "10.0.0.1"}, '
                    'got number 7']),
    ({"web": [{"address": "10.0.0.1"}]}, ["web.0.name: required field is missing"]),
    ({"web": [{"name": "ca-web-1", "ssh": {"user": "root"}}]},
     ["web.0.ssh: unknown field (a host has name, address, port, user, labels)"]),
    ({"web": [{"name": "ca-web-1", "port": 70000}, {"name": "ca-web-2", "port": "ssh"}, {"name": "w3", "port": 0}]},
     ["web.0.port: must be at most 65535, got 70000", "web.1.port: expected a whole number, got text 'ssh'",
      "web.2.port: must be at least 1, got 0"]),
    ({"web": [{"name": "ca-web-1", "labels": {"rack": 3}}]}, ["web.0.labels.rack: expected text, got number 3"]),
], ids=["unknown-role", "role-not-a-list", "host-a-number", "no-name", "ssh-settings", "ports", "labels"])
def test_documents_of_the_wrong_shape(tmp_path: Path, document: object, problems: list[str]) -> None:
    assert failure(tmp_path, prints(tmp_path, document)) == UNUSABLE + "\n".join(problems)


NAME_RULE = "must start with a letter or digit and use only letters, digits, '.', '_', '-'"


def test_hostile_host_names_addresses_and_users_never_become_hosts(tmp_path: Path) -> None:
    document = {"web": [
        "web 1", "-oProxyCommand=touch /tmp/pwned", "../../etc", "web;reboot", "$(reboot)", "",
        {"name": "ca-web-9", "address": "10.0.0.9; rm -rf /"},
        {"name": "ca-web-10", "user": "-oProxyCommand=x"},
        {"name": "ca-web-11", "address": "-oProxyCommand=x"},
    ]}
    assert failure(tmp_path, prints(tmp_path, document)) == UNUSABLE + "\n".join([
        f"web.0.name: host name 'web 1' {NAME_RULE}",
        f"web.1.name: host name '-oProxyCommand=touch /tmp/pwned' {NAME_RULE}",
        f"web.2.name: host name '../../etc' {NAME_RULE}",
        f"web.3.name: host name 'web;reboot' {NAME_RULE}",
        f"web.4.name: host name '$(reboot)' {NAME_RULE}",
        f"web.5.name: host name '' {NAME_RULE}",
        "web.6.address: address '10.0.0.9; rm -rf /' is not a host name or IP address",
        "web.7.user: user '-oProxyCommand=x' must start with a letter, digit or '_' and use only letters, digits, "
        "'.', '_', '-', '@', '\\'",
        "web.8.address: address '-oProxyCommand=x' is not a host name or IP address",
    ])


def test_hostile_names_from_ansible_are_refused_too(tmp_path: Path) -> None:
    document = {"_meta": {"hostvars": {"ca-web-1": {"ansible_host": "$(reboot)"}}},
                "web": {"hosts": ["ca-web-1", "a b"]}}
    assert failure(tmp_path, prints(tmp_path, document)) == UNUSABLE + "\n".join([
        "web.0.address: address '$(reboot)' is not a host name or IP address",
        f"web.1.name: host name 'a b' {NAME_RULE}",
    ])


def test_a_long_list_of_problems_is_cut_short(tmp_path: Path) -> None:
    message = failure(tmp_path, prints(tmp_path, {"web": [f"bad name {i}" for i in range(25)]}))
    assert message.count("\n") == 11
    assert message.endswith("(and 15 more)")


def test_the_error_is_a_conveyor_error_the_cli_turns_into_exit_1(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError) as info:
        read(tmp_path, "exit 1")
    assert isinstance(info.value, InventoryError)
    assert info.value.exit_code == 1


def test_the_command_inherits_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVENTORY_TOKEN", "s3cret")
    command = script(tmp_path, 'printf \'{"web": ["%s"]}\' "$INVENTORY_TOKEN"\n')
    assert [h.name for h in read(tmp_path, command)] == ["s3cret"]
    assert os.environ.get("CONVEYOR_REGION") is None  # set for the command only
