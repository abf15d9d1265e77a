"""`web.deploys: true`: the release page's Deploy button runs the CLI's own `conveyor deploy`.

Not a second way to deploy: the dashboard starts `conveyor -c CONFIG deploy ENV --release ID --yes` as a
child process with `CONVEYOR_USER` set to the signed-in user, so every gate (windows, locks, promotion,
approval, migrations, consistency), the lock and its lease, the audit trail and the notifications are the
command line's, and the deployment is the signed-in user's in history. The child runs in its own session: a
dashboard restart does not stop a deployment halfway. The page waits (at most `WAIT` seconds) for the
deployment to record itself and sends the browser to it (where it goes on live), or shows the one sentence
the command ended with (a gate that held, an approval request recorded, bad input).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

WAIT = 30.0  # seconds the page waits for the deployment to record itself
TAIL = 64 * 1024  # bytes of the command's stderr kept (its last sentence is what the page shows)
CONVEYOR = (sys.executable, "-c", "from conveyor.cli.app import run; run()")


class DeployRun:
    """One `conveyor deploy` started for the dashboard: its process, and what it said when it ended."""

    def __init__(self, config: Path, state_url: str, user: str, environment: str, release: str) -> None:
        env = {key: value for key, value in os.environ.items() if key not in {"CONVEYOR_CONFIG"}}
        env.update(CONVEYOR_USER=user, CONVEYOR_STATE_URL=state_url, NO_COLOR="1")
        self.process = subprocess.Popen(  # our own CLI, arguments as a list, never a shell
            [*CONVEYOR, "-c", str(config), "deploy", environment, "--release", release, "--yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            cwd=config.parent, start_new_session=True)
        self.tail: deque[bytes] = deque()
        self.done = threading.Event()
        threading.Thread(target=self._drain, name=f"conveyor-deploy-{self.process.pid}", daemon=True).start()

    def _drain(self) -> None:
        """Read stderr to its end (a full pipe would stop the deployment), keeping its last bytes; then reap."""
        assert self.process.stderr is not None
        kept = 0
        for chunk in iter(lambda: self.process.stderr.read(4096), b""):  # type: ignore[union-attr]
            self.tail.append(chunk)
            kept += len(chunk)
            while kept > TAIL and len(self.tail) > 1:
                kept -= len(self.tail.popleft())
        self.process.stderr.close()
        self.process.wait()
        self.done.set()

    @property
    def exit_code(self) -> int | None:
        """The command's exit code once it has ended and said everything, else None."""
        return self.process.returncode if self.done.is_set() else None

    def sentence(self) -> str:
        """What the command ended with: its last `conveyor: ...` line, else its last line."""
        lines = [line.strip() for line in b"".join(self.tail).decode("utf-8", "replace").splitlines() if line.strip()]
        said = [line.removeprefix("conveyor: ") for line in lines if line.startswith("conveyor: ")]
        return (said or lines or [f"conveyor deploy ended with exit code {self.exit_code}"])[-1][:1000]
