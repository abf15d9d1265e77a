"""`inventory:` in conveyor.yml: the shapes that parse, and every mistake as `FILE:LINE: field.path: message`.

Each error case is the `ca` region of a small config (line 8 onwards) and the exact lines `conveyor validate`
would print.
"""

from __future__ import annotations

import textwrap

import pytest

from conveyor.config.loader import parse_config
from conveyor.config.models import Config
from conveyor.errors import ConfigError

FILE = "conveyor.yml"
HEAD = """\
app: www
roles: {web: {}, batch: {}}
environments:
  production:
    regions:
      uk: {hosts: {web: [uk-web-1]}}
      ca:
"""
AT = "conveyor.yml:8: environments.production.regions.ca"


def text(region: str) -> str:
    return HEAD + textwrap.indent(textwrap.dedent(region), " " * 8)


def problems(region: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text(region), FILE, env={})
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def parse(region: str) -> Config:
    config, _ = parse_config(text(region), FILE, env={})
    return config


ERROR_CASES = [
    ("inventory: {}", [f"{AT}.inventory: an inventory needs command: TEXT or aws: {{region, groups or tags}}"]),
    ("inventory: ./inventory.sh", [f"{AT}.inventory: expected a mapping, got text './inventory.sh'"]),
    ("inventory: {command: ./inventory.sh, aws: {region: eu-west-2, groups: {web: www-web}}}",
     [f"{AT}.inventory: an inventory is one of command: or aws:, not both"]),
    ("inventory: {command: ''}", [f"{AT}.inventory.command: must not be empty"]),
    ("inventory: {command: ./inventory.sh, timeout: 0}",
     [f"{AT}.inventory.timeout: a timeout must be more than zero, like 30s"]),
    ("inventory: {command: ./inventory.sh, timeout: soon}",
     [f"{AT}.inventory.timeout: expected a duration like 30s, 5m or 1h, got 'soon'"]),
    ("inventory: {command: ./inventory.sh, colour: blue}", [f"{AT}.inventory.colour: unknown field"]),
    ("inventory: {aws: {region: London, groups: {web: www-web}}}",
     [f"{AT}.inventory.aws.region: expected an AWS region like eu-west-2, got 'London'"]),
    ("inventory: {aws: {region: eu-west-2}}",
     [f"{AT}.inventory.aws: an aws inventory needs groups: {{role: ASG name}} or tags: {{role: {{Tag: value}}}}"]),
    ("inventory: {aws: {groups: {web: www-web}}}", [f"{AT}.inventory.aws.region: required field is missing"]),
    ("inventory: {aws: {region: eu-west-2, groups: {wbe: www-web}, tags: {db: {Role: db}}}}",
     [f"{AT}.inventory.aws.groups.wbe: unknown role 'wbe'; known: web, batch",
      f"{AT}.inventory.aws.tags.db: unknown role 'db'; known: web, batch"]),
    ("inventory: {aws: {region: eu-west-2, groups: {web: []}, tags: {batch: {}}}}",
     [f"{AT}.inventory.aws.groups.web: must not be empty", f"{AT}.inventory.aws.tags.batch: must not be empty"]),
    ("inventory: {aws: {region: eu-west-2, groups: {web: [www-web, 3]}}}",
     [f"{AT}.inventory.aws.groups.web.1: expected text, got number 3"]),
    ("inventory: {aws: {region: eu-west-2, tags: {web: {Tier: 1}}}}",
     [f"{AT}.inventory.aws.tags.web.Tier: expected text, got number 1"]),
    ("inventory: {aws: {region: eu-west-2, groups: {web: www-web}, address: internal}}",
     [f"{AT}.inventory.aws.address: expected 'private' or 'public', got text 'internal'"]),
    ("inventory: {aws: {region: eu-west-2, groups: {web: www-web}, endpoint_url: 'localhost:5000'}}",
     [f"{AT}.inventory.aws.endpoint_url: expected an http:// or https:// URL, got 'localhost:5000'"]),
    ("inventory: {aws: {region: eu-west-2, groups: {web: www-web}, name_tag: '', retries: -1, vpc: x}}",
     [f"{AT}.inventory.aws.name_tag: must not be empty", f"{AT}.inventory.aws.retries: must be at least 0, got -1",
      f"{AT}.inventory.aws.vpc: unknown field"]),
    # Without an inventory a region still needs hosts of its own.
    ("{}", ["conveyor.yml:7: environments.production.regions.ca.hosts: a region needs at least one host"]),
    ("inventory: null", ["conveyor.yml:7: environments.production.regions.ca.hosts: a region needs at least one host"]),
]


@pytest.mark.parametrize(("region", "expected"), ERROR_CASES, ids=[c[0][:60] for c in ERROR_CASES])
def test_inventory_config_errors(region: str, expected: list[str]) -> None:
    assert problems(region) == expected


def test_a_region_may_have_only_an_inventory_with_the_defaults() -> None:
    region = parse("inventory: {command: ./inventory.sh ca}").environments["production"].regions["ca"]
    assert region.hosts == {}
    assert region.inventory is not None
    assert (region.inventory.command, region.inventory.timeout, region.inventory.aws) == ("./inventory.sh ca", 30.0,
                                                                                          None)
    assert region.inventory.describe() == "command './inventory.sh ca'"


def test_a_region_may_list_hosts_and_have_an_inventory() -> None:
    region = parse("""\
        hosts: {batch: [ca-batch-1]}
        inventory: {command: ./inventory.sh, timeout: 1m30s}
        """).environments["production"].regions["ca"]
    assert [h.name for h in region.hosts["batch"]] == ["ca-batch-1"]
    assert region.inventory is not None
    assert region.inventory.timeout == 90.0


def test_an_aws_inventory_with_every_setting() -> None:
    region = parse("""\
        inventory:
          timeout: 10s
          aws:
            region: eu-west-2
            groups: {web: www-web, batch: [www-batch-a, www-batch-b]}
            tags: {web: {Role: web, Env: prod}}
            address: public
            name_tag: Name
            endpoint_url: http://127.0.0.1:5000
            profile: production
            retries: 0
        """).environments["production"].regions["ca"]
    inventory = region.inventory
    assert inventory is not None
    aws = inventory.aws
    assert aws is not None
    assert aws.groups == {"web": ["www-web"], "batch": ["www-batch-a", "www-batch-b"]}
    assert aws.tags == {"web": {"Role": "web", "Env": "prod"}}
    assert (aws.address, aws.name_tag, aws.endpoint_url, aws.profile, aws.retries) == (
        "public", "Name", "http://127.0.0.1:5000", "production", 0)
    assert inventory.timeout == 10.0
    assert inventory.describe() == "aws eu-west-2"


def test_aws_defaults() -> None:
    inventory = parse("inventory: {aws: {region: us-gov-west-1, tags: {web: {Role: web}}}}") \
        .environments["production"].regions["ca"].inventory
    assert inventory is not None
    assert inventory.aws is not None
    assert (inventory.aws.address, inventory.aws.name_tag, inventory.aws.retries, inventory.aws.groups) == (
        "private", None, 2, {})


def test_the_schema_describes_inventories() -> None:
    schema = Config.model_json_schema()
    assert set(schema["$defs"]["Inventory"]["properties"]) == {"command", "aws", "timeout"}
    assert {"region", "groups", "tags", "address", "name_tag", "endpoint_url", "profile", "retries"} == set(
        schema["$defs"]["AwsInventory"]["properties"])
