"""Autoscaled regions with the real `conveyor` CLI: hosts that join while a region moves are caught up,
hosts that leave are not failures, a new host converges on its region's release by itself, and hosts can
download a release themselves (transfer: pull).

The inventory is a command that prints the hosts listed in `hosts.txt` beside the config (one `role name`
per line): a restart appends or removes lines, the way an autoscaler launches or terminates instances
while a deployment is under way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

INVENTORY = """\
#!/bin/sh
# Print the hosts of hosts.txt as {"web": [...], "batch": [...]}.
awk 'BEGIN { printf "{" } { if (n[$1]++) list[$1] = list[$1] ","; list[$1] = list[$1] "\\"" $2 "\\"" }
     END { sep = ""; for (r in list) { printf "%s\\"%s\\": [%s]", sep, r, list[r]; sep = ", " }; print "}" }' hosts.txt
"""

# Each restart records what it serves; the one on `trigger_host` runs `trigger` too (in the config dir).
RESTART = """\
printf "%s %s\\n" "$CONVEYOR_RELEASE" "$CONVEYOR_HOST" > "$CONVEYOR_DEPLOY_TO/serving"
if [ "$CONVEYOR_HOST" = "$TRIGGER_HOST" ] && [ ! -e "$CONFIG_DIR/triggered" ]; then
  : > "$CONFIG_DIR/triggered"
  cd "$CONFIG_DIR" && sh -c "$TRIGGER"
fi
"""


def settings(root: Path, trigger_host: str, trigger: str, **environment: Any) -> dict[str, Any]:
    restart = f"TRIGGER_HOST='{trigger_host}' CONFIG_DIR='{root}' TRIGGER='{trigger}'\n" + RESTART
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "shared": ["log"],
        "roles": {"web": {"restart": restart, "canary": 1, "batch": 2}},
        "environments": {"production": {"transport": "local", **environment, "regions": {
            "za": {"inventory": {"command": "./inventory.sh"}}}}},
    }


def autoscaled(make_fleet: Any, hosts: list[str], trigger_host: str = "", trigger: str = "true",
               **environment: Any) -> Any:
    fleet = make_fleet({"app": "shop", "roles": {"web": {}}, "environments": {"x": {"regions": {"x": {}}}}})
    fleet.settings = settings(fleet.root, trigger_host, trigger, **environment)
    fleet.write_config()
    script = fleet.root / "inventory.sh"
    script.write_text(INVENTORY)
    script.chmod(0o755)
    (fleet.root / "hosts.txt").write_text("".join(f"web {h}\n" for h in hosts))
    return fleet


def current(fleet: Any, host: str) -> str | None:
    link = fleet.root / ".conveyor" / "hosts" / "production" / "za" / host / "srv" / "shop" / "current"
    return os.readlink(link).removeprefix("releases/") if link.is_symlink() else None


def test_a_host_launched_while_its_region_moves_is_caught_up_before_the_region_ends(make_fleet: Any) -> None:
    # When the canary restarts, the autoscaler launches za-web-4.
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2", "za-web-3"], trigger_host="za-web-1",
                       trigger="echo web za-web-4 >> hosts.txt")
    fleet.write_artifact("1")
    result = fleet.json("deploy", "production", "--yes")
    release = result["release"]
    assert result["status"] == "succeeded", result
    hosts = result["regions"]["za"]["hosts"]
    assert [h["host"] for h in hosts] == ["za-web-1", "za-web-2", "za-web-3", "za-web-4"]
    assert all(h["status"] == "succeeded" for h in hosts), hosts
    for host in ("za-web-1", "za-web-2", "za-web-3", "za-web-4"):
        assert current(fleet, host) == release
    # The history has it too, and the status of the region counts it.
    detail = fleet.json("history", "--id", str(result["id"]))
    assert {h["host"] for h in detail["hosts"]} == {"za-web-1", "za-web-2", "za-web-3", "za-web-4"}
    region = fleet.json("status")["environments"]["production"]["regions"]["za"]
    assert (region["release"], region["consistent"]) == (release, True)


def test_a_host_terminated_during_the_deployment_is_dropped_not_failed(make_fleet: Any) -> None:
    # za-web-2 is terminated by the autoscaler as it restarts: it leaves the inventory, and its host is gone.
    gone = "production/za/za-web-2"
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2", "za-web-3"], trigger_host="za-web-2",
                       trigger=f"sed -i /za-web-2/d hosts.txt && rm -rf .conveyor/hosts/{gone} && exit 1")
    fleet.write_artifact("1")
    result = fleet.json("deploy", "production", "--yes")
    assert result["status"] == "succeeded", result
    assert result["failed_hosts"] == []
    by_host = {h["host"]: h for h in result["regions"]["za"]["hosts"]}
    assert by_host["za-web-2"]["status"] == "left"
    assert "left the inventory" in by_host["za-web-2"]["note"]
    assert current(fleet, "za-web-1") == current(fleet, "za-web-3") == result["release"]


def test_a_host_that_fails_and_is_still_listed_is_a_failure(make_fleet: Any) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2", "za-web-3"], trigger_host="za-web-2", trigger="exit 1")
    fleet.write_artifact("1")
    result = fleet.json("deploy", "production", "--yes", expect=1)
    assert result["status"] == "rolled_back", result
    assert result["failed_hosts"] == ["za-web-2"]


def recorded(fleet: Any, deployment_id: int) -> dict[str, tuple[str, str | None]]:
    """host → (status, release) as the history of a deployment has them."""
    detail = fleet.json("history", "--id", str(deployment_id))
    return {h["host"]: (h["status"], h["release"]) for h in detail["hosts"]}


def test_a_host_whose_restart_fails_as_it_leaves_the_inventory_is_switched_back_and_recorded_so(
        make_fleet: Any) -> None:
    # The autoscaler drops za-web-2 from the inventory as its restart fails; the instance is still there.
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2", "za-web-3"], trigger_host="za-web-2",
                       trigger="sed -i /za-web-2/d hosts.txt && exit 1")
    (fleet.root / "triggered").touch()  # the first deploy goes through
    fleet.write_artifact("1")
    r1 = fleet.json("deploy", "production", "--yes")["release"]
    (fleet.root / "triggered").unlink()
    fleet.write_artifact("2")
    result = fleet.json("deploy", "production", "--yes")
    r2 = result["release"]
    assert result["status"] == "succeeded", result
    # The host no longer serves the release that failed on it, and the history says what it runs.
    assert current(fleet, "za-web-2") == r1
    assert recorded(fleet, result["id"])["za-web-2"] == ("left", r1)
    by_host = {h["host"]: h for h in result["regions"]["za"]["hosts"]}
    assert (by_host["za-web-2"]["status"], by_host["za-web-2"]["release"]) == ("left", r1)
    assert "switched back" in by_host["za-web-2"]["note"], by_host["za-web-2"]
    assert current(fleet, "za-web-1") == current(fleet, "za-web-3") == r2


def test_a_host_that_joins_then_fails_and_leaves_during_catch_up_is_switched_back(make_fleet: Any) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2"], trigger_host="za-web-1",
                       trigger="echo web za-web-4 >> hosts.txt")
    restart = fleet.settings["roles"]["web"]["restart"]
    fleet.settings["roles"]["web"]["restart"] = restart + (
        'if [ "$CONVEYOR_HOST" = za-web-4 ]; then sed -i /za-web-4/d "$CONFIG_DIR/hosts.txt"; exit 1; fi\n')
    fleet.write_config()
    fleet.write_artifact("1")
    result = fleet.json("deploy", "production", "--yes")
    assert result["status"] == "succeeded", result
    assert current(fleet, "za-web-4") is None  # a first deploy switched back: no release at all
    assert recorded(fleet, result["id"])["za-web-4"] == ("left", None)


def test_without_switching_back_a_failed_host_that_left_is_recorded_on_the_release_it_runs(make_fleet: Any) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2", "za-web-3"], trigger_host="za-web-2",
                       trigger="sed -i /za-web-2/d hosts.txt && exit 1", on_failure="halt")
    (fleet.root / "triggered").touch()  # the first deploy goes through
    fleet.write_artifact("1")
    r1 = fleet.json("deploy", "production", "--yes")["release"]
    (fleet.root / "triggered").unlink()
    fleet.write_artifact("2")
    result = fleet.json("deploy", "production", "--yes")
    r2 = result["release"]
    assert r2 != r1
    assert current(fleet, "za-web-2") == r2  # on_failure: halt leaves it where it failed ...
    assert recorded(fleet, result["id"])["za-web-2"] == ("left", r2)  # ... and the history says so


# -- converge -----------------------------------------------------------------------------------------------
def converge(fleet: Any, root: Path, host: str = "za-web-9", expect: int = 0, **env: str) -> Any:
    import subprocess

    done = subprocess.run(fleet.command("converge", "--env", "production", "--region", "za", "--role", "web",
                                        "--host", host, "--root", str(root), "--json"),
                          capture_output=True, text=True, env=fleet.env_vars() | env, cwd=fleet.root, timeout=60,
                          check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == expect, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_a_new_host_converges_on_its_regions_release_and_again_changes_nothing(make_fleet: Any,
                                                                             tmp_path: Path) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1"])
    machine = tmp_path / "new-machine"
    # Nothing deployed yet: nothing to install, and that is not an error at boot.
    first = converge(fleet, machine)
    assert (first["status"], first["release"]) == ("no_pointer", None)

    fleet.write_artifact("1")
    r1 = fleet.json("deploy", "production", "--yes")["release"]
    pointer = json.loads((fleet.root / ".conveyor" / "artifacts" / "pointers" / "production" / "za.json")
                         .read_text())
    assert pointer["release"] == r1
    # The new host needs the artifact store only: a state store it cannot reach is never touched.
    unreachable = {"CONVEYOR_STATE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = converge(fleet, machine, **unreachable)
    assert (done["status"], done["release"]) == ("converged", r1), done
    deploy_to = machine / "srv" / "shop"
    assert os.readlink(deploy_to / "current") == f"releases/{r1}"
    assert (deploy_to / "serving").read_text() == f"{r1} za-web-9\n"  # restarted with its role's restart
    assert (deploy_to / "releases" / r1 / "VERSION").read_text() == "1\n"
    assert converge(fleet, machine, **unreachable)["status"] == "unchanged"

    fleet.write_artifact("2")
    r2 = fleet.json("deploy", "production", "--yes")["release"]
    later = converge(fleet, machine, **unreachable)
    assert (later["status"], later["release"]) == ("converged", r2)
    assert os.readlink(deploy_to / "current") == f"releases/{r2}"
    journal = [json.loads(line) for line in (deploy_to / ".conveyor" / "journal.jsonl").read_text().splitlines()]
    assert (journal[-1]["event"], journal[-1]["release"], journal[-1]["previous"]) == ("ready", r2, r1)


def test_converge_refuses_a_release_whose_tarball_is_not_what_the_pointer_says(make_fleet: Any,
                                                                              tmp_path: Path) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1"])
    fleet.write_artifact("1")
    r1 = fleet.json("deploy", "production", "--yes")["release"]
    pointer_file = fleet.root / ".conveyor" / "artifacts" / "pointers" / "production" / "za.json"
    pointer = json.loads(pointer_file.read_text())
    pointer_file.write_text(json.dumps({**pointer, "sha256": "0" * 64}))
    import subprocess

    done = subprocess.run(fleet.command("converge", "--env", "production", "--region", "za", "--role", "web",
                                        "--root", str(tmp_path / "m")),
                          capture_output=True, text=True, env=fleet.env_vars(), cwd=fleet.root, timeout=60,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert f"the pointer of production/za says {r1} has sha256 {'0' * 64}" in done.stderr
    assert not (tmp_path / "m" / "srv" / "shop" / "current").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "nowhere", "--region", "za", "--role", "web"], "unknown environment 'nowhere'"),
    (["--env", "production", "--region", "mars", "--role", "web"], "unknown region 'mars'"),
    (["--env", "production", "--region", "za", "--role", "db"], "unknown role 'db'"),
    (["--env", "production", "--region", "za", "--role", "web", "--host", "a b;rm"], "--host 'a b;rm'"),
])
def test_converge_names_what_is_wrong_with_its_arguments(make_fleet: Any, tmp_path: Path, args: list[str],
                                                         message: str) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1"])
    result = fleet.run("converge", *args, "--root", str(tmp_path / "m"), expect=2)
    assert message in result.stderr


# -- transfer: pull -----------------------------------------------------------------------------------------
def test_hosts_pull_the_release_themselves_and_verify_it(make_fleet: Any) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2"], transfer="pull")
    fleet.write_artifact("1")
    result = fleet.json("deploy", "production", "--yes")
    assert result["status"] == "succeeded", result
    for host in result["regions"]["za"]["hosts"]:
        assert host["transfer"] == "pulled by the host", host
        assert current(fleet, host["host"]) == result["release"]


def test_a_pulled_tarball_that_is_not_the_release_is_refused_and_nothing_switches(make_fleet: Any) -> None:
    fleet = autoscaled(make_fleet, ["za-web-1", "za-web-2"], transfer="pull")
    fleet.write_artifact("1")
    release = fleet.json("build")["id"]
    # The controller verified its copy when it was built; what the hosts download is damaged afterwards.
    tarball = next((fleet.root / ".conveyor" / "artifacts").glob(f"{release}.tar*"))
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))
    result = fleet.json("deploy", "production", "--release", release, "--yes", expect=1)
    assert result["status"] == "rolled_back", result
    canary = result["regions"]["za"]["hosts"][0]
    assert canary["step"] in ("verify", "unpack"), canary
    assert current(fleet, "za-web-1") is None
    assert current(fleet, "za-web-2") is None
