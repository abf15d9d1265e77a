"""The AWS provider: running EC2 instances, by Auto Scaling group or by tags, found with boto3.

boto3 loads only when an aws inventory is read (it is the optional extra `conveyor-deploy[aws]`), and
finds credentials the boto3 way: environment, `profile:`, ~/.aws, an instance or task role.

- `groups: {web: [www-web]}`: the InService instances of those Auto Scaling groups. A group that does not
  exist is an error (a typo would otherwise deploy to nobody); a group with no InService instance gives none.
- `tags: {web: {Role: web, Env: prod}}`: running instances that have every one of those tags.

A host is named by its instance id, or by the value of `name_tag:` made safe as a host name (characters
other than letters, digits, '.', '_', '-' become '-'); instances that share a name (an Auto Scaling group
tags every instance alike) are told apart by their instance id: `www-web-i-0abc...`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from conveyor.config.models import HOST_NAME_RE, AwsInventory, HostSpec
from conveyor.inventory.base import InventoryProblem, Scope
from conveyor.inventory.host import Host

FILTER_VALUES = 200  # EC2 takes at most this many values in one filter
MAX_CONNECT_TIMEOUT = 10.0
ASG_TAG = "aws:autoscaling:groupName"
MAX_MESSAGE = 400
INSTALL_HINT = "pip install 'conveyor-deploy[aws]'"


@dataclass(frozen=True)
class Instance:
    """What we keep of one EC2 instance."""

    id: str
    role: str
    private_ip: str | None
    public_ip: str | None
    zone: str | None
    type: str | None
    tags: dict[str, str]
    group: str | None

    def labels(self) -> dict[str, str]:
        """The host labels: instance id, availability zone, instance type, Auto Scaling group."""
        labels = {"instance_id": self.id, "availability_zone": self.zone, "instance_type": self.type,
                  "autoscaling_group": self.group or self.tags.get(ASG_TAG)}
        return {key: value for key, value in labels.items() if value}


@dataclass(frozen=True)
class AwsProvider:
    """Hosts from EC2: `inventory: {aws: {region: eu-west-2, groups: {web: www-web}}}`."""

    settings: AwsInventory
    timeout: float = 30.0

    def describe(self) -> str:
        """What the provider is, for messages."""
        where = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        return f"aws {self.settings.region}{where}"

    def hosts(self, scope: Scope) -> list[Host]:
        """Ask EC2 (and Auto Scaling) for the region's running instances, role by role."""
        boto3, config_class, errors = _load_boto3()
        settings = self.settings
        try:
            session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
            config = config_class(connect_timeout=min(self.timeout, MAX_CONNECT_TIMEOUT), read_timeout=self.timeout,
                                  retries={"max_attempts": settings.retries + 1, "mode": "standard"})
            ec2 = session.client("ec2", endpoint_url=settings.endpoint_url, config=config)
            autoscaling = session.client("autoscaling", endpoint_url=settings.endpoint_url, config=config) \
                if settings.groups else None
            instances = list(self._instances(scope, ec2, autoscaling))
        except errors as exc:
            raise InventoryProblem(explain(exc)) from exc
        return self._hosts(scope, instances)

    def _instances(self, scope: Scope, ec2: Any, autoscaling: Any) -> Iterator[Instance]:
        for role in scope.roles:
            found: dict[str, Instance] = {}
            names = self.settings.groups.get(role)
            if names:
                members = _group_members(autoscaling, names)
                for chunk in _chunks(sorted(members), FILTER_VALUES):
                    for item in _running(ec2, [{"Name": "instance-id", "Values": chunk}]):
                        found[item["InstanceId"]] = _instance(item, role, members.get(item["InstanceId"]))
            wanted = self.settings.tags.get(role)
            if wanted:
                filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in wanted.items()]
                for item in _running(ec2, filters):
                    found.setdefault(item["InstanceId"], _instance(item, role, None))
            yield from found.values()

    def _hosts(self, scope: Scope, instances: list[Instance]) -> list[Host]:
        names = {item.id: self._name(item) for item in instances}
        shared = {name for name, count in Counter(names.values()).items() if count > 1}
        hosts: list[Host] = []
        for item in instances:
            name = names[item.id]
            if name in shared and name != item.id:
                name = f"{name}-{item.id}"
            address = item.private_ip if self.settings.address == "private" else item.public_ip
            if not address:
                raise InventoryProblem(f"instance {item.id} ({item.role}) has no {self.settings.address} IP address"
                                       + ("; use address: private" if self.settings.address == "public" else ""))
            try:
                spec = HostSpec(name=name, address=address, labels=item.labels())
            except ValidationError as exc:
                raise InventoryProblem(f"instance {item.id} ({item.role}): {exc.errors()[0]['msg']}") from None
            hosts.append(scope.host(item.role, spec))
        # Stable order within a role, whatever order AWS answers in: the canary is the same host each time.
        order = {role: index for index, role in enumerate(scope.roles)}
        return sorted(hosts, key=lambda h: (order[h.role], h.name))

    def _name(self, item: Instance) -> str:
        if self.settings.name_tag is None:
            return item.id
        return host_name_from_tag(item.tags.get(self.settings.name_tag, "")) or item.id


def host_name_from_tag(value: str) -> str | None:
    """A tag's value made safe as a host name (`www web #3` → `www-web-3`), or None if nothing is left."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-._")[:200].strip("-._")
    return name if name and HOST_NAME_RE.match(name) else None


def _load_boto3() -> tuple[Any, Any, tuple[type[Exception], ...]]:
    """boto3, botocore's Config, and the errors it raises; a clear message when it is not installed."""
    try:
        import boto3
        import boto3.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise InventoryProblem(f"an aws inventory needs boto3, which is not installed: {INSTALL_HINT}") from None
    return boto3, Config, (BotoCoreError, ClientError)


def explain(exc: Exception) -> str:
    """A botocore error in plain words: the operation, AWS's error code and its message."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response.get("Error") or {}
        operation = getattr(exc, "operation_name", "the request")
        return f"{operation} failed: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    if type(exc).__name__ == "NoCredentialsError":
        return ("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "give profile: in the inventory, or run with an instance or task role)")
    text = str(exc) or type(exc).__name__
    # Some botocore errors quote a whole response body (an HTML error page from a proxy, say).
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"


def _group_members(autoscaling: Any, names: list[str]) -> dict[str, str]:
    """instance id → group name of the InService instances of the named Auto Scaling groups."""
    members: dict[str, str] = {}
    seen: set[str] = set()
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(AutoScalingGroupNames=names)
    for page in pages:
        for group in page.get("AutoScalingGroups", []):
            seen.add(group["AutoScalingGroupName"])
            for instance in group.get("Instances", []):
                if instance.get("LifecycleState") == "InService":
                    members[instance["InstanceId"]] = group["AutoScalingGroupName"]
    missing = [name for name in names if name not in seen]
    if missing:
        raise InventoryProblem(f"no Auto Scaling group named {', '.join(repr(n) for n in missing)}")
    return members


def _running(ec2: Any, filters: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Running instances matching every filter."""
    filters = [*filters, {"Name": "instance-state-name", "Values": ["running"]}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            yield from reservation.get("Instances", [])


def _instance(item: dict[str, Any], role: str, group: str | None) -> Instance:
    return Instance(
        id=item["InstanceId"], role=role,
        private_ip=item.get("PrivateIpAddress"), public_ip=item.get("PublicIpAddress"),
        zone=(item.get("Placement") or {}).get("AvailabilityZone"), type=item.get("InstanceType"),
        tags={tag["Key"]: tag["Value"] for tag in item.get("Tags", []) if "Key" in tag},
        group=group,
    )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
