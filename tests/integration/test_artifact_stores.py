"""One behaviour table, two stores: what every `ArtifactStore` does, run against `LocalStore` (a directory) and
`S3Store` (a bucket on moto's server, 127.0.0.1).

A "machine" is a store over the same place seen from elsewhere: for a local store, the same directory (a shared
filesystem); for S3, the same bucket with a cache of its own, which starts empty. What only one kind does (an S3
cache, region buckets) is tested in test_s3_store.py and test_artifact_store.py.
"""

from __future__ import annotations

import hashlib
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.artifact import ArtifactStore, LocalStore, Release, build_release
from conveyor.artifact.pointers import PointerFiles
from conveyor.artifact.s3 import S3Store
from conveyor.errors import ArtifactError

pytestmark = pytest.mark.integration

REGION = "eu-west-2"  # the moto fixture's AWS_DEFAULT_REGION
UNKNOWN = "20200101T000000Z-0badc0de"
NOW = datetime(2026, 3, 4, 9, 30, 0, tzinfo=UTC)
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
POINTER_FIELDS = {"app", "environment", "region", "release", "sha256", "artifact", "deployment_id", "updated_at",
                  "updated_by"}

Machine = Callable[[str], ArtifactStore]


@pytest.fixture(params=["local", "s3"])
def machine(request: pytest.FixtureRequest, tmp_path: Path) -> Machine:
    """`machine(name)`: the test's store as the machine called `name` sees it."""
    if request.param == "local":
        return lambda _name: LocalStore(tmp_path / "store")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    import boto3

    bucket = f"conveyor-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return lambda name: S3Store(f"s3://{bucket}/shop", tmp_path / name / "cache", endpoint_url=endpoint)


@pytest.fixture
def store(machine: Machine) -> ArtifactStore:
    """The store of the machine that builds."""
    return machine("ci")


def build(store: ArtifactStore, source: Path, version: str, now: datetime = NOW) -> Release:
    """What `conveyor build` does: pack a directory into the store."""
    source.mkdir(parents=True, exist_ok=True)
    (source / "VERSION").write_text(f"{version}\n", encoding="utf-8")
    release, created = build_release(source, store, user="alice", now=now, git=None)
    assert created
    return release


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- releases ------------------------------------------------------------------------------------------------

def test_an_empty_store_knows_no_release(store: ArtifactStore) -> None:
    assert store.list() == []
    assert UNKNOWN not in store
    assert store.cached(UNKNOWN) is None
    assert store.find_by_sha256("0" * 64) is None
    with pytest.raises(ArtifactError, match=f"{UNKNOWN}: unknown release ID"):
        store.get(UNKNOWN)
    with pytest.raises(ArtifactError, match=f"{UNKNOWN}: unknown release ID"):
        store.open(UNKNOWN)


@pytest.mark.parametrize("not_an_id", ["", "latest", "../20200101T000000Z-0badc0de", "20200101T000000Z", 42, None])
def test_what_is_not_a_release_id_is_in_no_store(store: ArtifactStore, tmp_path: Path, not_an_id: object) -> None:
    build(store, tmp_path / "app", "1")
    assert not_an_id not in store


def test_a_release_built_on_one_machine_is_listed_got_and_opened_on_another(
        machine: Machine, tmp_path: Path) -> None:
    built = build(machine("ci"), tmp_path / "app", "1")
    other = machine("laptop")
    assert built.id in other
    assert [r.id for r in other.list()] == [built.id]
    got = other.get(built.id)
    assert (got.id, got.sha256, got.size) == (built.id, built.sha256, built.size)
    assert got.path.parent == other.root  # the tarball is on this machine
    assert sha256_of(got.path.read_bytes()) == built.sha256
    with other.open(built.id) as tarball:
        assert sha256_of(tarball.read()) == built.sha256
    assert other.find_by_sha256(built.sha256) == got
    cached = other.cached(built.id)
    assert cached is not None
    assert cached.sha256 == built.sha256


def test_releases_are_listed_newest_first(store: ArtifactStore, tmp_path: Path) -> None:
    first = build(store, tmp_path / "app", "1", NOW)
    second = build(store, tmp_path / "app", "2", NOW + timedelta(minutes=1))
    third = build(store, tmp_path / "app", "3", NOW - timedelta(days=1))  # a clock behind: sorts after all the same
    assert [r.id for r in store.list()] == [third.id, second.id, first.id]


def test_the_same_content_is_the_same_release(store: ArtifactStore, tmp_path: Path) -> None:
    first = build(store, tmp_path / "app", "1")
    again, created = build_release(tmp_path / "app", store, user="bob", now=NOW + timedelta(hours=1), git=None)
    assert (again.id, created) == (first.id, False)
    assert [r.id for r in store.list()] == [first.id]


def test_adding_refuses_a_taken_id_and_a_manifest_without_one(store: ArtifactStore, tmp_path: Path) -> None:
    release = build(store, tmp_path / "app", "1")
    copy = tmp_path / "copy.tar.gz"
    copy.write_bytes(release.path.read_bytes())
    with pytest.raises(ArtifactError, match=f"release {release.id} is already in"):
        store.add(copy, release.manifest())
    with pytest.raises(ArtifactError, match="cannot add a release with the id None"):
        store.add(copy, {**release.manifest(), "id": None})
    assert [r.id for r in store.list()] == [release.id]


# -- pointers ------------------------------------------------------------------------------------------------

def test_a_pointer_is_read_back_whole_on_another_machine_and_moves_with_each_write(
        machine: Machine, tmp_path: Path) -> None:
    store = machine("ci")
    first = build(store, tmp_path / "app", "1")
    assert store.read_pointer("production", "za") is None
    document = store.write_pointer("production", "za", first.id, app="shop", deployment_id=7, user="alice",
                                   now=WHEN)
    assert set(document) == POINTER_FIELDS
    assert (document["release"], document["sha256"], document["deployment_id"], document["updated_at"]) == (
        first.id, first.sha256, 7, "2026-03-04T05:06:07+00:00")
    other = machine("new-host")
    assert other.read_pointer("production", "za") == document
    assert other.read_pointer("production", "uk") is None  # one region's pointer is not another's

    second = build(store, tmp_path / "app", "2", NOW + timedelta(minutes=1))
    PointerFiles(store, "shop", "bob").write("production", "za", second.id, 8)
    moved = other.read_pointer("production", "za")
    assert moved is not None
    assert (moved["release"], moved["deployment_id"], moved["updated_by"]) == (second.id, 8, "bob")
    assert [r.id for r in other.list()] == [second.id, first.id]  # pointers are not releases


def test_a_pointer_to_a_release_the_store_lacks_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    build(store, tmp_path / "app", "1")
    with pytest.raises(ArtifactError, match=f"{UNKNOWN}: unknown release ID"):
        store.write_pointer("production", "za", UNKNOWN, app="shop", deployment_id=1, user="alice")
    assert store.read_pointer("production", "za") is None


@pytest.mark.parametrize(("environment", "region"), [("..", "za"), ("production", "../x"), ("a/b", "za")])
def test_a_pointer_needs_names_the_config_allows(store: ArtifactStore, tmp_path: Path, environment: str,
                                                 region: str) -> None:
    release = build(store, tmp_path / "app", "1")
    with pytest.raises(ArtifactError, match=r"not a name conveyor\.yml allows"):
        store.write_pointer(environment, region, release.id, app="shop", deployment_id=1, user="alice")
    with pytest.raises(ArtifactError, match=r"not a name conveyor\.yml allows"):
        store.read_pointer(environment, region)


# -- where hosts download ------------------------------------------------------------------------------------

def test_a_region_without_a_store_of_its_own_is_served_by_the_store_itself(store: ArtifactStore) -> None:
    assert store.region_store("uk") is store
    assert store.region_store(None) is store


def test_a_download_url_serves_the_tarball_to_a_host_without_credentials(
        store: ArtifactStore, tmp_path: Path) -> None:
    release = build(store, tmp_path / "app", "1")
    url = store.download_url(release, "uk", expires=600)
    with urllib.request.urlopen(url, timeout=10) as response:  # what `curl` on a host does
        data = response.read()
    assert sha256_of(data) == release.sha256
