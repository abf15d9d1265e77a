"""S3 store URLs and settings, and region pointer files in a local store; no S3 server needed.

The S3 store itself, against a real S3 API, is tested in tests/integration/test_s3_store.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.artifact import LocalStore, Release, build_release
from conveyor.artifact.pointers import PointerFiles, pointer_document, pointer_flags, pointer_name
from conveyor.artifact.s3 import INSTALL_HINT, S3Location, S3Store, parse_s3_url
from conveyor.config.loader import parse_config
from conveyor.engine.events import RegionFinished
from conveyor.errors import ArtifactError, ConfigError
from conveyor.operations.recording import StoreRecorder
from conveyor.state.store import Store

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


# -- s3:// URLs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "bucket", "prefix"), [
    ("s3://shop-releases", "shop-releases", ""),
    ("s3://shop-releases/", "shop-releases", ""),
    ("s3://shop.releases/www", "shop.releases", "www"),
    ("s3://abc/teams/payments/www/", "abc", "teams/payments/www"),
    ("s3://a-1/env=prod/v1.2_x", "a-1", "env=prod/v1.2_x"),
])
def test_an_s3_url_names_a_bucket_and_a_prefix(url: str, bucket: str, prefix: str) -> None:
    location = parse_s3_url(url)
    assert location == S3Location(bucket, prefix)
    assert location.key("releases", "x.json") == "/".join(p for p in (prefix, "releases", "x.json") if p)


@pytest.mark.parametrize(("url", "message"), [
    ("https://shop-releases/www", "expected s3://bucket/prefix"),
    ("s3://", "bucket name '' must be 3 to 63"),
    ("s3://ab/www", "bucket name 'ab' must be 3 to 63"),
    ("s3://" + "a" * 64, "must be 3 to 63"),
    ("s3://Shop-Releases/www", "lowercase"),
    ("s3://shop_releases", "lowercase"),
    ("s3://-shop", "starting and ending with a letter or digit"),
    ("s3://shop-", "starting and ending with a letter or digit"),
    ("s3://shop..releases", "must not have '..'"),
    ("s3://shop.-releases", "must not have '..', '.-' or '-.'"),
    ("s3://10.0.0.1", "must not look like an IP address"),
    ("s3://xn--shop", "AWS reserves"),
    ("s3://shop-s3alias", "AWS reserves"),
    ("s3://shop/www/../other", "not '.' or '..'"),
    ("s3://shop/../www", "not '.' or '..'"),
    ("s3://shop/www/./x", "not '.' or '..'"),
    ("s3://shop//www", "each part between '/'"),
    ("s3://shop/my www", "each part between '/'"),
    ("s3://shop/www\n", "each part between '/'"),
])
def test_a_bad_s3_url_says_which_rule_it_breaks(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_s3_url(url)


def test_a_store_on_a_bad_url_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"^artifact store s3://Shop/x: bucket name 'Shop'"):
        S3Store("s3://Shop/x", tmp_path)


def test_the_cache_of_an_s3_store_is_per_bucket_and_prefix(tmp_path: Path) -> None:
    store = S3Store("s3://shop-releases/teams/www", tmp_path / ".conveyor" / "cache" / "s3")
    assert store.root == tmp_path / ".conveyor" / "cache" / "s3" / "shop-releases" / "teams" / "www"
    assert store.cache.root == store.root
    assert store.pointer_key("production", "za") == "teams/www/pointers/production/za.json"
    assert store.region_store("za") is store  # no region stores configured
    assert repr(store) == f"S3Store('s3://shop-releases/teams/www', cache={str(store.root)!r})"


# -- conveyor.yml ---------------------------------------------------------------------------------------------

CONFIG = """\
app: www
artifact:
{artifact}
roles: {{web: {{restart: "true"}}}}
environments:
  staging: {{transport: local, regions: {{uk: {{hosts: {{web: [w1]}}}}}}}}
"""


def artifact_problems(artifact: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(artifact=textwrap.indent(textwrap.dedent(artifact), "  ")), "conveyor.yml", env={})
    return [str(p) for p in info.value.problems]


def test_s3_settings_of_the_artifact_section_are_read() -> None:
    text = CONFIG.format(artifact="  store: s3://shop-releases/www\n  stores: {za: s3://shop-za/www}\n"
                                  "  endpoint_url: http://127.0.0.1:9000")
    config, _ = parse_config(text, "conveyor.yml", env={})
    assert config.artifact.store == "s3://shop-releases/www"
    assert config.artifact.stores == {"za": "s3://shop-za/www"}
    assert config.artifact.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(("artifact", "expected"), [
    ("store: s3://Shop/www", ["conveyor.yml:3: artifact.store: bucket name 'Shop' must be 3 to 63 lowercase "
                              "letters, digits, '.' or '-', starting and ending with a letter or digit"]),
    ("store: s3://shop-releases/www/../x", ["conveyor.yml:3: artifact.store: prefix 'www/../x': each part between "
                                           "'/' must be letters, digits, '.', '_', '=' or '-', and not '.' or '..'"]),
    ("store: gs://shop-releases/www", ["conveyor.yml:3: artifact.store: expected a directory or s3://bucket/prefix, "
                                       "got 'gs://shop-releases/www'"]),
    ("store: s3://shop-releases\nstores: {za: /srv/za}", ["conveyor.yml:4: artifact.stores: za: expected "
                                                          "s3://bucket/prefix, got '/srv/za'"]),
    ("store: s3://shop-releases\nstores: {'z a': s3://shop-za}", ["conveyor.yml:4: artifact.stores: region name "
                                                                  "'z a' must start with a letter or digit and use "
                                                                  "only letters, digits, '.', '_', '-'"]),
    ("store: s3://shop-releases\nendpoint_url: 127.0.0.1:9000", ["conveyor.yml:4: artifact.endpoint_url: expected "
                                                                 "an http:// or https:// URL like "
                                                                 "http://127.0.0.1:9000, got '127.0.0.1:9000'"]),
    ("stores: {za: s3://shop-za}", ["conveyor.yml:2: artifact: stores and endpoint_url are for an S3 store: set "
                                    "store: s3://bucket/prefix too"]),
], ids=["bucket", "dot-dot", "scheme", "region-store-not-s3", "region-name", "endpoint", "stores-need-s3"])
def test_bad_s3_settings_are_config_errors(artifact: str, expected: list[str]) -> None:
    assert artifact_problems(artifact) == expected


# -- pointer files in a local store ------------------------------------------------------------------------------

def local_release(tmp_path: Path, version: str) -> tuple[LocalStore, Release]:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / f"app-{version}"
    source.mkdir()
    (source / "VERSION").write_text(version, encoding="utf-8")
    release, _ = build_release(source, store, user="alice", now=datetime.now(UTC), git=None)
    return store, release


def test_a_pointer_names_the_release_and_where_its_tarball_is(tmp_path: Path) -> None:
    _, release = local_release(tmp_path, "1")
    document = pointer_document(app="www", environment="production", region="za", release=release,
                                artifact={"url": "s3://b/k", "bucket": "b", "key": "k"}, deployment_id=None,
                                user="alice", now=WHEN)
    assert document == {"app": "www", "environment": "production", "region": "za", "release": release.id,
                        "sha256": release.sha256, "artifact": {"url": "s3://b/k", "bucket": "b", "key": "k"},
                        "deployment_id": None, "updated_at": "2026-03-04T05:06:07+00:00", "updated_by": "alice"}


@pytest.mark.parametrize(("environment", "region"), [("..", "za"), ("production", "../x"), ("a/b", "za"),
                                                     ("production", "")])
def test_a_pointer_file_needs_names_the_config_allows(environment: str, region: str) -> None:
    with pytest.raises(ArtifactError, match=r"not a name conveyor\.yml allows"):
        pointer_name(environment, region)


def test_a_local_store_keeps_pointers_beside_its_releases_replaced_whole(tmp_path: Path) -> None:
    store, first = local_release(tmp_path, "1")
    assert store.read_pointer("production", "za") is None
    document = store.write_pointer("production", "za", first.id, app="www", deployment_id=1, user="alice", now=WHEN)
    path = store.root / "pointers" / "production" / "za.json"
    assert store.pointer_path("production", "za") == path
    assert json.loads(path.read_text(encoding="utf-8")) == document
    assert document["artifact"] == {"url": first.path.resolve().as_uri(), "path": str(first.path.resolve())}
    assert store.read_pointer("production", "za") == document
    assert [r.id for r in store.list()] == [first.id]  # pointers are not releases

    (tmp_path / "app-1" / "VERSION").write_text("2", encoding="utf-8")
    second, _ = build_release(tmp_path / "app-1", store, user="alice", now=datetime.now(UTC), git=None)
    store.write_pointer("production", "za", second.id, app="www", deployment_id=2, user="bob")
    moved = store.read_pointer("production", "za")
    assert moved is not None
    assert (moved["release"], moved["deployment_id"], moved["updated_by"]) == (second.id, 2, "bob")
    assert [p.name for p in path.parent.iterdir()] == ["za.json"]  # the temp file was renamed, none is left


def test_a_pointer_that_cannot_be_replaced_leaves_no_temp_file(tmp_path: Path) -> None:
    store, release = local_release(tmp_path, "1")
    path = store.pointer_path("production", "za")
    (path / "in-the-way").mkdir(parents=True)  # a directory where the file goes: rename(2) fails
    with pytest.raises(ArtifactError, match=r"cannot write the pointer .*za\.json"):
        store.write_pointer("production", "za", release.id, app="www", deployment_id=1, user="alice")
    assert sorted(p.name for p in path.parent.iterdir()) == ["za.json"]
    assert [p.name for p in path.iterdir()] == ["in-the-way"]


def test_a_pointer_to_a_release_the_store_lacks_is_refused(tmp_path: Path) -> None:
    store, _ = local_release(tmp_path, "1")
    with pytest.raises(ArtifactError, match="unknown release ID"):
        store.write_pointer("production", "za", "20200101T000000Z-0badc0de", app="www", deployment_id=1, user="a")
    assert not (store.root / "pointers").exists()


def test_the_recorder_keeps_the_state_pointer_when_the_pointer_file_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, release = local_release(tmp_path, "1")
    state = Store(f"sqlite:///{tmp_path / 'state.db'}", "www")
    try:
        recorder = StoreRecorder(state, "production", 5, pointer_files=PointerFiles(store, "www", "alice"))
        recorder(RegionFinished(region="za", status="succeeded", release=release.id))
        assert state.pointers("production")["za"]["release"] == release.id
        written = store.read_pointer("production", "za")
        assert written is not None
        assert (written["release"], written["deployment_id"]) == (release.id, 5)
        assert capsys.readouterr().err == ""

        missing = "20200101T000000Z-0badc0de"  # built elsewhere: not in this store
        recorder(RegionFinished(region="uk", status="succeeded", release=missing))
        assert state.pointers("production")["uk"]["release"] == missing
        assert store.read_pointer("production", "uk") is None
        err = capsys.readouterr().err
        assert err.startswith("conveyor: warning: production/uk: the pointer file was not written (the state "
                              f"store points at {missing}): {missing}: unknown release ID")
        event = state.events(1)[0]
        assert event["kind"] == "pointer_file_failed"
        assert event["data"]["release"] == missing
    finally:
        state.close()


def test_without_pointer_files_the_recorder_writes_only_the_state_store(tmp_path: Path) -> None:
    store, release = local_release(tmp_path, "1")
    state = Store(f"sqlite:///{tmp_path / 'state.db'}", "www")
    try:
        StoreRecorder(state, "production", 5)(
            RegionFinished(region="za", status="succeeded", release=release.id))
        assert state.pointers("production")["za"]["release"] == release.id
        assert not (store.root / "pointers").exists()
    finally:
        state.close()


def test_a_pointer_keeps_the_flags_file_it_carries_when_its_release_moves(tmp_path: Path) -> None:
    import hashlib

    store, first = local_release(tmp_path, "1")
    files = PointerFiles(store, "www", "alice")
    assert files.set_flags("production", "za", "{}", hashlib.sha256(b"{}").hexdigest()) is None  # no pointer yet
    files.write("production", "za", first.id, 3)
    content = '{"flags": {}}\n'
    sha = hashlib.sha256(content.encode()).hexdigest()
    written = files.set_flags("production", "za", content, sha)
    assert written is not None
    assert (written["release"], written["deployment_id"], written["flags"]) == (
        first.id, 3, {"content": content, "sha256": sha})
    second = build_release(tmp_path / "app-1", store, user="alice", now=datetime.now(UTC), git=None)[0]
    moved = files.write("production", "za", second.id, 4)  # a deploy or rollback of the release: files stay
    assert (moved["release"], moved["flags"]) == (second.id, {"content": content, "sha256": sha})
    read = store.read_pointer("production", "za")
    assert read is not None
    assert pointer_flags(read) == {"content": content, "sha256": sha}


def test_a_pointer_whose_flags_file_is_not_what_its_sha256_says_is_refused(tmp_path: Path) -> None:
    assert pointer_flags({"release": "R1"}) is None
    assert pointer_flags({"flags": {"content": 1, "sha256": "x"}}) is None
    with pytest.raises(ArtifactError, match="not the one its sha256 names"):
        pointer_flags({"flags": {"content": '{"flags": {"evil": 1}}', "sha256": "0" * 64}})


# -- without boto3 -------------------------------------------------------------------------------------------------

def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_without_boto3_an_s3_store_says_how_to_install_it(tmp_path: Path) -> None:
    done = run_python(f"""
        import sys
        sys.modules["boto3"] = None  # as if it were not installed
        from pathlib import Path
        from conveyor.artifact.s3 import S3Store
        from conveyor.errors import ArtifactError
        try:
            S3Store("s3://shop-releases/www", Path({str(tmp_path)!r})).list()
        except ArtifactError as exc:
            print(exc.message)
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"an s3:// artifact store needs boto3, which is not installed: {INSTALL_HINT}"
    assert INSTALL_HINT == "pip install 'conveyor-deploy[aws]'"


def test_importing_the_s3_store_does_not_load_boto3() -> None:
    done = run_python("""
        import sys
        import conveyor.artifact.s3, conveyor.artifact.pointers
        print(sorted({name.split(".")[0] for name in sys.modules} & {"boto3", "botocore"}))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
