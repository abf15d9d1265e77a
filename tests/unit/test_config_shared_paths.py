"""shared: no shared path may lie under another, as `conveyor validate` says it: `FILE:LINE: shared.N: ...`.

A host links each shared path to its own shared/ whole, so a path under another would be written through that
link; the host scripts refuse such a list too (exit SHARED_PATH_UNSAFE), but only once a deployment reaches a host.
"""

from __future__ import annotations

import pytest

from conveyor.config.loader import parse_config
from conveyor.errors import ConfigError

FILE = "conveyor.yml"
ONE_HOST = "{uk: {hosts: {web: [web-1]}}}"


def validate(shared: str) -> list[str]:
    """The problem lines `conveyor validate` prints for a config with this `shared:` value (none if it parses)."""
    text = f"app: www\nroles: {{web: {{}}}}\nshared: {shared}\nenvironments: {{staging: {{regions: {ONE_HOST}}}}}\n"
    try:
        parse_config(text, FILE, env={})
    except ConfigError as exc:
        return [str(problem) for problem in exc.problems]
    return []


UNDER = "which shares all of it"

CASES = [
    # (shared:, the problem lines)
    ("[storage, storage/cache]",
     [f"conveyor.yml:3: shared.1: shared path 'storage/cache' lies under shared path 'storage', {UNDER}: "
      "list only 'storage'"]),
    ("[storage/cache, storage]",
     [f"conveyor.yml:3: shared.0: shared path 'storage/cache' lies under shared path 'storage', {UNDER}: "
      "list only 'storage'"]),
    ("[log, storage, storage/cache/thumbs, tmp]",
     [f"conveyor.yml:3: shared.2: shared path 'storage/cache/thumbs' lies under shared path 'storage', {UNDER}: "
      "list only 'storage'"]),
    ("[storage/, ./storage/cache]",  # written differently, the same paths
     [f"conveyor.yml:3: shared.1: shared path './storage/cache' lies under shared path 'storage', {UNDER}: "
      "list only 'storage'"]),
    ("[a, a/b, a/b/c]",
     [f"conveyor.yml:3: shared.1: shared path 'a/b' lies under shared path 'a', {UNDER}: list only 'a'",
      f"conveyor.yml:3: shared.2: shared path 'a/b/c' lies under shared path 'a', {UNDER}: list only 'a'"]),
    ("\n  - storage\n  - storage/cache",
     [f"conveyor.yml:5: shared.1: shared path 'storage/cache' lies under shared path 'storage', {UNDER}: "
      "list only 'storage'"]),
    # Not nested: siblings, a name that only starts like another, a path the model refuses on its own.
    ("[log, tmp/uploads]", []),
    ("[storage, storage2, storage-cache]", []),
    ("[storage/cache, storage/cache2]", []),
    ("[storage]", []),
    ("[]", []),
    ("[/storage, /storage/cache]",
     ["conveyor.yml:3: shared.0: shared path '/storage' must be relative to the release, like log or tmp/uploads",
      "conveyor.yml:3: shared.1: shared path '/storage/cache' must be relative to the release, like log or "
      "tmp/uploads"]),
]


@pytest.mark.parametrize(("shared", "expected"), CASES, ids=[shared.strip() for shared, _ in CASES])
def test_a_shared_path_under_another_is_refused_with_its_file_and_line(shared: str, expected: list[str]) -> None:
    assert validate(shared) == expected
