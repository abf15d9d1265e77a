"""git for releases: the commits between two releases, `deploy/<env>/<region>/<release-id>` tags, pushing them.

- git.py: git as a subprocess: commits between two shas, tagging, pushing;
- changes.py: the commit each release was built from, and the commits between two releases (what `plan`,
  `diff` and notifications show as going out);
- tagging.py: the deployment subscriber that tags (and pushes) what each region now runs.

Like the other integrations it is given a narrow context (conveyor.context), never the Workspace.
"""

from conveyor.vcs.git import (
    Changes,
    Commit,
    GitError,
    TagResult,
    commits_between,
    push_tags,
    tag_name,
    tag_release,
)

__all__ = [
    "Changes",
    "Commit",
    "GitError",
    "TagResult",
    "commits_between",
    "push_tags",
    "tag_name",
    "tag_release",
]
