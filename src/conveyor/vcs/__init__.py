"""git for releases: the commits between two releases, `deploy/<env>/<region>/<release-id>` tags, pushing them.

`conveyor.vcs.changes` answers "what is going out" for `plan` and `diff`; `conveyor.vcs.tagging` is the
deployment subscriber that tags (and pushes) what each region now runs.
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
