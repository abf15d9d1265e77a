"""Who is deploying: CONVEYOR_USER, then the CI system's user, then the OS user."""

from __future__ import annotations

import getpass
import os

_CI_USER_VARIABLES = ("GITLAB_USER_LOGIN", "GITLAB_USER_EMAIL", "GITHUB_ACTOR")


def current_user(environ: dict[str, str] | None = None) -> str:
    """The name recorded in history, locks and journals."""
    env = os.environ if environ is None else environ
    for name in ("CONVEYOR_USER", *_CI_USER_VARIABLES):
        value = env.get(name, "").strip()
        if value:
            return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
