"""Screenshots of the dashboard for docs/dashboard.md: `python docs/screenshots.py` (run by hand, not in CI).

Runs `conveyor demo` in a temporary directory, adds two users and a deploy request, starts `conveyor serve`
on a free loopback port and photographs each page with Debian's chromium through Playwright into docs/img/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright

from conveyor.operations.users import add_user
from conveyor.operations.workspace import Workspace

OUT = Path(__file__).parent / "img"
CONVEYOR = [sys.executable, "-c", "from conveyor.cli.app import main; main()"]


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in {"CONVEYOR_STATE_URL", "CONVEYOR_CONFIG"}}
        subprocess.run([*CONVEYOR, "demo", "--dir", tmp], check=True, env=env, stdout=subprocess.DEVNULL)
        config = str(Path(tmp) / "conveyor.yml")
        # A deploy window for production, for the windows page (the demo itself deploys at any hour).
        settings = yaml.safe_load(Path(config).read_text())
        settings["environments"]["production"]["window"] = "office-hours"
        settings["windows"] = {"office-hours": {
            "timezone": "Europe/London",
            "allow": [{"days": "mon-thu", "hours": "09:00-16:00"}, {"days": "fri", "hours": "09:00-12:00"}],
            "deny": [{"month_days": "28-31,1-2", "reason": "month-end payment runs"}]}}
        Path(config).write_text(yaml.safe_dump(settings, sort_keys=False))
        ws = Workspace.load(config)
        for name in ("ada", "bob"):
            add_user(ws.store, name, f"{name}-password")
        last = ws.store.history("production", 1)[0]
        ws.store.request_approval("production", str(last["release"]), list(last["regions"]), "bob", 3600,
                                  "the payments fix")
        latest = ws.store.history(None, 1)[0]["id"]
        release = str(last["release"])
        ws.close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([*CONVEYOR, "-c", config, "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("conveyor serve did not start")
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 760})
                page.goto(url + "/login")
                page.screenshot(path=OUT / "dashboard-login.png")
                page.get_by_label("User").fill("ada")
                page.get_by_label("Password").fill("ada-password")
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_selector("#signed-in")
                for name, path in (("fleet", "/"), ("history", "/history"), ("deployment", f"/deployments/{latest}"),
                                   ("dora", "/dora?weeks=8"), ("approvals", "/approvals"),
                                   ("windows", "/windows"), ("release", f"/releases/{release}")):
                    page.goto(url + path)
                    page.screenshot(path=OUT / f"dashboard-{name}.png", full_page=True)
                    print(f"docs/img/dashboard-{name}.png")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
