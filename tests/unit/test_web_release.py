"""The release page: how a release was built, the commits it brought (from git, since the release built before
it), its migrations with their verdicts, where it ran and runs, and links to it from the other pages; hostile
names and commit subjects escaped, secrets masked. Starlette's TestClient over a real store and git."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from conveyor.operations.workspace import Workspace
from conveyor.secrets import register_secret
from conveyor.state.store import Store
from conveyor.web.app import create_app

CONFIG = """\
app: www
roles:
  web: {}
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [s-1]}}
  production:
    transport: local
    regions:
      uk: {hosts: {web: [uk-1, uk-2]}}
      za: {hosts: {web: [za-1]}}
web: {public: true}
"""
OLD, NEW = "20261201T100000Z-aaaaaaaa", "20261202T100000Z-bbbbbbbb"
HOSTILE = '<img src=x onerror="alert(1)">'
SECRET = "s3cr3t-deploy-token"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com", "GIT_COMMITTER_NAME":
           "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, subject: str) -> str:
    git(repo, "commit", "-q", "--allow-empty", "-m", subject)
    return git(repo, "rev-parse", "HEAD")


def built(store: Store, release: str, sha: str, created: str, subject: str) -> None:
    store.record_release({"id": release, "sha256": "5" * 64, "size": 12345, "files": 7, "user": "ci",
                          "created_at": created, "git": {"sha": sha, "author": "Ada", "subject": subject,
                                                         "committed_at": created}})


def deployed(store: Store, env: str, regions: list[str], release: str, user: str, status: str = "succeeded",
             hosts: list[tuple[str, str]] | None = None) -> int:
    key = store.start_deployment(environment=env, regions=regions, release=release,
                                 previous_by_region=dict.fromkeys(regions), kind="deploy", user=user)
    if hosts:
        store.set_host_releases(env, [(host, region, "web", release) for host, region in hosts])
    store.finish_deployment(key, status, [])
    return key


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    git(tmp_path, "init", "-q")
    first = commit(tmp_path, "the first thing")
    commit(tmp_path, f"escape {HOSTILE} in names")
    second = commit(tmp_path, f"rotate {SECRET}")
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    workspace = Workspace.load(tmp_path / "conveyor.yml")
    built(workspace.store, OLD, first, "2026-12-01T10:00:00+00:00", "the first thing")
    built(workspace.store, NEW, second, "2026-12-02T10:00:00+00:00", f"rotate {SECRET}")
    yield workspace
    workspace.close()


def page(ws: Workspace, path: str) -> Any:
    return TestClient(create_app(ws), base_url="https://testserver").get(path)


def test_a_release_page_tells_its_commits_migrations_and_where_it_ran(ws: Workspace) -> None:
    register_secret(SECRET)
    store = ws.store
    deployed(store, "staging", ["uk"], NEW, "ada", hosts=[("s-1", "uk")])
    failed = deployed(store, "production", ["za"], NEW, "bob", status="failed")
    moved = deployed(store, "production", ["uk"], NEW, "bob", hosts=[("uk-1", "uk"), ("uk-2", "uk")])
    store.record_migration("production", "uk", name="0007_add_column.sql", phase="expand", cls="safe",
                           sha256="1" * 64, release=NEW, deployment_id=moved)
    store.record_migration("production", "uk", name="0008_drop_old.sql", phase="contract", cls="breaking",
                           sha256="2" * 64, release=NEW, deployment_id=moved)
    store.record_migration("production", "uk", name="0001_first.sql", phase="expand", cls="safe",
                           sha256="3" * 64, release=OLD, deployment_id=None)

    response = page(ws, f"/releases/{NEW}")
    assert response.status_code == 200
    html = response.text
    assert f'<span class="mono" id="release-id">{NEW}</span>' in html
    assert "12,345 bytes, 7 files" in html
    assert f'Since <a class="mono" href="/releases/{OLD}">{OLD}</a>' in html
    commits = html[html.index('<table class="commits">'):html.index("<h2>Migrations</h2>")]
    assert "escape &lt;img src=x onerror=&#34;alert(1)&#34;&gt; in names" in commits
    assert "rotate ********" in commits
    assert "the first thing" not in commits  # the release before it had that one
    assert SECRET not in html
    assert HOSTILE not in html
    migrations = html[html.index('<table class="migrations">'):html.index("<h2>Where it ran</h2>")]
    assert "0007_add_column.sql" in migrations
    assert '<span class="verdict breaking">breaking</span>' in migrations
    assert "0001_first.sql" not in migrations
    where = html[html.index('<table class="where">'):]
    production = where[where.index('data-environment="production"'):]
    assert "<td>uk</td>" in production[:200]  # za failed: it did not arrive there
    assert "uk web (2)" in production
    assert "<td>bob</td>" in production
    assert "uk web (1)" in where[where.index('data-environment="staging"'):]
    assert f'<a href="/deployments/{failed}">#{failed}</a>' in html


def test_the_other_pages_link_to_a_release(ws: Workspace) -> None:
    moved = deployed(ws.store, "production", ["uk"], NEW, "bob", hosts=[("uk-1", "uk"), ("uk-2", "uk")])
    ws.store.set_pointer("production", "uk", NEW, moved)
    link = f'href="/releases/{NEW}"'
    for path in ("/", "/history", f"/deployments/{moved}"):
        assert link in page(ws, path).text, path


def test_a_hostile_release_name_is_escaped_and_an_unknown_one_is_not_found(ws: Workspace) -> None:
    deployed(ws.store, "staging", ["uk"], HOSTILE, "ada", hosts=[("s-1", "uk")])
    history = page(ws, "/history").text
    assert HOSTILE not in history
    assert 'href="/releases/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E"' in history
    response = page(ws, "/releases/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E")
    assert response.status_code == 200
    assert HOSTILE not in response.text
    assert "This store never recorded the build of this release" in response.text
    missing = page(ws, "/releases/" + "x" * 5000)
    assert missing.status_code == 404
    assert "x" * 201 not in missing.text
