"""The generated .gitlab-ci.yml run by a real GitLab CI interpreter, gitlab-ci-local, as GitLab runs it.

Each job runs in its own copy of the checkout (`--shell-isolation`, shell executor), the build job's artifacts
and dotenv report reach the jobs that need it, and rules, `needs`, manual jobs and `allow_failure:
{exit_codes}` decide what runs, as in GitLab. The jobs share what a team's runners share: the hosts
(`transport: local` with `local_root` outside the checkout) and the state store (CONVEYOR_STATE_URL, a SQLite
file outside the checkout). Pressing a button of a pipeline that already ran is running that one job again
with gitlab-ci-local, which hands it the artifacts of the jobs it needs from that pipeline.

What each run leaves on the hosts is read from their `current` links, not from exit codes alone.

gitlab-ci-local is pinned in tests/tools/gitlab-ci-local (`npm ci` there; .ci/run installs it). Without it the
test is skipped, except under CI (CI=true), where it must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

TOOL = Path(__file__).parents[1] / "tools" / "gitlab-ci-local"
RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
# The summary gitlab-ci-local prints on stdout once a run ends (`--no-color`): ` PASS  build_release`,
# ` WARN  deploy_x  pre_script` (failed, allowed to), ` FAIL  deploy_y`.
SUMMARY = re.compile(r"^ (PASS|WARN|FAIL) +(\S+)", re.MULTILINE)
# Each job's last line: `deploy_x   finished in 1.2 s  WARN 3`: the exit code of a job that did not pass.
FINISHED = re.compile(r"^(\S+) +finished in [^A-Z\n]*(?:(?:WARN|FAIL) (\d+))?\s*$", re.MULTILINE)
REGIONS = ("a", "b")


def _find_gitlab_ci_local() -> str | None:
    """The pinned install, else one named by $GITLAB_CI_LOCAL, else one on PATH."""
    pinned = TOOL / "node_modules" / ".bin" / "gitlab-ci-local"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    return os.environ.get("GITLAB_CI_LOCAL") or shutil.which("gitlab-ci-local")


@pytest.fixture(scope="module")
def gitlab_ci_local() -> str:
    """The gitlab-ci-local executable; the test is skipped without one, outside CI only."""
    found = _find_gitlab_ci_local()
    if found is None:
        install = f"cd {TOOL} && npm ci"
        if os.environ.get("CI") == "true":
            pytest.fail(f"gitlab-ci-local is not installed, and CI must run this test: {install} (.ci/run does it)")
        pytest.skip(f"gitlab-ci-local is not installed ({install}); under CI (CI=true) this test runs")
    return found


@dataclass(frozen=True)
class Run:
    """One gitlab-ci-local run: its exit code, each job that ran with its outcome, and the whole log."""

    code: int
    outcomes: dict[str, str]      # job -> PASS, WARN (failed, allowed) or FAIL
    exit_codes: dict[str, int]    # job -> its exit code, for the jobs that did not pass
    log: str

    def __str__(self) -> str:
        return f"gitlab-ci-local exit {self.code}; jobs {self.outcomes}\n{self.log}"


@dataclass
class Project:
    """A repository whose .gitlab-ci.yml `conveyor ci gitlab` wrote, its hosts and its state store."""

    checkout: Path
    hosts: Path
    state_url: str
    home: Path
    runner: str
    env: dict[str, str]

    def commit(self, version: str) -> str:
        """Write the app's build output of `version`, commit everything: the commit's sha."""
        (self.checkout / "app").mkdir(exist_ok=True)
        (self.checkout / "app" / "VERSION").write_text(f"{version}\n", encoding="utf-8")
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", f"version {version}")
        return self.git("rev-parse", "HEAD")

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", "-C", str(self.checkout), *args], capture_output=True, text=True,
                              env=self.env, timeout=30, check=False, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def conveyor(self, *args: str, expect: int = 0) -> str:
        """`conveyor ARGS...` in the checkout, with the pipeline's state store (as a person at a terminal)."""
        done = subprocess.run(["conveyor", *args], capture_output=True, text=True, cwd=self.checkout,
                              env={**self.env, "CONVEYOR_STATE_URL": self.state_url}, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == expect, f"conveyor {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def gitlab_ci_local(self, *args: str, variables: dict[str, str] | None = None) -> Run:
        """Run gitlab-ci-local in the checkout: the whole pipeline, or the jobs named in `args`."""
        settings = {
            "CONVEYOR_INSTALL": "",              # an image with conveyor in it already: the test's own
            "CONVEYOR_STATE_URL": self.state_url,  # as a CI/CD variable of the project
            **(variables or {}),
        }
        command = [self.runner, "--home", str(self.home), "--force-shell-executor",
                   "--shell-isolation", "--no-artifacts-to-source", "--no-color", "--concurrency", "4"]
        for name, value in settings.items():
            command += ["--variable", f"{name}={value}"]
        done = subprocess.run([*command, *args], capture_output=True, text=True, cwd=self.checkout, env=self.env,
                              timeout=120, check=False, stdin=subprocess.DEVNULL)
        log = done.stdout + done.stderr
        # The summary is on stdout; the jobs' own lines (theirs and their stderr's) start with the job's name.
        return Run(done.returncode, {job: outcome for outcome, job in SUMMARY.findall(done.stdout)},
                   {job: int(code) for job, code in FINISHED.findall(log) if code}, log)

    def pipeline(self, *manual: str, variables: dict[str, str] | None = None) -> Run:
        """A push to the default branch: its pipeline, with the `manual` jobs' buttons pressed as it runs."""
        # A new pipeline's jobs start from clean checkouts (GitLab's runner runs `git clean -ffdx`): gitlab-ci-local
        # would otherwise copy the commit over the files the same job left in its directory last time.
        shutil.rmtree(self.checkout / ".gitlab-ci-local" / "builds", ignore_errors=True)
        return self.gitlab_ci_local(*(arg for job in manual for arg in ("--manual", job)), variables=variables)

    def press(self, job: str) -> Run:
        """Press a manual job's button in the pipeline that ran last (whose run validated the file already)."""
        return self.gitlab_ci_local("--no-json-schema-validation", job)

    def current(self, env: str, region: str) -> str | None:
        """The release the region's one web host runs: where its `current` link points (None: nothing yet)."""
        link = self.hosts / env / region / f"{region}-web-1" / "srv" / "shop" / "current"
        if not link.is_symlink():
            assert not link.exists(), f"{link} is not a symlink"
            return None
        target = os.readlink(link)
        folder, release = target.split("/")
        assert folder == "releases", target
        assert RELEASE_ID.match(release), target
        serving = (link.parent / "serving").read_text(encoding="utf-8").strip()
        assert serving == release, f"{link} -> {target}, but the restart command last served {serving}"
        return release

    def fleet(self) -> dict[str, str | None]:
        """`env/region` -> the release it runs."""
        return {"staging/a": self.current("staging", "a"),
                **{f"production/{r}": self.current("production", r) for r in REGIONS}}


def settings(hosts: Path) -> dict[str, Any]:
    """staging (auto: true) and production (promoted from staging, waves [[a], [b]]), one web host per region,
    local hosts under `hosts`; restart records the release it served."""
    def env(regions: tuple[str, ...], **extra: Any) -> dict[str, Any]:
        return {"transport": "local", "local_root": str(hosts), **extra,
                "regions": {r: {"hosts": {"web": [f"{r}-web-1"]}} for r in regions}}

    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": 'printf "%s\\n" "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'}},
        "environments": {
            "staging": env(("a",), auto=True),
            "production": env(REGIONS, promote_from="staging", waves=[["a"], ["b"]]),
        },
    }


@pytest.fixture
def project(tmp_path: Path, gitlab_ci_local: str) -> Project:
    """A checkout on `main` with conveyor.yml, the app and the generated .gitlab-ci.yml; hosts and state beside it."""
    checkout, hosts, state, home = (tmp_path / name for name in ("checkout", "hosts", "state", "home"))
    for folder in (checkout, hosts, state, home):
        folder.mkdir()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONVEYOR_", "GITLAB_", "GITHUB_", "CI_", "GIT_")) and k != "CI"}
    env.update({
        "PATH": path, "HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200",
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CEILING_DIRECTORIES": str(tmp_path),
        "GIT_AUTHOR_NAME": "Alice Dlamini", "GIT_AUTHOR_EMAIL": "alice@example.com",
        "GIT_COMMITTER_NAME": "Alice Dlamini", "GIT_COMMITTER_EMAIL": "alice@example.com",
    })
    made = Project(checkout, hosts, f"sqlite:///{state / 'conveyor.db'}", home, gitlab_ci_local, env)
    made.git("-c", "init.defaultBranch=main", "init", "--quiet")
    (checkout / "conveyor.yml").write_text(yaml.safe_dump(settings(hosts), sort_keys=False), encoding="utf-8")
    (checkout / ".gitignore").write_text(".conveyor/\n.gitlab-ci-local/\n", encoding="utf-8")
    made.conveyor("ci", "gitlab", "-o", ".gitlab-ci.yml")
    return made


def test_the_generated_pipeline_runs_in_gitlab_ci_local(project: Project) -> None:
    generated = (project.checkout / ".gitlab-ci.yml").read_text(encoding="utf-8")
    assert "db status" not in generated  # no migrations: the check jobs must not ask for them

    # A push to main builds once and deploys staging by itself (auto: true); production waits for a person, who
    # presses "deploy production/a" once its checks pass.
    v1 = project.commit("1")
    push = project.pipeline("deploy_production_a")
    assert push.code == 0, str(push)
    assert push.outcomes == {
        "check_pipeline_file": "PASS", "build_release": "PASS", "deploy_staging": "PASS",
        "pre_deploy_production_a": "PASS", "pre_deploy_production_b": "PASS", "deploy_production_a": "PASS",
    }, str(push)
    r1 = project.current("staging", "a")
    assert r1 is not None
    assert r1.endswith(v1[:8])  # the commit the pipeline ran for, built once
    assert project.fleet() == {"staging/a": r1, "production/a": r1, "production/b": None}

    # Then production is locked, and someone presses "deploy production/b": held (exit 3), an allowed failure
    # that changes nothing. Once unlocked, the same button deploys the same release to that one region.
    project.conveyor("lock", "production", "--reason", "incident 42")
    held = project.press("deploy_production_b")
    assert held.code == 0, str(held)  # allowed to fail: the pipeline is not red
    assert held.outcomes == {"deploy_production_b": "WARN"}, str(held)
    assert held.exit_codes == {"deploy_production_b": 3}, str(held)
    assert "incident 42" in held.log
    assert project.fleet() == {"staging/a": r1, "production/a": r1, "production/b": None}
    project.conveyor("unlock", "production")
    press_b = project.press("deploy_production_b")
    assert (press_b.code, press_b.outcomes) == (0, {"deploy_production_b": "PASS"}), str(press_b)
    assert project.fleet() == {"staging/a": r1, "production/a": r1, "production/b": r1}

    # The next push, and "deploy everywhere": production's waves, every region.
    v2 = project.commit("2")
    everywhere = project.pipeline("deploy_production_everywhere")
    assert everywhere.code == 0, str(everywhere)
    assert everywhere.outcomes == {
        "check_pipeline_file": "PASS", "build_release": "PASS", "deploy_staging": "PASS",
        "pre_deploy_production_a": "PASS", "pre_deploy_production_b": "PASS", "deploy_production_everywhere": "PASS",
    }, str(everywhere)
    r2 = project.current("staging", "a")
    assert r2 is not None
    assert r2.endswith(v2[:8])
    assert project.fleet() == {"staging/a": r2, "production/a": r2, "production/b": r2}

    # A deploy freeze: the pipeline builds, but no deploy job runs, not even one someone asks for.
    project.commit("3")
    frozen = project.pipeline("deploy_production_everywhere", variables={"CI_DEPLOY_FREEZE": "true"})
    assert frozen.code == 0, str(frozen)
    assert frozen.outcomes == {"check_pipeline_file": "PASS", "build_release": "PASS"}, str(frozen)
    assert project.fleet() == {"staging/a": r2, "production/a": r2, "production/b": r2}

    # Every deployment is in the shared history, the held one as blocked.
    history = json.loads(project.conveyor("history", "--json"))["deployments"]
    assert [(d["environment"], d["regions"], d["status"]) for d in reversed(history)] == [
        ("staging", ["a"], "succeeded"), ("production", ["a"], "succeeded"), ("production", ["b"], "blocked"),
        ("production", ["b"], "succeeded"), ("staging", ["a"], "succeeded"), ("production", ["a", "b"], "succeeded"),
    ]
