"""Pipelines generated from conveyor.yml: the golden files, the jobs and rules they hold, and how a config
change moves them; the drift comparison; CI detection; log sections.

The golden files in tests/unit/golden/ci/ come from golden/ci/conveyor.yml. After a deliberate change to
the generators, rewrite them with `CONVEYOR_UPDATE_GOLDEN=1 pytest tests/unit/test_ci_pipelines.py` and
read the diff as a reviewer would: it is what every team's pipeline becomes.
"""

from __future__ import annotations

import copy
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.ci import github, gitlab
from conveyor.ci.check import MISSING, Difference, Unconfirmed, compare, unconfirmed_commands
from conveyor.ci.environment import CIEnvironment, detect
from conveyor.ci.pipeline import Pipeline, build_pipeline, load_yaml, promotion_order, read_config
from conveyor.ci.sections import Sections, github_end, github_start, gitlab_end, gitlab_start
from conveyor.config.loader import parse_config
from conveyor.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden" / "ci"
VERSION = "0.1.0"  # pinned here so that a version bump does not rewrite the golden files
COMMANDS = ["build", "converge", "db", "db lint", "db status", "deploy", "diff", "plan", "rollback", "status",
            "windows"]
BEFORE_DB_STATUS = [c for c in COMMANDS if not c.startswith("db")]  # a Conveyor from before `db status`
MIGRATIONS = {"dir": "db/migrations", "dialect": "mysql", "apply": "./bin/migrate up", "status": "./bin/migrate list"}
# A shell command that changes hosts: a CI job has no terminal, so each must carry --yes.
HOST_CHANGING = re.compile(r"\bconveyor\s+(deploy|rollback|converge)\b")
REGIONS = ["ca", "za", "uk", "us"]  # production's wave order

# Keywords the GitLab CI YAML reference documents (docs.gitlab.com/ci/yaml), and GitHub's workflow syntax.
GITLAB_GLOBAL = {"default", "include", "stages", "variables", "workflow"}
GITLAB_JOB = {"after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage", "dependencies",
              "environment", "extends", "hooks", "id_tokens", "image", "inherit", "interruptible", "needs", "pages",
              "parallel", "release", "resource_group", "retry", "rules", "script", "secrets", "services", "stage",
              "tags", "timeout", "trigger", "variables", "when"}
GITLAB_ENVIRONMENT = {"name", "url", "on_stop", "action", "auto_stop_in", "kubernetes", "deployment_tier"}
GITLAB_RULE = {"if", "changes", "exists", "allow_failure", "needs", "variables", "when", "interruptible"}
GITHUB_WORKFLOW = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
GITHUB_JOB = {"name", "permissions", "needs", "if", "runs-on", "environment", "concurrency", "outputs", "env",
              "defaults", "steps", "timeout-minutes", "strategy", "continue-on-error", "container", "services",
              "uses", "with", "secrets"}
GITHUB_STEP = {"id", "if", "name", "uses", "run", "working-directory", "shell", "with", "env", "continue-on-error",
               "timeout-minutes"}


def golden_pipeline(commands: list[str] = COMMANDS) -> Pipeline:
    config, variables = read_config(GOLDEN / "conveyor.yml", environ={})
    return build_pipeline(config, variables=variables, version=VERSION, commands=commands)


def pipeline_of(settings: dict[str, Any], commands: list[str] = COMMANDS) -> Pipeline:
    config, _lines = parse_config(yaml.safe_dump(settings, sort_keys=False), "conveyor.yml", env={})
    return build_pipeline(config, version=VERSION, commands=commands)


def golden_settings() -> dict[str, Any]:
    settings = yaml.safe_load((GOLDEN / "conveyor.yml").read_text(encoding="utf-8"))
    settings.pop("notify")  # its ${SLACK_TOKEN} is not set here
    return settings


def gitlab_doc(pipeline: Pipeline) -> dict[str, Any]:
    return load_yaml(gitlab.generate(pipeline))


def github_doc(pipeline: Pipeline) -> dict[str, Any]:
    return load_yaml(github.generate(pipeline))


def jobs_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """GitLab jobs: top-level mappings other than the global keywords and hidden templates."""
    return {k: v for k, v in doc.items() if k not in GITLAB_GLOBAL and not k.startswith(".")}


# -- golden files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "generate"), [("gitlab-ci.yml", gitlab.generate),
                                                ("github-workflow.yml", github.generate)])
def test_the_generated_files_are_the_golden_files(name: str, generate: Any) -> None:
    text = generate(golden_pipeline())
    path = GOLDEN / name
    if os.environ.get("CONVEYOR_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed: rewrite it (see this module's docstring)"


def test_generating_twice_gives_the_same_text_whatever_order_the_config_lists_things() -> None:
    settings = golden_settings()
    shuffled = copy.deepcopy(settings)
    shuffled["environments"] = dict(reversed(list(settings["environments"].items())))
    for env in shuffled["environments"].values():
        env["regions"] = dict(reversed(list(env["regions"].items())))
    assert gitlab.generate(pipeline_of(settings)) == gitlab.generate(pipeline_of(shuffled))
    assert github.generate(pipeline_of(settings)) == github.generate(pipeline_of(shuffled))
    assert gitlab.generate(pipeline_of(settings)) == gitlab.generate(pipeline_of(settings))


@pytest.mark.parametrize("generate", [gitlab.generate, github.generate])
def test_the_header_says_what_generated_the_file_and_how_to_regenerate_it(generate: Any) -> None:
    text = generate(golden_pipeline())
    header = text.split("\n\n")[0]
    kind = "gitlab" if generate is gitlab.generate else "github"
    assert header.startswith(f"# Generated by `conveyor ci {kind}` from conveyor.yml.")
    assert f"#     conveyor ci {kind} -o " in header
    assert all(line.startswith("#") for line in header.splitlines())


# -- GitLab ---------------------------------------------------------------------------------------------


def test_gitlab_uses_only_documented_keywords() -> None:
    doc = gitlab_doc(golden_pipeline())
    assert set(doc) - set(jobs_of(doc)) <= GITLAB_GLOBAL | {".conveyor"}
    for name, job in jobs_of(doc).items():
        assert set(job) <= GITLAB_JOB, (name, set(job) - GITLAB_JOB)
        assert set(job.get("environment", {})) <= GITLAB_ENVIRONMENT, name
        for rule in job.get("rules", []):
            assert set(rule) <= GITLAB_RULE, name
        assert job["stage"] in doc["stages"], name
        assert job["extends"] == ".conveyor"
        for needed in job.get("needs", []):
            assert needed in doc, (name, needed)
            # `needs` may only point at a job of the same or an earlier stage.
            assert doc["stages"].index(doc[needed]["stage"]) <= doc["stages"].index(job["stage"]), (name, needed)


def test_gitlab_has_the_stages_and_a_job_per_region_of_production() -> None:
    doc = gitlab_doc(golden_pipeline())
    assert doc["stages"] == ["build", "staging", "pre_deploy", "deploy", "info"]
    assert list(jobs_of(doc)) == [
        "check_pipeline_file", "build_release", "deploy_staging",
        *[f"{kind}_production_{r}" for r in REGIONS for kind in ("pre_deploy", "deploy")],
        "deploy_production_everywhere", "diff_staging_production", "fleet_status",
    ]


def test_gitlab_builds_once_and_passes_the_release_id_on_as_a_dotenv_report() -> None:
    build = gitlab_doc(golden_pipeline())["build_release"]
    script = "\n".join(build["script"])
    assert "conveyor build --json" in script
    assert "CONVEYOR_RELEASE=" in script
    assert "> conveyor.env" in script
    assert build["artifacts"]["reports"] == {"dotenv": "conveyor.env"}
    # The default store is a directory in the checkout: the deploy jobs get its files as artifacts.
    assert build["artifacts"]["paths"] == [".conveyor/artifacts/"]
    assert build["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]

    settings = golden_settings()
    settings["artifact"]["store"] = "s3://www-releases/builds"
    s3 = gitlab_doc(pipeline_of(settings))
    assert "paths" not in s3["build_release"]["artifacts"]  # every job reads the bucket itself
    assert "conveyor-deploy[aws,postgres]" in s3["variables"]["CONVEYOR_INSTALL"]["value"]


def test_gitlab_staging_deploys_on_every_push_and_production_waits_for_a_person() -> None:
    doc = gitlab_doc(golden_pipeline())
    staging = doc["deploy_staging"]
    assert staging["stage"] == "staging"
    assert staging["script"] == ['conveyor deploy staging --release "$CONVEYOR_RELEASE" --yes --auto']
    assert staging["rules"][-1] == {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "when": "on_success"}
    for region in REGIONS:
        job = doc[f"deploy_production_{region}"]
        assert job["script"] == [f'conveyor deploy production --region {region} --release "$CONVEYOR_RELEASE" --yes']
        assert job["rules"][-1]["when"] == "manual"
    everywhere = doc["deploy_production_everywhere"]
    assert everywhere["script"] == ['conveyor deploy production --release "$CONVEYOR_RELEASE" --yes']
    assert everywhere["rules"][-1]["when"] == "manual"
    assert everywhere["needs"] == ["build_release", *[f"pre_deploy_production_{r}" for r in REGIONS]]


def test_every_gitlab_deploy_job_skips_a_deploy_freeze_runs_on_the_default_branch_and_may_be_held() -> None:
    doc = gitlab_doc(golden_pipeline())
    deploys = {n: j for n, j in jobs_of(doc).items() if n.startswith(("deploy_", "pre_deploy_"))}
    assert len(deploys) == 1 + 2 * len(REGIONS) + 1
    for name, job in deploys.items():
        assert job["rules"][0] == {"if": "$CI_DEPLOY_FREEZE", "when": "never"}, name
        assert job["rules"][1]["if"] == "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", name
        # Held: a warning, not a failure. For a check job too: a window closed or a lock taken when the pipeline
        # ran must not leave the deploy button that needs it unable to run once the gate opens.
        assert job["allow_failure"] == {"exit_codes": [3]}, name


def test_gitlab_tracks_each_region_as_an_environment_and_never_deploys_one_twice_at_once() -> None:
    doc = gitlab_doc(golden_pipeline())
    assert doc["deploy_staging"]["environment"] == {"name": "staging", "deployment_tier": "staging"}
    assert doc["deploy_staging"]["resource_group"] == "conveyor-www-staging"
    for region in REGIONS:
        assert doc[f"deploy_production_{region}"]["environment"] == {
            "name": f"production/{region}", "deployment_tier": "production"}
        assert doc[f"pre_deploy_production_{region}"]["environment"] == {
            "name": f"production/{region}", "action": "prepare", "deployment_tier": "production"}
        assert "resource_group" not in doc[f"pre_deploy_production_{region}"]  # read-only: never waits
    groups = {doc[n]["resource_group"] for n in jobs_of(doc) if n.startswith("deploy_production")}
    assert groups == {"conveyor-www-production"}


def test_gitlab_checks_each_region_before_its_deploy() -> None:
    doc = gitlab_doc(golden_pipeline())
    job = doc["pre_deploy_production_za"]
    assert job["stage"] == "pre_deploy"
    assert job["needs"] == ["build_release", "deploy_staging"]  # after staging moved in this pipeline
    assert job["script"] == ['conveyor plan production --region za --release "$CONVEYOR_RELEASE"',
                             "conveyor windows production"]
    assert doc["deploy_production_za"]["needs"] == ["build_release", "pre_deploy_production_za"]


def test_without_migrations_no_job_asks_for_db_status_so_the_deploy_buttons_can_run() -> None:
    # `db status` exits 2 on older Conveyors for a config without migrations: the check jobs then failed and the
    # manual deploy jobs that need them could never run.
    pipeline = golden_pipeline()
    assert not pipeline.migrations
    gitlab_text, github_text = gitlab.generate(pipeline), github.generate(pipeline)
    assert "db status" not in gitlab_text
    assert "db status" not in github_text
    assert not [name for name in gitlab_doc(pipeline) if name.startswith("db_status")]


def test_with_migrations_every_check_job_asks_for_the_pending_ones() -> None:
    settings = golden_settings()
    settings["migrations"] = MIGRATIONS
    pipeline = pipeline_of(settings)
    assert pipeline.migrations
    doc = gitlab_doc(pipeline)
    for region in REGIONS:
        assert doc[f"pre_deploy_production_{region}"]["script"][2] == "conveyor db status production"
    assert doc["db_status_staging"]["script"] == ["conveyor db status staging"]
    assert doc["db_status_production"]["script"] == ["conveyor db status production"]
    assert doc["db_status_production"]["rules"][-1]["when"] == "manual"
    jobs = github_doc(pipeline)["jobs"]
    assert "conveyor db status production\n" in jobs["plan_production"]["steps"][-1]["run"]
    report = jobs["report"]["steps"][-1]["run"]
    assert "conveyor db status staging || failed=1" in report
    assert "conveyor db status production || failed=1" in report


def test_a_conveyor_without_db_status_leaves_a_hook_only_where_there_are_migrations() -> None:
    settings = golden_settings()
    settings["migrations"] = MIGRATIONS
    doc = gitlab_doc(pipeline_of(settings, BEFORE_DB_STATUS))
    line = doc["pre_deploy_production_za"]["script"][2]
    assert line.startswith("# hook: pending migrations")  # a shell comment, not a broken command
    assert not any("db status" in line and not line.startswith("#")
                   for j in jobs_of(doc).values() for line in j["script"])
    assert "# hook: pending migrations" in github_doc(pipeline_of(settings, BEFORE_DB_STATUS))["jobs"][
        "plan_production"]["steps"][-1]["run"]
    assert "hook" not in gitlab.generate(pipeline_of(golden_settings(), BEFORE_DB_STATUS))


def test_gitlab_information_jobs_are_manual_and_never_block_the_pipeline() -> None:
    doc = gitlab_doc(golden_pipeline())
    assert doc["diff_staging_production"]["script"] == ["conveyor diff staging production"]
    assert doc["diff_staging_production"]["variables"] == {"GIT_DEPTH": "0"}  # the whole history to compare
    assert doc["fleet_status"]["script"] == ["conveyor status"]
    for name in ("diff_staging_production", "fleet_status"):
        assert doc[name]["stage"] == "info"
        assert doc[name]["needs"] == []
        assert doc[name]["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "when": "manual"}]
        assert doc[name]["allow_failure"] is True


def test_gitlab_jobs_run_in_the_conveyor_image_and_read_the_config() -> None:
    doc = gitlab_doc(golden_pipeline())
    assert doc["variables"]["CONVEYOR_IMAGE"]["value"] == "python:3.11-slim"
    assert doc["variables"]["CONVEYOR_INSTALL"]["value"] == "pip install --quiet 'conveyor-deploy[postgres]==0.1.0'"
    assert doc["variables"]["CONVEYOR_CONFIG"]["value"] == "conveyor.yml"
    assert doc[".conveyor"]["image"] == "$CONVEYOR_IMAGE"
    assert doc[".conveyor"]["before_script"][-1] == 'eval "$CONVEYOR_INSTALL"'
    assert doc["check_pipeline_file"]["script"] == [
        'conveyor ci check --gitlab "${CONVEYOR_PIPELINE_FILE:-$CI_CONFIG_PATH}"']


def test_adding_a_region_adds_its_check_and_deploy_jobs() -> None:
    settings = golden_settings()
    settings["environments"]["production"]["regions"]["au"] = {"hosts": {"web": ["au-web-1"]}}
    settings["environments"]["production"]["waves"].append(["au"])
    doc = gitlab_doc(pipeline_of(settings))
    assert doc["deploy_production_au"]["environment"]["name"] == "production/au"
    assert "pre_deploy_production_au" in doc["deploy_production_everywhere"]["needs"]
    assert list(jobs_of(doc)).index("deploy_production_au") > list(jobs_of(doc)).index("deploy_production_us")
    workflow = github_doc(pipeline_of(settings))
    assert workflow["on"]["workflow_dispatch"]["inputs"]["region"]["options"] == [
        "everywhere", "au", "ca", "uk", "us", "za"]


def test_turning_auto_on_for_production_deploys_it_everywhere_on_every_push() -> None:
    settings = golden_settings()
    settings["environments"]["production"]["auto"] = True
    doc = gitlab_doc(pipeline_of(settings))
    everywhere = doc["deploy_production_everywhere"]
    assert everywhere["script"] == ['conveyor deploy production --release "$CONVEYOR_RELEASE" --yes --auto']
    assert everywhere["rules"][-1]["when"] == "on_success"
    assert doc["deploy_production_ca"]["rules"][-1]["when"] == "manual"  # one region alone is a person's choice

    before = github_doc(golden_pipeline())["jobs"]["plan_production"]
    after = github_doc(pipeline_of(settings))["jobs"]["plan_production"]
    assert "github.event_name == 'push'" not in before["if"]
    assert "github.event_name == 'push'" in after["if"]
    assert "needs.deploy_staging.result == 'success'" in after["if"]
    assert after["needs"] == ["build", "deploy_staging"]


def test_turning_auto_off_for_staging_makes_it_manual() -> None:
    settings = golden_settings()
    settings["environments"]["staging"]["auto"] = False
    doc = gitlab_doc(pipeline_of(settings))
    assert doc["deploy_staging"]["rules"][-1]["when"] == "manual"
    assert doc["deploy_staging"]["script"] == ['conveyor deploy staging --release "$CONVEYOR_RELEASE" --yes']
    deploy = github_doc(pipeline_of(settings))["jobs"]["deploy_staging"]
    assert "push" not in deploy["if"]


def test_one_environment_alone_is_production_like() -> None:
    settings = golden_settings()
    del settings["environments"]["staging"]
    del settings["environments"]["production"]["promote_from"]
    doc = gitlab_doc(pipeline_of(settings))
    assert "deploy_staging" not in doc
    assert doc["pre_deploy_production_ca"]["needs"] == ["build_release"]
    assert "diff_staging_production" not in doc


def test_environments_come_in_promotion_order() -> None:
    settings = golden_settings()
    settings["environments"] = {
        "production": {**settings["environments"]["production"], "promote_from": "canary"},
        "canary": {"promote_from": "staging", "regions": {"uk": {"hosts": {"web": ["c-1"]}}}},
        "staging": settings["environments"]["staging"],
    }
    config, _ = parse_config(yaml.safe_dump(settings), "conveyor.yml", env={})
    assert promotion_order(config) == ["staging", "canary", "production"]
    pipeline = pipeline_of(settings)
    assert [(s.name, s.per_region, s.tier) for s in pipeline.stages] == [
        ("staging", False, "staging"), ("canary", True, "staging"), ("production", True, "production")]
    doc = gitlab_doc(pipeline)
    # production's checks cannot wait for canary's deploy jobs (a later stage): conveyor's promotion gate holds.
    assert doc["pre_deploy_production_ca"]["needs"] == ["build_release"]
    assert doc["pre_deploy_canary_uk"]["needs"] == ["build_release", "deploy_staging"]


def build_script(kind: str) -> str:
    """The shell script of the generated build job (GitLab's build_release, GitHub's build step)."""
    if kind == "gitlab":
        return "\n".join(gitlab_doc(golden_pipeline())["build_release"]["script"])
    build = github_doc(golden_pipeline())["jobs"]["build"]
    return str(next(s for s in build["steps"] if s.get("id") == "release")["run"])


def run_build_script(kind: str, tmp_path: Path, conveyor: str,
                     given: str = "") -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run a generated build script in a committed checkout, as its CI system would (bash -e; GitLab also sets
    pipefail), with `conveyor` the given shell script: (the run, the file the release id was written to)."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "conveyor").write_text("#!/bin/sh\n" + conveyor, encoding="utf-8")
    (tools / "conveyor").chmod(0o755)
    for name in ("python", "python3"):
        (tools / name).symlink_to(sys.executable)
    env = {"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CEILING_DIRECTORIES": str(tmp_path), "HOME": str(tmp_path)}
    for args in (["init", "--quiet"], ["-c", "user.name=A", "-c", "user.email=a@example.com", "commit", "--quiet",
                                       "--allow-empty", "-m", "first"]):
        subprocess.run(["git", "-C", str(checkout), *args], check=True, env=env, capture_output=True, timeout=30)
    if kind == "gitlab":
        env.update({"CI_COMMIT_REF_NAME": "main", "CONVEYOR_RELEASE": given})
        shell, output = ["bash", "-e", "-o", "pipefail", "-c"], checkout / "conveyor.env"
    else:
        output = tmp_path / "github_output"
        env.update({"GITHUB_REF_NAME": "main", "GIVEN_RELEASE": given, "GITHUB_OUTPUT": str(output)})
        shell = ["bash", "-e", "-c"]
    done = subprocess.run([*shell, build_script(kind)], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=30, check=False, stdin=subprocess.DEVNULL)
    return done, output


# The fake conveyor refuses to build unless the checkout is exactly the commit: what a clean build needs.
CLEAN_BUILD = """\
dirty=$(git status --porcelain --untracked-files=all)
if [ -n "$dirty" ]; then echo "built from a dirty work tree: $dirty" >&2; exit 9; fi
echo '{"id": "20260101T000000Z-abcdef12", "sha256": "00"}'
"""


@pytest.mark.parametrize("kind", ["gitlab", "github"])
def test_the_build_job_writes_nothing_into_the_checkout_before_it_builds(kind: str, tmp_path: Path) -> None:
    # A file the job writes first (even the build's own output) would make every CI release a dirty one.
    done, output = run_build_script(kind, tmp_path, CLEAN_BUILD)
    assert done.returncode == 0, done.stderr
    expected = "CONVEYOR_RELEASE=20260101T000000Z-abcdef12\n" if kind == "gitlab" else \
        "id=20260101T000000Z-abcdef12\nbuilt=true\n"
    assert output.read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("kind", ["gitlab", "github"])
def test_a_build_that_fails_fails_the_build_job_with_its_exit_code(kind: str, tmp_path: Path) -> None:
    done, output = run_build_script(kind, tmp_path, 'echo "conveyor.yml:3: artifact.path: no such file" >&2; exit 2\n')
    assert done.returncode == 2
    assert "artifact.path: no such file" in done.stderr
    assert not output.exists() or "20" not in output.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["gitlab", "github"])
def test_a_given_release_is_passed_on_without_building(kind: str, tmp_path: Path) -> None:
    done, output = run_build_script(kind, tmp_path, "echo never >&2; exit 7\n", given="20251231T235959Z-0badcafe")
    assert done.returncode == 0, done.stderr
    assert "20251231T235959Z-0badcafe" in output.read_text(encoding="utf-8")


# -- GitHub ---------------------------------------------------------------------------------------------


def test_github_uses_only_documented_keys() -> None:
    workflow = github_doc(golden_pipeline())
    assert set(workflow) <= GITHUB_WORKFLOW
    for name, job in workflow["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name)
        assert set(job) <= GITHUB_JOB, (name, set(job) - GITHUB_JOB)
        for needed in job.get("needs", []):
            assert needed in workflow["jobs"]
        for step in job["steps"]:
            assert set(step) <= GITHUB_STEP, (name, step)
            assert ("uses" in step) != ("run" in step), (name, step)


def test_github_runs_on_dispatch_with_environment_region_and_release_and_on_push() -> None:
    workflow = github_doc(golden_pipeline())
    assert "push" in workflow["on"]
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["environment"] == {"description": "The environment to deploy to", "type": "choice",
                                     "required": True, "options": ["staging", "production"]}
    assert inputs["region"]["options"] == ["everywhere", "ca", "uk", "us", "za"]
    assert inputs["region"]["default"] == "everywhere"
    assert inputs["release"]["type"] == "string"
    assert inputs["release"]["required"] is False
    assert workflow["permissions"] == {"contents": "read"}


def test_github_builds_once_and_hands_the_release_id_on_as_an_output() -> None:
    jobs = github_doc(golden_pipeline())["jobs"]
    build = jobs["build"]
    assert build["outputs"]["release"] == "${{ steps.release.outputs.id }}"
    step = next(s for s in build["steps"] if s.get("id") == "release")
    assert "conveyor build --json" in step["run"]
    assert step["env"] == {"GIVEN_RELEASE": "${{ inputs.release }}"}  # never pasted into the script
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == ".conveyor/artifacts"
    assert upload["with"]["include-hidden-files"] is True  # the store is under .conveyor/
    for name in ("plan_production", "deploy_staging", "deploy_production"):
        assert "build" in jobs[name]["needs"]
        assert any(s.get("uses", "").startswith("actions/download-artifact") for s in jobs[name]["steps"])


def test_github_deploy_jobs_use_environments_and_one_uncancelled_concurrency_group_each() -> None:
    jobs = github_doc(golden_pipeline())["jobs"]
    for env in ("staging", "production"):
        job = jobs[f"deploy_{env}"]
        assert job["environment"] == {"name": env}
        assert job["concurrency"] == {"group": f"conveyor-www-{env}", "cancel-in-progress": False}
        run = job["steps"][-1]["run"]
        assert f'conveyor deploy {env} "$@" --release "$RELEASE" --yes' in run
        assert 'if [ "$code" -eq 3 ]; then' in run
        assert "::warning" in run
    assert jobs["deploy_production"]["needs"] == ["build", "plan_production"]
    plan = jobs["plan_production"]["steps"][-1]["run"]
    assert 'conveyor plan production "$@" --release "$RELEASE" || code=$?' in plan
    assert "conveyor windows production" in plan
    # A gate that would hold now is a warning: the deploy job still runs, and checks every gate again.
    assert 'if [ "$code" -eq 3 ]; then\n  echo "::warning title=conveyor would hold production::' in plan
    assert 'elif [ "$code" -ne 0 ]; then\n  exit "$code"\nfi\n' in plan


def test_github_deploys_automatically_on_push_to_the_default_branch_only_where_auto_is_true() -> None:
    jobs = github_doc(golden_pipeline())["jobs"]
    pushed = "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)"
    assert pushed in jobs["deploy_staging"]["if"]
    assert 'if [ "$GITHUB_EVENT_NAME" = push ]; then set -- "$@" --auto; fi' in jobs["deploy_staging"]["steps"][-1][
        "run"]
    assert "push" not in jobs["plan_production"]["if"]
    assert "inputs.environment == 'production'" in jobs["plan_production"]["if"]
    assert "--auto" not in jobs["deploy_production"]["steps"][-1]["run"]
    assert pushed in jobs["build"]["if"]


def test_github_maps_the_variables_the_config_reads_from_secrets() -> None:
    workflow = github_doc(golden_pipeline())
    assert workflow["env"] == {
        "CONVEYOR_CONFIG": "conveyor.yml",
        "CONVEYOR_STATE_URL": "${{ secrets.CONVEYOR_STATE_URL }}",
        "SLACK_TOKEN": "${{ secrets.SLACK_TOKEN || vars.SLACK_TOKEN }}",
    }


def test_github_asks_for_write_access_only_when_deployments_push_release_tags() -> None:
    assert "permissions" not in github_doc(golden_pipeline())["jobs"]["deploy_production"]
    settings = golden_settings()
    settings["git"] = {"tags": True, "push": "origin"}
    assert github_doc(pipeline_of(settings))["jobs"]["deploy_production"]["permissions"] == {"contents": "write"}


# -- commands that change hosts ---------------------------------------------------------------------------


def host_changing_lines(doc: Any) -> list[str]:
    """Every script line of a generated document that runs a command changing hosts."""
    found = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack += list(node.values())
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, str):
            found += [line for line in node.splitlines() if HOST_CHANGING.search(line)]
    return found


@pytest.mark.parametrize("auto_production", [False, True])
@pytest.mark.parametrize("migrations", [False, True])
def test_every_command_that_changes_hosts_passes_yes(auto_production: bool, migrations: bool) -> None:
    # Without a terminal, conveyor refuses (exit 2) to change hosts unless --yes is given: a CI job has none.
    settings = golden_settings()
    settings["environments"]["production"]["auto"] = auto_production
    if migrations:
        settings["migrations"] = MIGRATIONS
    pipeline = pipeline_of(settings)
    gitlab_lines = host_changing_lines(gitlab_doc(pipeline))
    github_lines = host_changing_lines(github_doc(pipeline))
    assert len(gitlab_lines) == 1 + len(REGIONS) + 1  # staging, each region, everywhere
    assert len(github_lines) == 2  # staging, production
    for line in gitlab_lines + github_lines:
        assert re.search(r"\s--yes(\s|$)", line), line
    assert unconfirmed_commands(gitlab_doc(pipeline)) == []
    assert unconfirmed_commands(github_doc(pipeline)) == []


def test_the_drift_check_names_each_command_that_would_be_refused_without_yes() -> None:
    committed = load_yaml(gitlab.generate(golden_pipeline()).replace(" --yes", ""))
    found = unconfirmed_commands(committed)
    assert [u.path for u in found] == ["deploy_staging.script[0]",
                                       *[f"deploy_production_{r}.script[0]" for r in REGIONS],
                                       "deploy_production_everywhere.script[0]"]
    assert found[0] == Unconfirmed("deploy_staging.script[0]",
                                   'conveyor deploy staging --release "$CONVEYOR_RELEASE" --auto')
    assert "without --yes" in found[0].describe()
    assert "exit 2" in found[0].describe()
    workflow = load_yaml(github.generate(golden_pipeline()).replace(" --yes", ""))
    assert [u.path for u in unconfirmed_commands(workflow)] == [
        "jobs.deploy_staging.steps[4].run", "jobs.deploy_production.steps[4].run"]


@pytest.mark.parametrize(("line", "refused"), [
    ('conveyor deploy production --release "$R" --yes', False),
    ("conveyor rollback production -y", False),
    ("conveyor -c deploy/conveyor.yml rollback production --region za", True),
    ("conveyor --config=ci.yml converge --env production --region za --role web", True),
    ('CONVEYOR_USER=ci .venv/bin/conveyor deploy staging || code=$?', True),
    ("if conveyor deploy staging; then echo done; fi", True),
    ("conveyor deploy staging; conveyor rollback staging --yes", True),  # each command needs its own
    ("conveyor plan production --region za", False),
    ("conveyor db status production", False),
    ('echo "conveyor deploy is what the next job runs"', False),
    ("conveyor deployments", False),
])
def test_which_shell_lines_would_be_refused_without_a_terminal(line: str, refused: bool) -> None:
    assert bool(unconfirmed_commands({"job": {"script": [line]}})) is refused


def test_a_command_continued_over_lines_is_read_whole() -> None:
    script = "conveyor deploy production \\\n  --release \"$R\" \\\n  --yes\n"
    assert unconfirmed_commands({"job": {"script": [script]}}) == []
    assert unconfirmed_commands({"job": {"script": script.replace("--yes", "--auto")}}) == [
        Unconfirmed("job.script", 'conveyor deploy production    --release "$R"    --auto')]


# -- reading the config ---------------------------------------------------------------------------------


def test_a_config_reading_unset_variables_still_generates(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yml"
    settings = golden_settings()
    settings["notify"] = ["${SLACK_WEBHOOK}", "mailto://ops:${MAIL_PASSWORD}@example.com"]
    settings["state"] = "${DATABASE_URL}"
    path.write_text("# ${NOT_A_REFERENCE} in a comment\n" + yaml.safe_dump(settings), encoding="utf-8")
    config, variables = read_config(path, environ={})
    assert variables == ["DATABASE_URL", "MAIL_PASSWORD", "SLACK_WEBHOOK"]
    assert config.app == "www"


def test_a_broken_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yml"
    path.write_text("app: www\nenvironments: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        read_config(path, environ={})
    with pytest.raises(ConfigError, match="no such file"):
        read_config(tmp_path / "missing.yml", environ={})


# -- drift ----------------------------------------------------------------------------------------------


def test_files_holding_the_same_data_are_equal_whatever_their_comments_and_layout() -> None:
    text = gitlab.generate(golden_pipeline())
    reformatted = yaml.safe_dump(load_yaml(text), default_flow_style=True, width=60)
    assert compare(load_yaml(reformatted), load_yaml(text)) == []


def test_a_difference_is_named_by_its_path_with_both_values() -> None:
    generated = gitlab_doc(golden_pipeline())
    committed = copy.deepcopy(generated)
    committed["deploy_staging"]["rules"][1]["when"] = "manual"
    del committed["deploy_production_us"]
    committed["deploy_legacy"] = {"script": ["./deploy.sh"]}
    committed["stages"] = ["build", "deploy"]
    found = compare(committed, generated)
    assert [(d.path, d.change) for d in found] == [
        ("stages", "changed"),
        ("deploy_staging.rules[1].when", "changed"),
        ("deploy_production_us", "missing"),
        ("deploy_legacy", "extra"),
    ]
    assert found[0].describe() == 'stages: missing from the file: "staging", "pre_deploy", "info"'
    assert found[1].describe() == 'deploy_staging.rules[1].when: the file has "manual", the config gives "on_success"'
    assert found[2].describe() == "deploy_production_us: missing from the file"  # a whole job: its name says it
    assert found[3].describe() == "deploy_legacy: in the file but not generated from the config"
    reordered = compare({"needs": ["b", "a"]}, {"needs": ["a", "b"]})
    assert reordered[0].describe() == 'needs: in another order in the file; the config gives ["a", "b"]'
    assert found[2].to_json()["file"] is None


def test_lists_of_mappings_are_compared_item_by_item() -> None:
    found = compare({"steps": [{"run": "a"}]}, {"steps": [{"run": "a"}, {"run": "b"}]})
    assert found == [Difference("steps[1]", MISSING, {"run": "b"})]


def test_yaml_words_stay_words_as_ci_systems_read_them() -> None:
    assert load_yaml("on:\n  push:\nx: yes\ny: true\n") == {"on": {"push": None}, "x": "yes", "y": True}
    assert load_yaml("a: !reference [.setup, script]\n") == {"a": {"!reference": [".setup", "script"]}}


# -- CI detection -----------------------------------------------------------------------------------------


def test_gitlab_ci_is_detected_from_its_variables() -> None:
    found = detect({
        "GITLAB_CI": "true", "GITLAB_USER_LOGIN": "alice", "CI_PIPELINE_URL": "https://gitlab.example.com/p/-/pipelines/7",
        "CI_JOB_URL": "https://gitlab.example.com/p/-/jobs/70", "CI_COMMIT_SHA": "abc123", "CI_COMMIT_BRANCH": "main",
    })
    assert found == CIEnvironment(kind="gitlab", user="alice", pipeline_url="https://gitlab.example.com/p/-/pipelines/7",
                                  job_url="https://gitlab.example.com/p/-/jobs/70", commit_sha="abc123", branch="main")
    merge_request = detect({"GITLAB_CI": "true", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature"})
    assert merge_request is not None
    assert merge_request.branch == "feature"


def test_github_actions_is_detected_from_its_variables() -> None:
    found = detect({
        "GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "bob", "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/www", "GITHUB_RUN_ID": "42", "GITHUB_SHA": "def456",
        "GITHUB_REF_TYPE": "branch", "GITHUB_REF_NAME": "main",
    })
    assert found is not None
    assert found.to_json() == {"kind": "github", "user": "bob",
                               "pipeline_url": "https://github.com/acme/www/actions/runs/42", "job_url": None,
                               "commit_sha": "def456", "branch": "main"}
    tag = detect({"GITHUB_ACTIONS": "true", "GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v1"})
    assert tag is not None
    assert tag.branch is None


def test_outside_ci_nothing_is_detected() -> None:
    assert detect({}) is None
    assert detect({"CI": "true", "GITLAB_CI": "false"}) is None


def test_detect_reads_the_real_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("GITLAB_", "GITHUB_", "CI_")):
            monkeypatch.delenv(name)
    assert detect() is None
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("GITLAB_USER_LOGIN", "carol")
    found = detect()
    assert found is not None
    assert (found.kind, found.user) == ("gitlab", "carol")


# -- log sections ---------------------------------------------------------------------------------------


def test_section_markers_are_the_ones_gitlab_and_github_read() -> None:
    assert gitlab_start("conveyor_deploy_1_wave_1", "wave 1: ca", 1700000000) == (
        "\x1b[0Ksection_start:1700000000:conveyor_deploy_1_wave_1[collapsed=true]\r\x1b[0Kwave 1: ca")
    assert gitlab_end("conveyor_deploy_1_wave_1", 1700000005) == (
        "\x1b[0Ksection_end:1700000005:conveyor_deploy_1_wave_1\r\x1b[0K")
    assert gitlab_start("a b:c", "two\nlines", 1, collapsed=False) == "\x1b[0Ksection_start:1:a_b_c\r\x1b[0Ktwo lines"
    assert (github_start("wave 2: za"), github_end()) == ("::group::wave 2: za", "::endgroup::")


@pytest.mark.parametrize("kind", ["gitlab", "github"])
def test_opening_a_section_closes_the_one_before_and_closing_twice_writes_once(kind: Any) -> None:
    out = io.StringIO()
    ticks = iter(range(100, 200))
    sections = Sections(kind, out, clock=lambda: next(ticks))
    sections.open("w1", "wave 1")
    sections.open("w2", "wave 2")
    sections.close()
    sections.close()
    lines = out.getvalue().rstrip("\n").split("\n")  # not splitlines: GitLab markers hold a \r
    if kind == "gitlab":
        assert [line.split(":")[0].replace("\x1b[0K", "") for line in lines] == [
            "section_start", "section_end", "section_start", "section_end"]
        assert "section_end:101:w1" in lines[1]
        assert "section_end:103:w2" in lines[3]
    else:
        assert lines == ["::group::wave 1", "::endgroup::", "::group::wave 2", "::endgroup::"]
