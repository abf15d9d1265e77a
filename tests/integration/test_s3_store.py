"""The S3 artifact store and region pointer files, against a real S3 API (moto's server on 127.0.0.1).

Each test has buckets of its own. Stores are built the way `conveyor build` builds into them
(`build_release`); a second store over the same bucket with an empty cache is a second machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.artifact import Release, build_release
from conveyor.artifact.pointers import PointerFiles
from conveyor.artifact.s3 import S3Store
from conveyor.engine.events import RegionFinished
from conveyor.errors import ArtifactError
from conveyor.operations.recording import StoreRecorder
from conveyor.state.store import Store

pytestmark = pytest.mark.integration

REGION = "eu-west-2"  # the moto fixture's AWS_DEFAULT_REGION
POINTER_FIELDS = {"app", "environment", "region", "release", "sha256", "artifact", "deployment_id", "updated_at",
                  "updated_by"}


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    """A boto3 client of the moto server, for looking behind the store's back."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def new_bucket(s3: Any) -> Callable[[], str]:
    """Make a bucket of this test's own and return its name."""

    def make() -> str:
        name = f"conveyor-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        return name

    return make


def store_for(moto_endpoint: str, url: str, cache: Path, **options: Any) -> S3Store:
    return S3Store(url, cache, endpoint_url=moto_endpoint, **options)


def build(store: S3Store, source: Path, version: str) -> Release:
    """What `conveyor build` does: pack a directory into the store."""
    source.mkdir(parents=True, exist_ok=True)
    (source / "VERSION").write_text(f"{version}\n", encoding="utf-8")
    (source / "index.html").write_text(f"<h1>{version}</h1>\n" * 50, encoding="utf-8")
    release, created = build_release(source, store, user="alice", now=datetime.now(UTC), git=None)
    assert created
    return release


def keys(s3: Any, bucket: str) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def version_in(data: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("VERSION")
        assert member is not None
        return member.read().decode().strip()


def test_a_release_built_into_s3_is_listed_read_and_opened_from_another_machine(
        moto_endpoint: str, s3: Any, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    bucket = new_bucket()
    builder = store_for(moto_endpoint, f"s3://{bucket}/shop", tmp_path / "ci" / "cache")
    release = build(builder, tmp_path / "app", "1.0")

    assert builder.root == tmp_path / "ci" / "cache" / bucket / "shop"
    assert release.path.parent == builder.root
    name = release.path.name  # the cache's file name is the object's name
    assert keys(s3, bucket) == {f"shop/releases/{name}", f"shop/releases/{release.id}.json"}
    stored = json.loads(s3.get_object(Bucket=bucket, Key=f"shop/releases/{release.id}.json")["Body"].read())
    assert stored == {**release.manifest(), "tarball": name}

    other = store_for(moto_endpoint, f"s3://{bucket}/shop", tmp_path / "laptop" / "cache")
    assert release.id in other
    assert "20000101T000000Z-00000000" not in other
    listed = other.list()
    assert [r.id for r in listed] == [release.id]
    assert not listed[0].path.exists()  # listing downloads nothing
    got = other.get(release.id)  # a cache miss: downloaded and verified
    assert got.path.parent == other.root
    assert got.sha256 == release.sha256
    assert hashlib.sha256(got.path.read_bytes()).hexdigest() == release.sha256
    with other.open(release.id) as tarball:
        assert version_in(tarball.read()) == "1.0"
    assert other.find_by_sha256(release.sha256) == got
    assert other.find_by_sha256("0" * 64) is None
    assert sorted(p.name for p in other.root.iterdir()) == sorted([name, f"{release.id}.json"])


def test_a_second_build_lists_first_and_the_same_content_is_the_same_release(
        moto_endpoint: str, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    url = f"s3://{new_bucket()}"
    store = store_for(moto_endpoint, url, tmp_path / "cache")
    first = build(store, tmp_path / "app", "1")
    second = build(store, tmp_path / "app", "2")
    assert [r.id for r in store.list()] == [second.id, first.id]
    # The same content on another machine (empty cache) finds the release in the bucket and caches it.
    other = store_for(moto_endpoint, url, tmp_path / "other")
    again, created = build_release(tmp_path / "app", other, user="bob", now=datetime.now(UTC), git=None)
    assert (again.id, created) == (second.id, False)
    assert again.path.is_file()


def test_a_manifest_without_its_tarball_is_not_a_release(
        moto_endpoint: str, s3: Any, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    bucket = new_bucket()
    store = store_for(moto_endpoint, f"s3://{bucket}/shop", tmp_path / "cache")
    release = build(store, tmp_path / "app", "1")
    # An upload that died after the manifest (or a tarball deleted by hand) ...
    orphan = {**release.manifest(), "id": "20200101T000000Z-0badc0de", "tarball": "20200101T000000Z-0badc0de.tar.gz"}
    s3.put_object(Bucket=bucket, Key="shop/releases/20200101T000000Z-0badc0de.json", Body=json.dumps(orphan))
    # ... or a tarball shorter than its manifest says.
    short = {**release.manifest(), "id": "20200101T000001Z-5407ba11", "tarball": "20200101T000001Z-5407ba11.tar.gz"}
    s3.put_object(Bucket=bucket, Key="shop/releases/20200101T000001Z-5407ba11.json", Body=json.dumps(short))
    s3.put_object(Bucket=bucket, Key="shop/releases/20200101T000001Z-5407ba11.tar.gz", Body=b"\x1f\x8b")

    other = store_for(moto_endpoint, f"s3://{bucket}/shop", tmp_path / "other")
    assert [r.id for r in other.list()] == [release.id]
    with pytest.raises(ArtifactError, match=r"20200101T000000Z-0badc0de.tar.gz: cannot download it: no such object"):
        other.get("20200101T000000Z-0badc0de")
    assert "20200101T000000Z-0badc0de" not in other.cache


def test_a_tarball_changed_in_the_bucket_is_refused_by_its_sha256(
        moto_endpoint: str, s3: Any, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    bucket = new_bucket()
    store = store_for(moto_endpoint, f"s3://{bucket}/shop", tmp_path / "cache")
    release = build(store, tmp_path / "app", "1")
    key = f"shop/releases/{release.path.name}"
    data = bytearray(release.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    other = store_for(moto_endpoint, f"s3://{bucket}/shop", tmp_path / "other")
    assert [r.id for r in other.list()] == [release.id]
    with pytest.raises(ArtifactError) as refused:
        other.get(release.id)
    assert f"s3://{bucket}/{key}: refused" in refused.value.message
    assert release.sha256 in refused.value.message
    assert release.id not in other.cache
    assert list(other.root.iterdir()) == []  # no partial download left behind
    # The machine that built it still has the good copy in its cache.
    assert store.get(release.id).sha256 == release.sha256


def test_a_missing_bucket_is_a_clear_artifact_error(moto_endpoint: str, tmp_path: Path) -> None:
    store = store_for(moto_endpoint, "s3://conveyor-no-such-bucket/shop", tmp_path / "cache")
    with pytest.raises(ArtifactError) as listing:
        store.list()
    assert listing.value.exit_code == 2
    assert listing.value.message.startswith("s3://conveyor-no-such-bucket/shop/releases/: cannot list it: "
                                            "NoSuchBucket: ")
    assert "create the bucket, or correct artifact.store" in listing.value.message
    assert "Traceback" not in listing.value.message
    with pytest.raises(ArtifactError, match="NoSuchBucket"):
        build(store, tmp_path / "app", "1")


def test_an_unreachable_endpoint_fails_fast_with_an_artifact_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    store = S3Store("s3://conveyor-unreachable/shop", tmp_path / "cache", endpoint_url=endpoint,
                    connect_timeout=1, read_timeout=1, attempts=2)
    started = time.monotonic()
    with pytest.raises(ArtifactError) as failed:
        store.list()
    assert time.monotonic() - started < 10
    assert f"cannot reach {endpoint}" in failed.value.message


def test_a_presigned_url_serves_the_tarball_without_credentials(
        moto_endpoint: str, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    store = store_for(moto_endpoint, f"s3://{new_bucket()}/shop", tmp_path / "cache")
    release = build(store, tmp_path / "app", "1")
    url = store.presigned_url(release, expires=600)
    assert url.startswith(f"{moto_endpoint}/{store.bucket}/shop/releases/{release.path.name}?")
    assert "X-Amz-Expires=600" in url
    with urllib.request.urlopen(url, timeout=10) as response:  # what `curl` on a host does
        data = response.read()
    assert data == release.path.read_bytes()
    with pytest.raises(ArtifactError, match="1 second to 7 days"):
        store.presigned_url(release, expires=8 * 24 * 3600)


def test_a_release_is_copied_to_a_region_store_once(
        moto_endpoint: str, s3: Any, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    main, za = new_bucket(), new_bucket()
    store = store_for(moto_endpoint, f"s3://{main}/shop", tmp_path / "cache", regions={"za": f"s3://{za}/www"})
    release = build(store, tmp_path / "app", "1")
    assert keys(s3, za) == set()

    assert store.replicate(release, "za") is True
    name = release.path.name
    assert keys(s3, za) == {f"www/releases/{name}", f"www/releases/{release.id}.json"}
    assert store.replicate(release, "za") is False  # already there
    assert store.replicate(release, "uk") is False  # uk downloads from the main store
    assert store.region_store("uk") is store

    region = store.region_store("za")
    assert [r.id for r in region.list()] == [release.id]
    url = store.presigned_url(release, region="za")
    assert url.startswith(f"{moto_endpoint}/{za}/www/releases/{name}?")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert hashlib.sha256(response.read()).hexdigest() == release.sha256

    fresh = build(store, tmp_path / "app", "2")
    with pytest.raises(ArtifactError, match=f"{fresh.id}: unknown release ID in s3://{za}/www"):
        store.presigned_url(fresh, region="za")  # not deployed to za yet: replicate first


def test_a_download_url_for_a_region_with_its_own_store_copies_the_release_there_first(
        moto_endpoint: str, s3: Any, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    main, za = new_bucket(), new_bucket()
    store = store_for(moto_endpoint, f"s3://{main}/shop", tmp_path / "cache", regions={"za": f"s3://{za}/www"})
    release = build(store, tmp_path / "app", "1")
    name = release.path.name

    url = store.download_url(release, "za", expires=600)
    assert url.startswith(f"{moto_endpoint}/{za}/www/releases/{name}?")
    assert "X-Amz-Expires=600" in url
    assert keys(s3, za) == {f"www/releases/{name}", f"www/releases/{release.id}.json"}
    with urllib.request.urlopen(url, timeout=10) as response:
        assert hashlib.sha256(response.read()).hexdigest() == release.sha256
    assert store.download_url(release, "uk").startswith(f"{moto_endpoint}/{main}/shop/releases/{name}?")
    with pytest.raises(ArtifactError, match="1 second to 7 days"):
        store.download_url(release, "za", expires=0)


def test_what_an_s3_store_has_cached_is_known_without_the_bucket(
        moto_endpoint: str, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    url = f"s3://{new_bucket()}/shop"
    release = build(store_for(moto_endpoint, url, tmp_path / "cache"), tmp_path / "app", "1")
    with socket.socket() as probe:  # the same cache, and an endpoint nobody listens on
        probe.bind(("127.0.0.1", 0))
        offline = S3Store(url, tmp_path / "cache", endpoint_url=f"http://127.0.0.1:{probe.getsockname()[1]}",
                          connect_timeout=1, read_timeout=1, attempts=1)
    cached = offline.cached(release.id)
    assert cached is not None
    assert (cached.sha256, cached.path) == (release.sha256, release.path)
    assert offline.cached("20200101T000000Z-0badc0de") is None
    # Another machine has not cached it: `cached` does not fetch it, `get` does.
    other = store_for(moto_endpoint, url, tmp_path / "other")
    assert other.cached(release.id) is None
    assert other.get(release.id).sha256 == release.sha256
    assert other.cached(release.id) == other.get(release.id)


def test_region_pointers_are_written_to_the_region_store_in_one_piece(
        moto_endpoint: str, s3: Any, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    main, za = new_bucket(), new_bucket()
    url = f"s3://{main}/shop"
    store = store_for(moto_endpoint, url, tmp_path / "cache", regions={"za": f"s3://{za}/www"})
    first = build(store, tmp_path / "app", "1")
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

    written = store.read_pointer("production", "za")
    assert written is None
    document = store.write_pointer("production", "za", first.id, app="shop", deployment_id=7, user="alice", now=when)
    name = first.path.name
    assert document == {
        "app": "shop", "environment": "production", "region": "za", "release": first.id, "sha256": first.sha256,
        "artifact": {"url": f"s3://{za}/www/releases/{name}", "bucket": za, "key": f"www/releases/{name}"},
        "deployment_id": 7, "updated_at": "2026-03-04T05:06:07+00:00", "updated_by": "alice",
    }
    # The release was copied first, so the pointer never names an object that is not there.
    assert f"www/releases/{name}" in keys(s3, za)
    stored = s3.get_object(Bucket=za, Key="www/pointers/production/za.json")
    assert json.loads(stored["Body"].read()) == document
    assert stored["ContentType"] == "application/json"
    assert "shop/pointers/production/za.json" not in keys(s3, main)

    # A region without a store of its own has its pointer in the main store; another machine reads both.
    store.write_pointer("production", "uk", first.id, app="shop", deployment_id=7, user="alice")
    other = store_for(moto_endpoint, url, tmp_path / "other", regions={"za": f"s3://{za}/www"})
    uk = other.read_pointer("production", "uk")
    assert uk is not None
    assert set(uk) == POINTER_FIELDS
    assert uk["artifact"]["url"] == f"s3://{main}/shop/releases/{name}"
    assert other.read_pointer("production", "za") == document

    second = build(store, tmp_path / "app", "2")
    store.write_pointer("production", "za", second.id, app="shop", deployment_id=8, user="bob")
    moved = other.read_pointer("production", "za")
    assert moved is not None
    assert (moved["release"], moved["sha256"], moved["deployment_id"]) == (second.id, second.sha256, 8)


def test_the_recorder_writes_the_pointer_file_after_the_state_store(
        moto_endpoint: str, new_bucket: Callable[[], str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = store_for(moto_endpoint, f"s3://{new_bucket()}/shop", tmp_path / "cache")
    release = build(store, tmp_path / "app", "1")
    state = Store(f"sqlite:///{tmp_path / 'state.db'}", "shop")
    try:
        recorder = StoreRecorder(state, "production", 3, pointer_files=PointerFiles(store, "shop", "alice"))
        recorder(RegionFinished(region="za", status="succeeded", release=release.id))
        assert state.pointers("production")["za"]["release"] == release.id
        pointer = store.read_pointer("production", "za")
        assert pointer is not None
        assert (pointer["release"], pointer["deployment_id"], pointer["updated_by"]) == (release.id, 3, "alice")
        # A region that did not succeed moves neither pointer.
        recorder(RegionFinished(region="uk", status="rolled_back", release=release.id))
        assert "uk" not in state.pointers("production")
        assert store.read_pointer("production", "uk") is None

        # The bucket goes away: the state store's pointer is written all the same, with a warning.
        gone = store_for(moto_endpoint, "s3://conveyor-gone-bucket/shop", tmp_path / "cache2")
        recorder = StoreRecorder(state, "production", 4, pointer_files=PointerFiles(gone, "shop", "alice"))
        recorder(RegionFinished(region="ca", status="succeeded", release=release.id))
        ca = state.pointers("production")["ca"]
        assert (ca["release"], ca["deployment_id"]) == (release.id, 4)
        warning = capsys.readouterr().err
        assert "conveyor: warning: production/ca: the pointer file was not written" in warning
        assert "NoSuchBucket" in warning
        event = state.events(1)[0]
        assert (event["kind"], event["deployment_id"], event["data"]["region"]) == ("pointer_file_failed", 4, "ca")
    finally:
        state.close()


# -- the command line ---------------------------------------------------------------------------------------

# The restart of every host: record what it now serves.
SERVE = 'printf "%s %s\\n" "$CONVEYOR_RELEASE" "$CONVEYOR_HOST" > "$CONVEYOR_DEPLOY_TO/serving"'


def s3_fleet(make_fleet: Any, moto_endpoint: str, bucket: str) -> Any:
    """A local fleet (staging, region uk: two web hosts and a batch host) whose releases live in S3."""
    return make_fleet({
        "app": "shop",
        "artifact": {"path": "app", "store": f"s3://{bucket}/shop", "endpoint_url": moto_endpoint},
        "deploy_to": "/srv/shop",
        "shared": ["log"],
        "roles": {"web": {"restart": SERVE, "canary": 1, "batch": 1}, "batch": {"restart": SERVE}},
        "environments": {"staging": {"transport": "local", "regions": {
            "uk": {"hosts": {"web": ["uk-web-1", "uk-web-2"], "batch": ["uk-batch-1"]}}}}},
    })


def test_build_and_deploy_through_an_s3_store(
        make_fleet: Any, moto_endpoint: str, s3: Any, new_bucket: Callable[[], str]) -> None:
    bucket = new_bucket()
    fleet = s3_fleet(make_fleet, moto_endpoint, bucket)
    release = fleet.build("1.0")
    assert f"shop/releases/{release}.json" in keys(s3, bucket)
    assert [r["id"] for r in fleet.json("releases")["releases"]] == [release]

    # Deploy from a machine that did not build it: the cache is empty, the release comes from the bucket.
    cache = fleet.root / ".conveyor" / "cache" / "s3" / bucket / "shop"
    for path in cache.iterdir():
        path.unlink()
    result = fleet.deploy("staging", release)
    assert result["status"] == "succeeded"
    for region, _role, host in fleet.hosts("staging"):
        assert fleet.current("staging", region, host) == release
        fleet.assert_complete("staging", region, host, release)
    assert (cache / f"{release}.json").is_file()


def test_a_missing_bucket_stops_a_build_with_exit_2(make_fleet: Any, moto_endpoint: str) -> None:
    fleet = s3_fleet(make_fleet, moto_endpoint, "conveyor-never-made")
    fleet.write_artifact("1.0")
    result = fleet.run("build", expect=2)
    assert "s3://conveyor-never-made/shop/releases/: cannot list it: NoSuchBucket" in result.stderr


def test_a_deploy_leaves_the_region_pointer_file_in_s3(
        make_fleet: Any, moto_endpoint: str, s3: Any, new_bucket: Callable[[], str]) -> None:
    bucket = new_bucket()
    fleet = s3_fleet(make_fleet, moto_endpoint, bucket)
    release = fleet.build("1.0")
    fleet.deploy("staging", release)
    pointer = json.loads(s3.get_object(Bucket=bucket, Key="shop/pointers/staging/uk.json")["Body"].read())
    assert (pointer["app"], pointer["environment"], pointer["region"], pointer["release"]) == (
        "shop", "staging", "uk", release)


def test_a_new_host_converges_from_its_regions_own_bucket(
        make_fleet: Any, moto_endpoint: str, s3: Any, new_bucket: Callable[[], str], tmp_path: Path) -> None:
    main, regional = new_bucket(), new_bucket()
    fleet = s3_fleet(make_fleet, moto_endpoint, main)
    fleet.settings["artifact"]["stores"] = {"uk": f"s3://{regional}/shop"}
    fleet.settings["environments"]["staging"]["transfer"] = "pull"
    fleet.write_config()
    release = fleet.build("1.0")
    result = fleet.deploy("staging", release)
    assert {h["transfer"] for h in result["regions"]["uk"]["hosts"]} == {"pulled by the host"}
    assert {"shop/pointers/staging/uk.json", f"shop/releases/{release}.json"} <= keys(s3, regional)
    # A new machine: an empty cache, and only the region's bucket has the release now.
    shutil.rmtree(fleet.root / ".conveyor" / "cache")
    for key in keys(s3, main):
        s3.delete_object(Bucket=main, Key=key)
    done = fleet.run("converge", "--env", "staging", "--region", "uk", "--role", "web", "--host", "uk-web-7",
                     "--root", str(tmp_path / "machine"), "--json")
    assert (done.json()["status"], done.json()["release"]) == ("converged", release)
    deploy_to = tmp_path / "machine" / "srv" / "shop"
    assert os.readlink(deploy_to / "current") == f"releases/{release}"
    assert (deploy_to / "releases" / release / "VERSION").read_text() == "1.0\n"
