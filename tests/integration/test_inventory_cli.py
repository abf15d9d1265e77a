"""The real `conveyor` CLI with regions whose hosts come from an inventory: a command, or AWS (moto).

A failing inventory stops `plan` and `deploy` before anything changes: exit 1, the provider's own words,
no traceback, no host touched, nothing in the history.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SERVE = 'printf "%s %s\\n" "$CONVEYOR_RELEASE" "$CONVEYOR_HOST" > "$CONVEYOR_DEPLOY_TO/serving"'

# Prints two web hosts for the region it is given, unless `inventory.fail` exists beside the config.
INVENTORY = """\
#!/bin/sh
if [ -f inventory.fail ]; then
  echo "connecting to the CMDB..." >&2
  echo "cannot reach the CMDB for $1" >&2
  exit 2
fi
printf '{"web": ["%s-web-1", {"name": "%s-web-2", "labels": {"found-by": "%s"}}]}\\n' "$1" "$1" "$CONVEYOR_REGION"
"""


def settings(ca: dict[str, Any]) -> dict[str, Any]:
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "shared": ["log"],
        "roles": {"web": {"restart": SERVE, "canary": 1, "batch": 1}, "batch": {"restart": SERVE}},
        "environments": {"production": {"transport": "local", "waves": [["uk"], ["ca"]], "regions": {
            "uk": {"hosts": {"web": ["uk-web-1"]}},
            "ca": ca,
        }}},
    }


@pytest.fixture
def fleet(make_fleet: Any) -> Any:
    made = make_fleet(settings({"hosts": {"batch": ["ca-batch-1"]}, "inventory": {"command": "./inventory.sh ca"}}))
    script = made.root / "inventory.sh"
    script.write_text(INVENTORY)
    script.chmod(0o755)
    made.write_artifact("1")  # plan builds what deploy would ship
    return made


def plan_hosts(document: dict[str, Any]) -> dict[str, list[str]]:
    """region → the hosts a plan moves, in order."""
    out: dict[str, list[str]] = {}
    for wave in document["waves"]:
        for region in wave:
            out[region["region"]] = [h for role in region["roles"] for b in role["batches"] for h in b["hosts"]]
    return out


def test_plan_lists_the_hosts_a_command_inventory_finds_beside_the_listed_ones(fleet: Any) -> None:
    document = fleet.json("plan", "production")
    assert plan_hosts(document) == {"uk": ["uk-web-1"], "ca": ["ca-web-1", "ca-web-2", "ca-batch-1"]}
    assert document["hosts"] == 4
    text = fleet.run("plan", "production").stdout
    assert "ca-web-2" in text
    assert "4 host(s)" in text


def test_deploy_moves_the_hosts_the_inventory_finds(fleet: Any) -> None:
    release = fleet.build("1.0")
    result = fleet.deploy("production", release)
    assert result["status"] == "succeeded", result
    for host in ("ca-web-1", "ca-web-2", "ca-batch-1"):
        assert fleet.current("production", "ca", host) == release
        fleet.assert_complete("production", "ca", host, release)
    status = fleet.json("status", "production")["environments"]["production"]["regions"]["ca"]
    assert (status["release"], status["consistent"]) == (release, True)
    assert sorted(h["name"] for h in status["hosts"]) == ["ca-batch-1", "ca-web-1", "ca-web-2"]


MESSAGE = ("conveyor: inventory of production/ca (command './inventory.sh ca'): exited with status 2; its stderr "
           "ends:\nconveyor: connecting to the CMDB...\nconveyor: cannot reach the CMDB for ca\n")


def test_a_failing_inventory_stops_plan_and_deploy_before_anything_changes(fleet: Any) -> None:
    release = fleet.build("1.0")
    (fleet.root / "inventory.fail").write_text("")

    assert fleet.run("plan", "production", expect=1).stderr == MESSAGE
    assert fleet.run("deploy", "production", "--release", release, "--yes", expect=1).stderr == MESSAGE
    assert fleet.run("deploy", "production", "--yes", expect=1).stderr == MESSAGE  # before it would build
    document = fleet.json("deploy", "production", "--release", release, "--yes", expect=1)
    assert document == {"error": MESSAGE.replace("conveyor: ", "").rstrip("\n"), "exit_code": 1}

    # No host got anything, not even those of the first wave (uk) whose hosts are listed in the config.
    assert not (fleet.root / ".conveyor" / "hosts").exists()
    assert fleet.json("history")["deployments"] == []
    assert [r["id"] for r in fleet.json("releases")["releases"]] == [release]

    # Once the inventory answers again, the same deploy goes through.
    (fleet.root / "inventory.fail").unlink()
    assert fleet.deploy("production", release)["status"] == "succeeded"


def test_plan_and_deploy_with_an_aws_inventory(make_fleet: Any, moto_endpoint: str) -> None:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="eu-west-2")
    autoscaling = boto3.client("autoscaling", endpoint_url=moto_endpoint, region_name="eu-west-2")
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}])
    image = (images["Images"] or ec2.describe_images(Owners=["amazon"])["Images"])[0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.1.0/24", AvailabilityZone="eu-west-2b")["Subnet"]["SubnetId"]
    group = f"shop-web-{uuid.uuid4().hex[:10]}"
    ec2.create_launch_template(LaunchTemplateName=group, LaunchTemplateData={"ImageId": image})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group, LaunchTemplate={"LaunchTemplateName": group, "Version": "$Latest"},
        MinSize=0, MaxSize=4, DesiredCapacity=2, VPCZoneIdentifier=subnet)
    (described,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    members = sorted(i["InstanceId"] for i in described["Instances"])

    fleet = make_fleet(settings({"inventory": {"timeout": "10s", "aws": {
        "region": "eu-west-2", "groups": {"web": group}, "endpoint_url": moto_endpoint, "retries": 0}}}))
    fleet.write_artifact("1.0")
    assert plan_hosts(fleet.json("plan", "production"))["ca"] == members

    release = fleet.build("1.0")
    assert fleet.deploy("production", release)["status"] == "succeeded"
    assert {host: fleet.current("production", "ca", host) for host in members} == dict.fromkeys(members, release)

    # The group is gone: the next plan says so instead of planning for nobody.
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
    done = fleet.run("plan", "production", "--json", expect=1)
    assert json.loads(done.stdout)["error"].endswith(f"no Auto Scaling group named {group!r}")


def test_validate_counts_listed_hosts_and_names_the_regions_an_inventory_fills(fleet: Any) -> None:
    # validate never runs the inventory (it may be slow or need credentials): it says which regions use one.
    (fleet.root / "inventory.fail").touch()
    assert "1 region(s) whose hosts an inventory finds" in fleet.run("validate").stdout
    summary = fleet.json("validate")["environments"]["production"]
    assert (summary["hosts"], summary["inventories"]) == (2, ["ca"])
