"""DORA figures (operations/dora.py): frequency, lead time, change failure rate and time to restore, per
environment and ISO week; the commit times they count from; `conveyor report dora`."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.app import main
from conveyor.operations.dora import duration, environment_figures, figures, release_commit_times, week_of, window_start
from conveyor.state.store import Store
from conveyor.vcs.git import commit_times

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # a Sunday: the end of ISO week 2026-W49
SINCE = window_start(NOW, 2)  # Monday 2026-11-23
_ids = count(1)


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A moment in late November / early December 2026 (day 30 is the Monday of W49)."""
    return datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour, minutes=minute)


def run(release: str | None, status: str, start: datetime, minutes: float = 10, *, kind: str = "deploy",
        regions: tuple[str, ...] = ("uk",), env: str = "production", left: str | None = None) -> dict[str, Any]:
    """A deployment as history gives it; `left` is what a rollback took its regions off."""
    return {"id": next(_ids), "environment": env, "regions": list(regions), "release": release, "kind": kind,
            "status": status, "started_at": start.isoformat(),
            "finished_at": (start + timedelta(minutes=minutes)).isoformat() if status != "running" else None,
            "previous_by_region": dict.fromkeys(regions, left) if left else {}}


def weeks_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {week["week"]: week for week in result["weeks"]}


def test_weeks_are_iso_weeks_across_the_new_year() -> None:
    assert week_of(datetime(2026, 12, 31, 23, tzinfo=UTC)) == "2026-W53"
    assert week_of(datetime(2027, 1, 3, 23, 59, tzinfo=UTC)) == "2026-W53"  # Sunday: still 2026's last week
    assert week_of(datetime(2027, 1, 4, tzinfo=UTC)) == "2027-W01"
    # A moment with an offset counts in UTC: Monday 01:00 in Johannesburg is Sunday in UTC.
    assert week_of(datetime.fromisoformat("2026-11-30T01:00:00+02:00")) == "2026-W48"


def test_the_window_starts_on_a_monday_and_holds_every_week_even_empty_ones() -> None:
    assert datetime(2026, 11, 23, tzinfo=UTC) == SINCE
    assert window_start(NOW, 1) == datetime(2026, 11, 30, tzinfo=UTC)
    result = environment_figures([], {}, since=SINCE, until=NOW)
    assert [(w["week"], w["start"], w["deployments"]) for w in result["weeks"]] == [
        ("2026-W48", "2026-11-23", 0), ("2026-W49", "2026-11-30", 0)]
    assert result["total"]["change_failure_rate"] is None
    assert result["total"]["lead_time_median_seconds"] is None


def test_frequency_counts_deploys_that_succeeded_in_the_week_they_finished() -> None:
    rows = [
        run("r0", "succeeded", at(20)),                    # before the window
        run("r1", "succeeded", at(29, 23, 55)),            # started Sunday of W48, finished Monday of W49
        run("r2", "succeeded", at(24)),
        run("r3", "blocked", at(25), 0),                   # held by a gate: nothing changed
        run("r4", "failed", at(26)),
        run("r2", "succeeded", at(30), kind="rollback"),   # a rollback is no deployment of a change
        run("r5", "running", at(6 + 30)),
    ]
    result = environment_figures(rows, {}, since=SINCE, until=NOW)
    weeks = weeks_of(result)
    assert weeks["2026-W48"]["deployments"] == 1
    assert weeks["2026-W49"]["deployments"] == 1
    assert result["total"]["deployments"] == 2
    assert result["total"]["deployments_per_day"] == round(2 / ((NOW - SINCE).total_seconds() / 86400), 3)


def test_lead_time_runs_from_the_commit_to_the_first_deploy_that_delivered_the_release() -> None:
    commits = {"r1": at(23, 8), "r2": at(24, 9), "r3": at(30, 9)}
    rows = [
        run("r1", "succeeded", at(23, 10), 30, regions=("ca",)),  # 2.5 h after its commit
        run("r1", "succeeded", at(23, 12), 30, regions=("uk",)),  # the same release again: not a second sample
        run("r2", "failed", at(24, 10)),                          # never delivered: no lead time
        run("r3", "succeeded", at(30, 10), 60),                   # 2 h
        run("r4", "succeeded", at(30, 12)),                       # no commit time known: no sample
    ]
    result = environment_figures(rows, commits, since=SINCE, until=NOW)
    weeks = weeks_of(result)
    assert (weeks["2026-W48"]["lead_time_median_seconds"], weeks["2026-W48"]["lead_time_samples"]) == (9000.0, 1)
    assert (weeks["2026-W49"]["lead_time_median_seconds"], weeks["2026-W49"]["lead_time_samples"]) == (7200.0, 1)
    assert result["total"]["lead_time_median_seconds"] == 8100.0
    assert result["total"]["deployments"] == 4


def test_a_commit_time_after_the_deploy_clock_skew_counts_as_no_wait() -> None:
    result = environment_figures([run("r1", "succeeded", at(30))], {"r1": at(30, 11)}, since=SINCE, until=NOW)
    assert result["total"]["lead_time_median_seconds"] == 0.0


def test_change_failure_rate_counts_failed_rolled_back_and_later_undone_deploys() -> None:
    rows = [
        run("r1", "succeeded", at(30, 9)),
        run("r2", "succeeded", at(30, 10)),          # undone below by `conveyor rollback`
        run("r1", "succeeded", at(30, 11), 5, kind="rollback", left="r2"),
        run("r3", "rolled_back", at(1 + 30, 10), 7),  # switched back by itself
        run("r4", "failed", at(2 + 30, 10)),
        run("r5", "succeeded", at(2 + 30, 12), 15),   # restores r4's regions
        run("r6", "blocked", at(3 + 30), 0),
        run("r6", "interrupted", at(3 + 30, 11)),
        run("r7", "succeeded", at(4 + 30)),
    ]
    total = environment_figures(rows, {}, since=SINCE, until=NOW)["total"]
    assert (total["changes"], total["failures"], total["change_failure_rate"]) == (6, 3, 0.5)
    # r2: from its end (10:10) to the rollback's end (11:05) = 55 min; r3: its own 7 min; r4: from its start
    # (10:00) to the end of r5 (12:15) = 135 min.
    assert total["restores"] == 3
    assert total["time_to_restore_median_seconds"] == 55 * 60.0
    assert total["unrestored"] == 0


def test_a_failure_nothing_has_restored_yet_is_open() -> None:
    rows = [
        run("r1", "failed", at(30, 10), regions=("uk",)),
        run("r2", "succeeded", at(30, 12), regions=("za",)),  # another region: restores nothing of uk
    ]
    total = environment_figures(rows, {}, since=SINCE, until=NOW)["total"]
    assert (total["failures"], total["restores"], total["unrestored"]) == (1, 0, 1)
    assert total["time_to_restore_median_seconds"] is None


def test_a_rollback_undoes_the_latest_deploy_of_what_it_left() -> None:
    rows = [
        run("r1", "succeeded", at(30, 9), regions=("uk", "za")),
        run("r2", "succeeded", at(30, 10), regions=("uk",)),
        run("r1", "succeeded", at(30, 11), kind="rollback", regions=("uk",), left="r2"),
        run("r1", "failed", at(30, 12), kind="rollback", regions=("za",), left="r1"),  # a rollback that failed
    ]
    total = environment_figures(rows, {}, since=SINCE, until=NOW)["total"]
    assert (total["changes"], total["failures"]) == (2, 1)


def test_the_report_keeps_environments_apart_in_the_order_given() -> None:
    rows = [run("r1", "succeeded", at(30), env="staging"), run("r1", "failed", at(30, 12), env="production"),
            run("r1", "succeeded", at(30), env="qa")]
    result = figures(rows, {}, ["staging", "production"], weeks=2, now=NOW)
    assert list(result["environments"]) == ["staging", "production"]
    assert result["environments"]["staging"]["total"]["change_failure_rate"] == 0.0
    assert result["environments"]["production"]["total"]["change_failure_rate"] == 1.0
    assert (result["since"], result["until"], result["weeks"]) == (
        "2026-11-23T00:00:00+00:00", "2026-12-06T12:00:00+00:00", 2)


def test_commit_times_come_from_git_before_the_manifest() -> None:
    manifests: dict[str, Any] = {
        "in-git": {"git": {"sha": "a" * 40, "committed_at": "2026-11-01T00:00:00+00:00"}},
        "recorded": {"git": {"sha": "b" * 40, "committed_at": "2026-11-02T10:00:00+01:00"}},
        "old-manifest": {"git": {"sha": "c" * 40}},
        "no-git": {"git": None},
    }
    times = release_commit_times(manifests, {"a" * 40: "2026-11-03T00:00:00Z"})
    assert times == {"in-git": datetime(2026, 11, 3, tzinfo=UTC), "recorded": datetime(2026, 11, 2, 9, tzinfo=UTC)}


def _git(repo: Path, *args: str, when: str = "2026-11-20T08:30:00+00:00") -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com", "GIT_COMMITTER_NAME":
           "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_git_answers_the_commits_it_has_and_leaves_out_the_rest(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "one")
    sha = _git(repo, "rev-parse", "HEAD")
    found = commit_times(repo, [sha, sha[:10], "d" * 40, "--all"])
    assert found == {sha: "2026-11-20T08:30:00+00:00", sha[:10]: "2026-11-20T08:30:00+00:00"}
    plain = tmp_path / "plain"
    plain.mkdir()
    assert commit_times(plain, [sha]) == {}


CONFIG = """\
app: www
roles:
  web: {}
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [web-1]}}
  production:
    transport: local
    regions:
      uk: {hosts: {web: [web-1]}}
"""


def test_report_dora_reads_the_store_and_git(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "commit", "-q", "--allow-empty", "-m", "the change", when="2020-01-01T00:00:00+00:00")
    sha = _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / ".conveyor").mkdir()
    store = Store(f"sqlite:///{tmp_path / '.conveyor' / 'state.db'}", "www")
    # The manifest says another time: git's, where the work tree has the commit, wins.
    store.record_release({"id": "20200101T000000Z-abc", "sha256": "0" * 64, "size": 1, "user": "ada",
                          "created_at": "2020-01-01T00:00:00+00:00",
                          "git": {"sha": sha, "committed_at": "2019-01-01T00:00:00+00:00"}})
    first = store.start_deployment(environment="production", regions=["uk"], release="20200101T000000Z-abc",
                                   previous_by_region={"uk": None}, kind="deploy", user="ada")
    store.finish_deployment(first, "succeeded", [])
    failed = store.start_deployment(environment="production", regions=["uk"], release="20200101T000000Z-abc",
                                    previous_by_region={"uk": None}, kind="deploy", user="ada<script>")
    store.finish_deployment(failed, "rolled_back", [])
    store.close()
    config = str(tmp_path / "conveyor.yml")

    with pytest.raises(SystemExit) as done:
        main(["-c", config, "report", "dora", "--weeks", "1", "--json"])
    assert done.value.code in (0, None)
    document = json.loads(capsys.readouterr().out)
    assert list(document["environments"]) == ["staging", "production"]
    production = document["environments"]["production"]["total"]
    assert production["deployments"] == 1
    assert production["lead_time_samples"] == 1
    assert production["lead_time_median_seconds"] > (datetime.now(UTC) - datetime(2020, 1, 2, tzinfo=UTC)
                                                     ).total_seconds()
    assert production["change_failure_rate"] == 0.5
    assert len(document["environments"]["production"]["weeks"]) == 1

    with pytest.raises(SystemExit) as done:
        main(["-c", config, "report", "dora", "production"])
    out = capsys.readouterr().out
    assert done.value.code in (0, None)
    assert "production: 1 deployments" in out
    assert "50% (1/2)" in out
    assert "staging" not in out

    with pytest.raises(SystemExit) as done:
        main(["-c", config, "report", "dora", "nowhere"])
    assert done.value.code == 2
    assert "unknown environment 'nowhere'" in capsys.readouterr().err


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (0.4, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (3720, "1h 2m"),
    (86400, "1d"), (90000, "1d 1h"), (9 * 86400 + 7200, "9d 2h"),
])
def test_durations_read_as_a_person_says_them(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown
