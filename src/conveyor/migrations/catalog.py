"""The migrations a release carries: the `*.sql` files under `migrations.dir` in its tarball.

A migration is named by its path relative to that directory. Migrations run in the order of their file
names (`0001_…`, `0002_…`), wherever they lie below the directory. A file under a `contract/`
subdirectory, or whose first non-empty line is `-- conveyor: contract`, is a **contract** migration; every
other one is an **expand** migration.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from conveyor.artifact.compression import open_tar, read_errors
from conveyor.artifact.release import Release
from conveyor.errors import ArtifactError

Phase = Literal["expand", "contract"]
CONTRACT_MARK = "-- conveyor: contract"
MAX_MIGRATION_BYTES = 4 << 20


@dataclass(frozen=True)
class Migration:
    """One migration file of a release."""

    name: str          # relative to migrations.dir, e.g. `0004_drop_legacy.sql` or `contract/0004_….sql`
    phase: Phase
    sha256: str
    text: str

    def to_json(self) -> dict[str, Any]:
        """What a release records about it."""
        return {"name": self.name, "phase": self.phase, "sha256": self.sha256}


def phase_of(name: str, text: str) -> Phase:
    """Contract when under `contract/` or marked on its first non-empty line; expand otherwise."""
    if "contract" in posixpath.dirname(name).split("/"):
        return "contract"
    for line in text.splitlines():
        if line.strip():
            return "contract" if line.strip().lower().replace("  ", " ") == CONTRACT_MARK else "expand"
    return "expand"


def order_key(migration: Migration) -> tuple[str, str]:
    """Migrations run in file-name order, then path order for equal names."""
    return posixpath.basename(migration.name), migration.name


def migrations_in_tarball(tarball: Path, directory: str) -> list[Migration]:
    """The migrations under `directory` of a release tarball, in the order they run."""
    prefix = directory.strip("/") + "/"
    found: list[Migration] = []
    try:
        with open_tar(tarball) as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if not (member.isfile() and name.startswith(prefix) and name.endswith(".sql")):
                    continue
                if member.size > MAX_MIGRATION_BYTES:
                    raise ArtifactError(f"migration {name} is larger than {MAX_MIGRATION_BYTES >> 20} MiB")
                source = archive.extractfile(member)
                assert source is not None
                data = source.read()
                text = data.decode("utf-8", "replace")
                relative = name[len(prefix):]
                found.append(Migration(relative, phase_of(relative, text), hashlib.sha256(data).hexdigest(), text))
    except read_errors() as exc:
        raise ArtifactError(f"cannot read the migrations of {tarball.name}: {exc}") from exc
    return sorted(found, key=order_key)


def migrations_of(release: Release, directory: str) -> list[Migration]:
    """The migrations a release carries."""
    return migrations_in_tarball(release.path, directory)
