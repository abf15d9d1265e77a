"""Plans: how a role's hosts split into batches, and which regions and roles move in which waves."""

from __future__ import annotations

import itertools

import pytest

from conveyor.config.loader import parse_config
from conveyor.config.models import Config
from conveyor.engine.plan import Batch, Plan, batches_for, make_plan
from conveyor.errors import UsageError
from conveyor.inventory import Host, static_hosts
from conveyor.values import parse_amount


def web_hosts(count: int) -> list[Host]:
    """`count` web hosts of one region, named in the order they are listed."""
    return [Host(f"web-{i:03d}", "production", "za", "web", f"10.0.0.{i}") for i in range(count)]


def expand(sizes: str) -> list[int]:
    """Batch sizes from a compact form: `2x3 1` is three batches of two, then one of one."""
    out: list[int] = []
    for word in sizes.split():
        size, _, times = word.partition("x")
        out += [int(size)] * int(times or 1)
    return out


def shape(batches: list[Batch]) -> str:
    """The sizes of `batches` as `CANARY | BATCH BATCH ...`, for readable failures."""
    canary = [str(len(b.hosts)) for b in batches if b.canary]
    rest = [str(len(b.hosts)) for b in batches if not b.canary]
    return f"{' '.join(canary)} | {' '.join(rest)}".strip()


# Batch sizes by hosts and canary (rows) and batch setting (columns). `C | B B ...` is a canary batch of C
# hosts followed by batches of B hosts; a percent is of the role's hosts, rounded down, and never below one
# host (a canary of 0 means no canary at all). Columns: batch 1, 2, 25%, 50%, 100%.
BATCH_SETTINGS = (1, 2, "25%", "50%", "100%")
SIZES: dict[tuple[int, int | str], tuple[str, str, str, str, str]] = {
    (1, 0): ("| 1", "| 1", "| 1", "| 1", "| 1"),
    (1, 1): ("1 |", "1 |", "1 |", "1 |", "1 |"),
    (1, 2): ("1 |", "1 |", "1 |", "1 |", "1 |"),
    (1, "10%"): ("1 |", "1 |", "1 |", "1 |", "1 |"),
    (2, 0): ("| 1x2", "| 2", "| 1x2", "| 1x2", "| 2"),
    (2, 1): ("1 | 1", "1 | 1", "1 | 1", "1 | 1", "1 | 1"),
    (2, 2): ("2 |", "2 |", "2 |", "2 |", "2 |"),
    (2, "10%"): ("1 | 1", "1 | 1", "1 | 1", "1 | 1", "1 | 1"),
    (3, 0): ("| 1x3", "| 2 1", "| 1x3", "| 1x3", "| 3"),
    (3, 1): ("1 | 1x2", "1 | 2", "1 | 1x2", "1 | 1x2", "1 | 2"),
    (3, 2): ("2 | 1", "2 | 1", "2 | 1", "2 | 1", "2 | 1"),
    (3, "10%"): ("1 | 1x2", "1 | 2", "1 | 1x2", "1 | 1x2", "1 | 2"),
    (4, 0): ("| 1x4", "| 2x2", "| 1x4", "| 2x2", "| 4"),
    (4, 1): ("1 | 1x3", "1 | 2 1", "1 | 1x3", "1 | 2 1", "1 | 3"),
    (4, 2): ("2 | 1x2", "2 | 2", "2 | 1x2", "2 | 2", "2 | 2"),
    (4, "10%"): ("1 | 1x3", "1 | 2 1", "1 | 1x3", "1 | 2 1", "1 | 3"),
    (10, 0): ("| 1x10", "| 2x5", "| 2x5", "| 5x2", "| 10"),
    (10, 1): ("1 | 1x9", "1 | 2x4 1", "1 | 2x4 1", "1 | 5 4", "1 | 9"),
    (10, 2): ("2 | 1x8", "2 | 2x4", "2 | 2x4", "2 | 5 3", "2 | 8"),
    (10, "10%"): ("1 | 1x9", "1 | 2x4 1", "1 | 2x4 1", "1 | 5 4", "1 | 9"),
    (100, 0): ("| 1x100", "| 2x50", "| 25x4", "| 50x2", "| 100"),
    (100, 1): ("1 | 1x99", "1 | 2x49 1", "1 | 25x3 24", "1 | 50 49", "1 | 99"),
    (100, 2): ("2 | 1x98", "2 | 2x49", "2 | 25x3 23", "2 | 50 48", "2 | 98"),
    (100, "10%"): ("10 | 1x90", "10 | 2x45", "10 | 25x3 15", "10 | 50 40", "10 | 90"),
}
SIZE_CASES = [
    pytest.param(hosts, canary, batch, expected, id=f"{hosts}-hosts-canary-{canary}-batch-{batch}")
    for (hosts, canary), row in SIZES.items()
    for batch, expected in zip(BATCH_SETTINGS, row, strict=True)
]


@pytest.mark.parametrize(("hosts", "canary", "batch", "expected"), SIZE_CASES)
def test_batch_sizes_follow_the_canary_and_batch_settings(hosts: int, canary: int | str, batch: int | str,
                                                          expected: str) -> None:
    batches = batches_for(web_hosts(hosts), parse_amount(canary), parse_amount(batch))
    canary_part, _, rest_part = expected.partition("|")
    want = " | ".join([canary_part.strip(), " ".join(map(str, expand(rest_part)))]).strip()
    assert shape(batches) == want


@pytest.mark.parametrize(("hosts", "canary", "batch"), [
    pytest.param(hosts, canary, batch, id=f"{hosts}-hosts-canary-{canary}-batch-{batch}")
    for hosts, canary, batch in itertools.product((1, 2, 3, 4, 10, 100), (0, 1, 2, "10%"), BATCH_SETTINGS)
])
def test_every_host_moves_exactly_once_in_listed_order_and_only_the_first_batch_is_a_canary(
        hosts: int, canary: int | str, batch: int | str) -> None:
    listed = web_hosts(hosts)
    batches = batches_for(listed, parse_amount(canary), parse_amount(batch))
    assert [host for b in batches for host in b.hosts] == listed
    assert [b.number for b in batches] == list(range(1, len(batches) + 1))
    assert all(b.hosts for b in batches)
    assert [b.canary for b in batches] == [canary != 0] + [False] * (len(batches) - 1)


def test_a_role_without_hosts_has_no_batches() -> None:
    assert batches_for([], parse_amount(1), parse_amount("25%")) == []


def test_a_canary_of_zero_percent_means_no_canary() -> None:
    batches = batches_for(web_hosts(4), parse_amount("0%"), parse_amount(2))
    assert shape(batches) == "| 2 2"


CONFIG = """\
app: www
roles:
  web: {restart: "true", canary: 1, batch: 2, max_failures: 1}
  batch: {restart: "true"}
  daemon: {restart: "true", max_failures: 25%}
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [stg-uk-web-1, stg-uk-web-2]}}
      za: {hosts: {batch: [stg-za-batch-1], web: [stg-za-web-1]}}
  production:
    waves: [[ca], [za], [uk, us]]
    regions:
      za:
        hosts:
          daemon: [za-d-1, za-d-2, za-d-3]
          batch: [za-batch-1]
          web: [za-web-1, za-web-2, za-web-3]
      uk: {hosts: {web: [uk-web-1, uk-web-2], daemon: [uk-d-1, uk-d-2, uk-d-3, uk-d-4]}}
      us: {hosts: {web: [us-web-1]}}
      ca: {hosts: {batch: [ca-batch-1]}}
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "conveyor.yml", env={})[0]


def names(plan: Plan) -> list[list[str]]:
    """The regions of each wave, by name."""
    return [[region.region for region in wave] for wave in plan.waves]


def test_without_waves_every_region_moves_in_one_wave_in_config_order(config: Config) -> None:
    plan = make_plan(config, "staging", static_hosts(config, "staging"))
    assert plan.environment == "staging"
    assert names(plan) == [["uk", "za"]]
    assert plan.skipped_regions == ()
    assert [h.name for h in plan.hosts] == ["stg-uk-web-1", "stg-uk-web-2", "stg-za-web-1", "stg-za-batch-1"]


def test_explicit_waves_move_in_the_order_they_are_written(config: Config) -> None:
    plan = make_plan(config, "production", static_hosts(config, "production"))
    assert names(plan) == [["ca"], ["za"], ["uk", "us"]]
    assert [h.region for h in plan.hosts] == ["ca"] + ["za"] * 7 + ["uk"] * 6 + ["us"]


def test_a_region_filter_keeps_wave_order_and_lists_the_regions_it_skips(config: Config) -> None:
    plan = make_plan(config, "production", static_hosts(config, "production"), regions=["us", "za"])
    assert names(plan) == [["za"], ["us"]]
    assert plan.skipped_regions == ("ca", "uk")


def test_a_region_filter_can_take_part_of_a_wave(config: Config) -> None:
    plan = make_plan(config, "production", static_hosts(config, "production"), regions=["uk"])
    assert names(plan) == [["uk"]]
    assert plan.skipped_regions == ("ca", "za", "us")


def test_a_role_filter_moves_only_those_roles(config: Config) -> None:
    plan = make_plan(config, "production", static_hosts(config, "production"), roles=["daemon"])
    assert names(plan) == [["za"], ["uk"]]
    assert {h.role for h in plan.hosts} == {"daemon"}
    assert [h.name for h in plan.hosts] == ["za-d-1", "za-d-2", "za-d-3", "uk-d-1", "uk-d-2", "uk-d-3", "uk-d-4"]


def test_roles_move_in_config_order_within_a_region_whatever_order_the_hosts_come_in(config: Config) -> None:
    hosts = {region: list(reversed(listed)) for region, listed in static_hosts(config, "production").items()}
    plan = make_plan(config, "production", hosts, regions=["za"], roles=["daemon", "web"])
    (za,) = plan.regions
    assert [role.role for role in za.roles] == ["web", "daemon"]
    assert [h.name for h in za.roles[0].hosts] == ["za-web-3", "za-web-2", "za-web-1"]


def test_static_hosts_list_a_region_role_by_role_in_config_order(config: Config) -> None:
    plan = make_plan(config, "production", static_hosts(config, "production"), regions=["za"])
    (za,) = plan.regions
    assert [role.role for role in za.roles] == ["web", "batch", "daemon"]
    assert [h.name for h in za.hosts] == ["za-web-1", "za-web-2", "za-web-3", "za-batch-1", "za-d-1", "za-d-2",
                                          "za-d-3"]


def test_each_role_of_a_region_starts_with_its_own_canary(config: Config) -> None:
    plan = make_plan(config, "production", static_hosts(config, "production"), regions=["za"])
    (za,) = plan.regions
    web, batch, daemon = za.roles
    assert [(len(b.hosts), b.canary) for b in web.batches] == [(1, True), (2, False)]
    assert [(len(b.hosts), b.canary) for b in batch.batches] == [(1, True)]
    assert [(len(b.hosts), b.canary) for b in daemon.batches] == [(1, True), (1, False), (1, False)]


@pytest.mark.parametrize(("call", "message"), [
    pytest.param({"regions": ["eu"]}, "unknown region 'eu' in production", id="region"),
    pytest.param({"roles": ["cron"]}, "unknown role 'cron'", id="role"),
    pytest.param({"regions": ["za", "eu"], "roles": ["web"]}, "unknown region 'eu'", id="one-of-several"),
])
def test_an_unknown_region_or_role_is_a_usage_error(config: Config, call: dict[str, list[str]],
                                                     message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_plan(config, "production", static_hosts(config, "production"), **call)


def test_an_unknown_environment_is_a_usage_error(config: Config) -> None:
    with pytest.raises(UsageError, match="unknown environment 'prod'"):
        make_plan(config, "prod", {})


def test_a_filter_that_matches_no_host_is_a_usage_error(config: Config) -> None:
    with pytest.raises(UsageError, match="nothing to do"):
        make_plan(config, "staging", static_hosts(config, "staging"), roles=["daemon"])


def test_max_failures_counts_hosts_of_the_role_in_that_region(config: Config) -> None:
    plan = make_plan(config, "production", static_hosts(config, "production"))
    tolerated = {(region.region, role.role): role.max_failures for region in plan.regions for role in region.roles}
    # daemon: 25% of 3 hosts in za rounds down to 0, of 4 hosts in uk to 1; web: a plain 1, batch: default 0.
    assert tolerated == {
        ("ca", "batch"): 0,
        ("za", "web"): 1, ("za", "batch"): 0, ("za", "daemon"): 0,
        ("uk", "web"): 1, ("uk", "daemon"): 1,
        ("us", "web"): 1,
    }


@pytest.mark.parametrize(("hosts", "max_failures", "expected"), [
    (3, "25%", 0),
    (4, "25%", 1),
    (7, "25%", 1),
    (8, "25%", 2),
    (3, "50%", 1),
    (3, "100%", 3),
    (3, "0%", 0),
    (3, 2, 2),
    (3, 5, 3),
])
def test_max_failures_percent_rounds_down(hosts: int, max_failures: int | str, expected: int) -> None:
    listed = ", ".join(f"d-{i}" for i in range(hosts))
    text = f"""\
app: www
roles:
  daemon: {{max_failures: {max_failures}}}
environments:
  production:
    regions:
      za: {{hosts: {{daemon: [{listed}]}}}}
"""
    config = parse_config(text, "conveyor.yml", env={})[0]
    plan = make_plan(config, "production", static_hosts(config, "production"))
    (role,) = plan.regions[0].roles
    assert role.max_failures == expected
