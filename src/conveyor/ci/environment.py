"""Which CI system runs us, read from the variables it sets: GitLab CI or GitHub Actions.

Notifications link to `pipeline_url`; the terminal display uses `kind` to fold its log into sections.
Outside a recognised CI system `detect()` returns None.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from conveyor.identity import ci_user

__all__ = ["CIEnvironment", "CIKind", "detect"]

CIKind = Literal["gitlab", "github"]


@dataclass(frozen=True)
class CIEnvironment:
    """The CI job we run in: its system, who started it, where to see it, and what it builds."""

    kind: CIKind
    user: str | None
    pipeline_url: str | None   # the pipeline (GitLab) or workflow run (GitHub)
    job_url: str | None        # the job itself; GitHub does not tell a job its own URL
    commit_sha: str | None
    branch: str | None         # None for a tag pipeline

    def to_json(self) -> dict[str, str | None]:
        """The fields as a JSON-ready mapping."""
        return asdict(self)


def detect(environ: Mapping[str, str] | None = None) -> CIEnvironment | None:
    """The CI job described by `environ` (default: our environment), or None when not in CI."""
    env = os.environ if environ is None else environ
    if env.get("GITLAB_CI") == "true":
        return _gitlab(env)
    if env.get("GITHUB_ACTIONS") == "true":
        return _github(env)
    return None


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _gitlab(env: Mapping[str, str]) -> CIEnvironment:
    # A merge request pipeline has no CI_COMMIT_BRANCH; its source branch is what it builds.
    branch = _get(env, "CI_COMMIT_BRANCH") or _get(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
    return CIEnvironment(
        kind="gitlab",
        user=ci_user(env),
        pipeline_url=_get(env, "CI_PIPELINE_URL"),
        job_url=_get(env, "CI_JOB_URL"),
        commit_sha=_get(env, "CI_COMMIT_SHA"),
        branch=branch,
    )


def _github(env: Mapping[str, str]) -> CIEnvironment:
    server, repository, run = _get(env, "GITHUB_SERVER_URL"), _get(env, "GITHUB_REPOSITORY"), _get(env, "GITHUB_RUN_ID")
    run_url = f"{server}/{repository}/actions/runs/{run}" if server and repository and run else None
    # A pull request's GITHUB_REF_NAME is `<number>/merge`; the branch it builds is GITHUB_HEAD_REF.
    branch = _get(env, "GITHUB_HEAD_REF")
    if branch is None and env.get("GITHUB_REF_TYPE") == "branch":
        branch = _get(env, "GITHUB_REF_NAME")
    return CIEnvironment(
        kind="github",
        user=ci_user(env),
        pipeline_url=run_url,
        job_url=None,
        commit_sha=_get(env, "GITHUB_SHA"),
        branch=branch,
    )
