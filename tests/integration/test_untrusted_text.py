"""Text from people and hosts is shown as written, and the clock is not theirs to move (issue 15, points 8, 9).

Real `conveyor` runs against local fleets (`make_fleet`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def settings(**production: Any) -> dict[str, Any]:
    return {
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": "true"}},
        "environments": {"production": {"transport": "local", **production,
                                        "regions": {"uk": {"hosts": {"web": ["uk-web-1"]}}}}},
    }


@pytest.mark.parametrize("reason", ["[/oops]", "[link=https://evil.example/]click[/link]", "[bold red]x", "\\[", ":)"])
def test_a_lock_reason_is_shown_as_written_by_every_command(make_fleet: Callable[[dict[str, Any]], Any],
                                                            reason: str) -> None:
    fleet = make_fleet(settings())
    fleet.write_artifact("1")
    locked = fleet.run("lock", "production", "--reason", reason)
    assert reason in locked.stdout
    planned = fleet.run("plan", "production", expect=3)  # held by the lock, as deploy would be
    assert reason in planned.stdout
    assert reason in planned.stderr
    held = fleet.run("deploy", "production", "--yes", expect=3)
    assert reason in held.stderr
    assert reason in fleet.run("history").stdout or "blocked" in fleet.run("history").stdout
    unlocked = fleet.run("unlock", "production")
    assert reason in unlocked.stdout
    for text in (locked.stdout, planned.stdout, unlocked.stdout):
        assert "\x1b]8;" not in text  # no terminal hyperlink was made of it


def test_a_deploy_cannot_be_given_another_time(make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    """CONVEYOR_NOW once opened a closed window for a deploy, unaudited; a bad value crashed it."""
    today = datetime.now(UTC)
    allowed = DAYS[(today + timedelta(days=3)).weekday()]  # a day that is not today (nor close to it)
    fleet = make_fleet({**settings(window="one-day"),
                        "windows": {"one-day": {"timezone": "UTC", "allow": [{"days": allowed}]}}})
    release = fleet.build("1")
    inside = (today + timedelta(days=3)).replace(hour=12, minute=0, second=0, microsecond=0).isoformat()
    for value in (inside, "not a time"):
        env = {**fleet.env_vars(), "CONVEYOR_NOW": value}
        import subprocess

        done = subprocess.run(fleet.command("deploy", "production", "--release", release, "--yes"),
                              capture_output=True, text=True, env=env, cwd=fleet.root, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 3, done
        assert "window one-day is closed" in done.stderr
        assert "Traceback" not in done.stderr
    assert fleet.current("production", "uk", "uk-web-1") is None
    # The read-only question takes a time explicitly: plan --at, windows --at.
    assert fleet.json("plan", "production", "--release", release, "--at", inside).get("holds") is None
    assert fleet.json("windows", "production", "--at", inside)["open"] is True
    assert fleet.run("plan", "production", "--at", "soon", expect=2).stderr.startswith("conveyor: --at: ")
