"""What is shipped, in `conveyor.yml`: how a release is built and where it is kept (`artifact:`), the paths
that outlive releases on a host (`shared:`), and the schema migrations a release carries (`migrations:`).
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from conveyor.config.base import Strict
from conveyor.config.s3 import parse_s3_url
from conveyor.values import Duration, check_name, http_url


class Artifact(Strict):
    """Where the release comes from and where built releases are kept."""

    build: str | None = None
    delta: bool = True                 # send hosts only what changed since the release they run
    # Of the tarball in the store, as hosts receive it. auto: zstd, and a gzip copy (made once, when first
    # needed) for any host that lacks zstd.
    compression: Literal["auto", "gzip", "zstd", "none"] = "auto"
    path: str = "dist"
    store: str = Field(default=".conveyor/artifacts",
                       description="a directory (relative to conveyor.yml) or s3://bucket/prefix")
    stores: dict[str, str] = Field(default_factory=dict, description="region → s3://bucket/prefix: a copy of "
                                   "each release deployed there, so hosts download inside their region")
    endpoint_url: str | None = Field(default=None, description="an S3-compatible endpoint instead of AWS "
                                     "(MinIO, a test server), like http://127.0.0.1:9000")

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if "://" in value:
            if not value.startswith("s3://"):
                raise ValueError(f"expected a directory or s3://bucket/prefix, got {value!r}")
            parse_s3_url(value)  # ValueError for a bad bucket name or a '..' in the prefix
        return value

    @field_validator("stores")
    @classmethod
    def _stores(cls, value: dict[str, str]) -> dict[str, str]:
        for region, url in value.items():
            check_name(region, "region")
            try:
                parse_s3_url(url)
            except ValueError as exc:
                raise ValueError(f"{region}: {exc}") from None
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(
            value, f"expected an http:// or https:// URL like http://127.0.0.1:9000, got {value!r}")

    @model_validator(mode="after")
    def _s3_settings(self) -> Artifact:
        if not self.store.startswith("s3://") and (self.stores or self.endpoint_url):
            raise ValueError("stores and endpoint_url are for an S3 store: set store: s3://bucket/prefix too")
        return self


def _shared_path(item: str) -> str:
    """A persistent path linked into each release: relative, inside the release, one line."""
    if any(c in item for c in "\n\r\0"):
        raise ValueError(f"shared path {item!r} contains a control character")
    if not item or item.startswith("/"):
        raise ValueError(f"shared path {item!r} must be relative to the release, like log or tmp/uploads")
    normal = posixpath.normpath(item)
    if normal == "." or normal.startswith("..") or ".." in item.split("/"):
        raise ValueError(f"shared path {item!r} leaves the release")
    return normal


SharedPath = Annotated[str, AfterValidator(_shared_path)]


class Migrations(Strict):
    """The team's own schema migration tool, and what Conveyor needs to know to run it in the right phase.

    Migrations are files in `dir` (relative to the release: they ship with the code). A file whose first
    non-empty line is `-- conveyor: contract` (or that lies under a `contract/` directory) is a contract
    migration: it runs only once every region runs a release that carries it. The others are expand
    migrations: they run in each region before its code switches.
    """

    dir: str = Field(description="the migrations directory, relative to the release")
    dialect: Literal["mysql", "mariadb", "postgresql"]
    version: str | None = Field(default=None, description="the database server's version, like 8.0.35")
    transaction: Literal["per-file", "none"] | None = Field(
        default=None, description="how your tool runs each file: per-file (inside one transaction: Django, Rails, "
                                  "Flyway on PostgreSQL) or none; default per-file for postgresql, none for mysql "
                                  "and mariadb")
    apply: str = Field(description="applies ONE migration: run in the release directory with "
                                   "CONVEYOR_MIGRATION (its name) and CONVEYOR_MIGRATION_PATH set")
    status: str = Field(description="prints the names of the applied migrations, one per line")
    run_on: str = Field(default="local", description="a role (one of its hosts per region runs the "
                                                     "commands), or `local` (this machine)")
    timeout: Duration = Field(default=600.0, description="how long one command may take")

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        normal = posixpath.normpath(value)
        if not value or value.startswith("/") or normal == ".." or normal.startswith("../") \
                or any(c in value for c in "\n\r\0"):
            raise ValueError(f"expected a directory inside the release, like db/migrations, got {value!r}")
        return normal
