"""The demo's files: a tiny app, its build script, and a config for a local two-environment fleet."""

from __future__ import annotations

from pathlib import Path

MARKER = ".conveyor-demo"

CONFIG = """\
# The demo fleet: every host is a directory under .conveyor/hosts (transport: local).
app: shop
artifact:
  build: "sh build.sh"
  path: dist
deploy_to: /srv/shop
keep_releases: 3
shared: [log]
roles:
  web:
    # A stand-in for `systemctl reload`: the "service" records which release it serves.
    restart: 'printf "%s\\n" "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'
    checks:
      - command: 'test "$(cat "$CONVEYOR_DEPLOY_TO/serving")" = "$CONVEYOR_RELEASE" && test -f VERSION'
    canary: 1
    batch: 2
  batch:
    restart: 'printf "%s\\n" "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'
  daemon:
    restart: 'printf "%s\\n" "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'
    batch: 50%
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [stg-web-1, stg-web-2, stg-web-3], batch: [stg-batch-1], daemon: [stg-d-1, stg-d-2]}}
  production:
    transport: local
    promote_from: staging
    waves: [[za], [uk, us]]
    regions:
      za: {hosts: {web: [za-web-1, za-web-2, za-web-3], batch: [za-batch-1], daemon: [za-d-1, za-d-2]}}
      uk: {hosts: {web: [uk-web-1, uk-web-2, uk-web-3], batch: [uk-batch-1], daemon: [uk-d-1, uk-d-2]}}
      us: {hosts: {web: [us-web-1, us-web-2, us-web-3], batch: [us-batch-1], daemon: [us-d-1, us-d-2]}}
# `conveyor serve` shows this history in a browser. A sample on this machine: anyone may read it (approving
# still needs a user: `conveyor user add NAME`).
web: {public: true}
"""

BUILD = """\
#!/bin/sh
# The demo's build: copy the app into dist/ and stamp its version.
set -eu
rm -rf dist
mkdir -p dist
cp -R app/. dist/
cp VERSION dist/VERSION
"""

APP_FILES = {
    "app/index.html": "<!doctype html><title>shop</title><h1>The shop</h1>\n",
    "app/bin/worker": "#!/bin/sh\necho 'processing payments'\n",
    "app/config/app.ini": "[app]\nname = shop\n",
}


def write(directory: Path, version: str) -> None:
    """Write (or rewrite) the demo's app, build script and config into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by `conveyor demo`; safe to delete\n")
    (directory / "conveyor.yml").write_text(CONFIG)
    (directory / "build.sh").write_text(BUILD)
    for name, text in APP_FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (directory / "app/bin/worker").chmod(0o755)
    set_version(directory, version)


def set_version(directory: Path, version: str) -> None:
    """Change what the next build contains."""
    (directory / "VERSION").write_text(version + "\n")
    (directory / "app/index.html").write_text(
        f"<!doctype html><title>shop {version}</title><h1>The shop, version {version}</h1>\n")
