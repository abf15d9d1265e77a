"""Who is deploying: CONVEYOR_USER, then the CI system's user, then the OS user."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping

# In the order they are trusted: GitLab's login, GitLab's email, GitHub's actor.
_CI_USER_VARIABLES = ("GITLAB_USER_LOGIN", "GITLAB_USER_EMAIL", "GITHUB_ACTOR")


def ci_user(environ: Mapping[str, str] | None = None) -> str | None:
    """The user a CI system says started the job, or None outside CI."""
    env = os.environ if environ is None else environ
    for name in _CI_USER_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def current_user(environ: Mapping[str, str] | None = None) -> str:
    """The name recorded in history, locks and journals."""
    env = os.environ if environ is None else environ
    value = env.get("CONVEYOR_USER", "").strip() or ci_user(env)
    if value:
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
