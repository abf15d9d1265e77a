"""One deployment at a time: two controllers (two `conveyor` processes) sharing a PostgreSQL state store.

Controller A deploys; while its canary restarts, its lock is made to look like an expired lease held on
another machine (the row's expiry moved into the database's past, as a controller that stopped renewing
leaves it). Controller B takes the lock over and deploys. A must notice before its next batch, change no
host after that, record nothing over B's record, end `interrupted` and say who took over, exit 3.

Every restart appends `release host` to one log beside the config, so the order of restarts across both
controllers is on record.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

HOSTS = ["za-web-1", "za-web-2", "za-web-3", "za-web-4"]
_databases = itertools.count(1)

# A restart logs what it starts; on a host holding `block-<release>-<host>` in the config directory it says
# it got there (`at-restart-...`) and waits for `go`.
RESTART = """\
printf '%s %s\\n' "$CONVEYOR_RELEASE" "$CONVEYOR_HOST" >> "$CONFIG_DIR/restarts.log"
if [ -e "$CONFIG_DIR/block-$CONVEYOR_RELEASE-$CONVEYOR_HOST" ]; then
  : > "$CONFIG_DIR/at-restart-$CONVEYOR_RELEASE-$CONVEYOR_HOST"
  while [ ! -e "$CONFIG_DIR/go" ]; do sleep 0.05; done
fi
"""


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own, on the session's server."""
    name = f"conveyor_lease_{next(_databases)}_{int(time.time() * 1000) % 100000}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
    return value


def expire_the_lease_as_if_held_elsewhere(url: str) -> None:
    """Make production's lock look like another machine's whose lease has run out: its expiry one second in
    the database's past (in the form every time is stored in)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        changed = conn.exec_driver_sql(
            "UPDATE locks SET machine = 'controller-a.elsewhere', expires_at = to_char("
            "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC') - interval '1 second', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"') WHERE environment = 'production'").rowcount
    engine.dispose()
    assert changed == 1


def test_a_deployment_whose_lease_is_taken_over_stops_before_its_next_batch_and_says_who_took_it(
        make_fleet: Any, database: str) -> None:
    fleet = make_fleet({
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop", "shared": ["log"],
        "state": database,
        "roles": {"web": {"restart": "", "canary": 1, "batch": 1}},
        "environments": {"production": {"transport": "local", "regions": {"za": {"hosts": {"web": HOSTS}}}}},
    })
    fleet.settings["roles"]["web"]["restart"] = f"CONFIG_DIR='{fleet.root}'\n" + RESTART
    fleet.write_config()
    r1 = fleet.ship("production", "1")["release"]
    r2, r3 = fleet.build("2"), fleet.build("3")
    log = fleet.root / "restarts.log"
    log.unlink()
    (fleet.root / f"block-{r2}-za-web-1").touch()

    a = subprocess.Popen(fleet.command("deploy", "production", "--release", r2, "--yes", "--json"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fleet.env_vars(),
                         cwd=fleet.root, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: a.poll() is not None or (fleet.root / f"at-restart-{r2}-za-web-1").exists(), 60,
                 "deploy A's canary to restart")
        assert a.poll() is None, a.communicate()
        expire_the_lease_as_if_held_elsewhere(database)

        b = fleet.deploy("production", r3, user="bob")  # takes the lock over and deploys everything
        assert b["status"] == "succeeded", b
        (fleet.root / "go").touch()
        out, err = a.communicate(timeout=60)
    finally:
        if a.poll() is None:
            a.kill()
            a.communicate()
    assert "Traceback" not in out + err, err

    # A stopped before its next batch, exit 3, saying who took over; its result lists every host.
    assert a.returncode == 3, (out, err)
    doc = fleet.run("history", "--json").json()["deployments"]
    first, second = sorted((d for d in doc if d["release"] in {r2, r3}), key=lambda d: d["id"])
    assert (first["release"], first["status"]) == (r2, "interrupted"), doc
    assert (second["release"], second["status"]) == (r3, "succeeded"), doc
    failed = json.loads(out)
    assert failed["exit_code"] == 3
    print(failed["error"])
    assert re.search(rf"stopped before its next batch: lost the lock on production: bob on \S+ pid \d+ took it "
                     rf"over for deployment #{second['id']}", failed["error"]), failed["error"]
    assert "<" not in failed["error"], failed  # no object reprs
    hosts = {h["host"]: h["status"] for h in failed["result"]["regions"]["za"]["hosts"]}
    assert hosts == {"za-web-1": "succeeded", "za-web-2": "pending", "za-web-3": "pending", "za-web-4": "pending"}

    # A restarted its canary and nothing after B took over; B moved every host.
    assert log.read_text().splitlines() == [f"{r2} za-web-1"] + [f"{r3} {h}" for h in HOSTS]
    assert fleet.currents("production") == dict.fromkeys(HOSTS, r3)
    # The record is B's: what every host runs and the region's pointer, nothing of A written over it.
    recorded = fleet.json("status", "production")["environments"]["production"]["regions"]["za"]
    assert (recorded["release"], recorded["pointer"]) == (r3, r3), recorded
    assert {h["name"]: h["release"] for h in recorded["hosts"]} == dict.fromkeys(HOSTS, r3)
    verified = fleet.json("status", "production", "--verify")["environments"]["production"]["regions"]["za"]
    assert (verified["consistent"], verified["release"], verified.get("drift")) == (True, r3, None), verified
    assert r1 not in {h["release"] for h in verified["hosts"]}
