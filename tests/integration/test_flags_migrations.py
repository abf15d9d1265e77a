"""Flags and schema migrations, against a real PostgreSQL (one database per region): a contract migration that
removes what a flag's off variant still needs waits until no environment serves that flag off."""

from __future__ import annotations

from typing import Any

import pytest
from test_migrations import MIGRATIONS, Shop, applied, columns, databases, settings

pytestmark = pytest.mark.integration
__all__ = ["databases"]  # the fixture: one PostgreSQL database per region

FLAGS = """\
flags:
  email-only:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
    requires: {migration: 0002_email}
    contract: 0003_drop_name
"""


@pytest.fixture
def shop(make_fleet: Any, databases: dict[str, str]) -> Shop:
    fleet = make_fleet(settings(flags={}))
    (fleet.root / "flags").mkdir()
    (fleet.root / "flags" / "flags.yaml").write_text(FLAGS, encoding="utf-8")
    return Shop(fleet, databases)


def test_the_contract_migration_waits_for_the_flag_and_the_flag_for_the_expand_migration(shop: Shop) -> None:
    r1 = shop.release("1", {k: v for k, v in MIGRATIONS.items() if k.startswith("0001")})
    shop.run("deploy", "production", "--release", r1, "--yes", "--json")
    refused = shop.run("flags", "set", "production", "email-only", "on", "--reason", "too soon", "--yes", expect=3)
    assert "email-only requires migration 0002_email, which is not applied there" in refused.stderr

    r2 = shop.release("2", MIGRATIONS)
    assert shop.run("deploy", "production", "--release", r2, "--yes", "--json")["status"] == "succeeded"
    r3 = shop.release("3", MIGRATIONS)
    held = shop.run("deploy", "production", "--release", r3, "--yes", expect=3)
    assert "0003_drop_name removes what flag email-only's off variant needs" in held.stderr
    assert "production/za" in held.stderr
    for url in shop.databases.values():
        assert columns(url) == ["id", "name", "email"]  # nothing ran
    assert shop.run("plan", "production", "--release", r3, "--json", expect=3)["holds"]["exit_code"] == 3

    on = shop.run("flags", "set", "production", "email-only", "on", "--reason", "0002 is everywhere", "--yes",
                  "--json")
    assert on["status"] == "succeeded", on
    third = shop.run("deploy", "production", "--release", r3, "--yes", "--json")
    assert third["status"] == "succeeded", third
    for url in shop.databases.values():
        assert columns(url) == ["id", "email"]
        assert applied(url) == ["0001_accounts.sql", "0002_email.sql", "contract/0003_drop_name.sql"]
