"""The aws inventory provider against a real EC2 and Auto Scaling API: moto's server on 127.0.0.1.

Each test makes its own VPC, subnet, instances and groups, and tags them with its own mark, so tests that
share the session's server do not see each other's instances. Hosts are read as a deployment reads them:
`Workspace.hosts` on a conveyor.yml whose region has `inventory: {aws: {..., endpoint_url: <moto>}}`.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.errors import InventoryError
from conveyor.inventory import Host
from conveyor.operations.workspace import Workspace

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
ZONE = "eu-west-2a"


@dataclass
class Cloud:
    """One test's corner of the fake AWS: a subnet to launch into and a mark to tag with."""

    url: str
    ec2: Any
    autoscaling: Any
    subnet: str
    image: str
    mark: str

    def launch(self, count: int = 1, *, public: bool = False, **tags: str) -> list[str]:
        """Start instances with these tags; their ids."""
        spec: dict[str, Any] = {"ImageId": self.image, "MinCount": count, "MaxCount": count,
                                "InstanceType": "t3.micro"}
        if public:
            spec["NetworkInterfaces"] = [{"DeviceIndex": 0, "SubnetId": self.subnet, "AssociatePublicIpAddress": True}]
        else:
            spec["SubnetId"] = self.subnet
        if tags:
            spec["TagSpecifications"] = [{"ResourceType": "instance",
                                          "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        return [i["InstanceId"] for i in self.ec2.run_instances(**spec)["Instances"]]

    def group(self, name: str, capacity: int, **tags: str) -> list[str]:
        """An Auto Scaling group of `capacity` instances from its own launch template; its instance ids."""
        template = f"lt-{name}"
        self.ec2.create_launch_template(LaunchTemplateName=template,
                                        LaunchTemplateData={"ImageId": self.image, "InstanceType": "t3.small"})
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
            MinSize=0, MaxSize=10, DesiredCapacity=capacity, VPCZoneIdentifier=self.subnet,
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()])
        (found,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return [i["InstanceId"] for i in found["Instances"]]

    def instance(self, instance_id: str) -> dict[str, Any]:
        """What EC2 says about one instance."""
        (reservation,) = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return dict(reservation["Instances"][0])


@pytest.fixture
def cloud(moto_endpoint: str) -> Cloud:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION)
    autoscaling = boto3.client("autoscaling", endpoint_url=moto_endpoint, region_name=REGION)
    # One of the images moto knows (listing all of them takes a second: ask for a few by name first).
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}])
    image = (images["Images"] or ec2.describe_images(Owners=["amazon"])["Images"])[0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24", AvailabilityZone=ZONE)["Subnet"]["SubnetId"]
    return Cloud(moto_endpoint, ec2, autoscaling, subnet, image, uuid.uuid4().hex[:10])


def read(tmp_path: Path, cloud: Cloud, timeout: str = "10s", **aws: Any) -> list[Host]:
    """The hosts of region `uk` whose inventory is `aws:` with these settings (and moto's endpoint)."""
    settings = {
        "app": "www",
        "roles": {"web": {}, "batch": {}},
        "environments": {"production": {"regions": {"uk": {"inventory": {
            "timeout": timeout,
            "aws": {"region": REGION, "endpoint_url": cloud.url, **aws},
        }}}}},
    }
    path = tmp_path / "conveyor.yml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return Workspace.load(path).hosts("production")["uk"]


def failure(tmp_path: Path, cloud: Cloud, **aws: Any) -> str:
    with pytest.raises(InventoryError) as info:
        read(tmp_path, cloud, **aws)
    assert (info.value.environment, info.value.region) == ("production", "uk")
    assert info.value.exit_code == 1
    return info.value.message


def test_hosts_are_in_service_group_members_and_running_instances_with_every_tag(tmp_path: Path, cloud: Cloud) -> None:
    group = f"www-web-{cloud.mark}"
    web = cloud.group(group, 3)
    # A member taken out of service (for a look, or on its way out) is not deployed to.
    cloud.autoscaling.enter_standby(AutoScalingGroupName=group, InstanceIds=[web[0]],
                                    ShouldDecrementDesiredCapacity=True)
    batch = cloud.launch(4, Role="batch", Stack=cloud.mark)
    cloud.ec2.stop_instances(InstanceIds=[batch[1]])
    cloud.ec2.terminate_instances(InstanceIds=[batch[2]])
    cloud.launch(1, Role="batch", Stack="someone-else")   # one tag of two matches: not ours
    cloud.launch(1, Role="web", Stack=cloud.mark)          # web is found by group, not by tags

    hosts = read(tmp_path, cloud, groups={"web": group}, tags={"batch": {"Role": "batch", "Stack": cloud.mark}})

    in_service = sorted(web[1:])
    running = sorted([batch[0], batch[3]])
    assert [(h.role, h.name) for h in hosts] == [("web", i) for i in in_service] + [("batch", i) for i in running]
    for host in hosts:
        described = cloud.instance(host.name)
        assert described["State"]["Name"] == "running"
        assert (host.address, host.environment, host.region) == (described["PrivateIpAddress"], "production", "uk")
        assert host.labels["instance_id"] == host.name
        assert host.labels["availability_zone"] == ZONE
        assert host.labels["instance_type"] == ("t3.small" if host.role == "web" else "t3.micro")
        assert host.labels.get("autoscaling_group") == (group if host.role == "web" else None)


def test_a_name_tag_names_hosts_safely_and_instances_sharing_a_name_are_told_apart(tmp_path: Path,
                                                                                   cloud: Cloud) -> None:
    group = f"www-web-{cloud.mark}"
    web = cloud.group(group, 2, Name="www-web")   # an Auto Scaling group tags every instance alike
    (hostile,) = cloud.launch(1, Role="batch", Stack=cloud.mark, Name="www batch #1; reboot")
    (junk,) = cloud.launch(1, Role="batch", Stack=cloud.mark, Name="$(((")
    (unnamed,) = cloud.launch(1, Role="batch", Stack=cloud.mark)

    hosts = read(tmp_path, cloud, groups={"web": [group]}, tags={"batch": {"Stack": cloud.mark}}, name_tag="Name")

    assert {h.name: h.labels["instance_id"] for h in hosts} == {
        **{f"www-web-{i}": i for i in web},
        "www-batch-1-reboot": hostile,
        junk: junk,          # nothing usable left of the tag: the instance id
        unnamed: unnamed,
    }


def test_public_addresses_are_used_when_asked_and_an_instance_without_one_is_an_error(tmp_path: Path,
                                                                                       cloud: Cloud) -> None:
    (public,) = cloud.launch(1, public=True, Role="web", Stack=cloud.mark)
    (host,) = read(tmp_path, cloud, tags={"web": {"Stack": cloud.mark}}, address="public")
    assert host.address == cloud.instance(public)["PublicIpAddress"]
    assert host.address != cloud.instance(public)["PrivateIpAddress"]

    (private,) = cloud.launch(1, Role="web", Stack=cloud.mark)
    assert failure(tmp_path, cloud, tags={"web": {"Stack": cloud.mark}}, address="public") == (
        f"inventory of production/uk (aws {REGION} at {cloud.url}): instance {private} (web) has no public IP "
        "address; use address: private")


def test_a_group_that_does_not_exist_is_an_error_and_an_empty_group_is_no_hosts(tmp_path: Path,
                                                                                cloud: Cloud) -> None:
    empty = f"www-web-{cloud.mark}"
    cloud.group(empty, 0)
    assert read(tmp_path, cloud, groups={"web": empty}) == []
    # A typo must not deploy to nobody and call it a success.
    assert failure(tmp_path, cloud, groups={"web": [empty, "www-wbe"]}) == (
        f"inventory of production/uk (aws {REGION} at {cloud.url}): no Auto Scaling group named 'www-wbe'")


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so no one else takes it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_an_endpoint_that_does_not_answer_fails_fast(tmp_path: Path, cloud: Cloud, refusing_port: int) -> None:
    cloud.url = f"http://127.0.0.1:{refusing_port}"
    started = time.monotonic()
    message = failure(tmp_path, cloud, groups={"web": "www-web"}, retries=0)
    assert time.monotonic() - started < 10
    assert message == (f"inventory of production/uk (aws {REGION} at {cloud.url}): Could not connect to the endpoint "
                       f'URL: "{cloud.url}/"')


def test_missing_credentials_are_reported_plainly(tmp_path: Path, cloud: Cloud,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # No keys in the environment; the session's settings keep boto3 off profiles and instance metadata.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert failure(tmp_path, cloud, tags={"web": {"Stack": cloud.mark}}).endswith(
        "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, give profile: in the "
        "inventory, or run with an instance or task role)")


def test_an_unknown_profile_is_reported(tmp_path: Path, cloud: Cloud) -> None:
    assert failure(tmp_path, cloud, tags={"web": {"Stack": cloud.mark}}, profile="nope").endswith(
        ": The config profile (nope) could not be found")


def test_an_aws_error_is_quoted_with_its_operation_and_code() -> None:
    from botocore.exceptions import ClientError

    from conveyor.inventory.aws import explain

    error = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized to perform "
                                   "this operation."}}, "DescribeInstances")
    assert explain(error) == ("DescribeInstances failed: UnauthorizedOperation: You are not authorized to perform "
                              "this operation.")
