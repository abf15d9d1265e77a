"""The pipeline job a deployment runs in, when it runs in CI: a link for the people it notifies."""

from __future__ import annotations

from collections.abc import Mapping


def job_url(environ: Mapping[str, str]) -> str | None:
    """The web page of the running CI job: GitLab's CI_JOB_URL, or the GitHub Actions run; None elsewhere."""
    gitlab = environ.get("CI_JOB_URL", "").strip()
    if gitlab:
        return gitlab
    repository = environ.get("GITHUB_REPOSITORY", "").strip()
    run_id = environ.get("GITHUB_RUN_ID", "").strip()
    if repository and run_id:
        server = (environ.get("GITHUB_SERVER_URL", "").strip() or "https://github.com").rstrip("/")
        return f"{server}/{repository}/actions/runs/{run_id}"
    return None
