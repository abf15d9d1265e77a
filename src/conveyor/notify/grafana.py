"""Grafana annotations: one per region per deployment, opened when the region starts, closed at the end.

`POST /api/annotations` when a region starts (tags: app, environment, region, release, kind), then
`PATCH /api/annotations/<id>` with `timeEnd` and the outcome when the deployment ends, so a dashboard shows
each region's deployment as a band, and which ones went wrong. The token is a service account token read
from the environment variable `grafana.token_env` names, sent as `Authorization: Bearer ...`.

The request bodies are built by pure functions (tested as data); the calls are made by a caller process
(calls.py) that is killed when a call outlives the timeout, so a Grafana that keeps a connection open costs a
deployment that timeout and no more.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from conveyor.engine.events import (
    DeploymentBlocked,
    DeploymentFinished,
    DeploymentStarted,
    Event,
    HostFinished,
    RegionFinished,
    RegionStarted,
)
from conveyor.engine.results import DeploymentResult
from conveyor.notify.calls import CallerProcess, CallFailed, CallTimedOut
from conveyor.notify.delivery import Courier, DeliveryError, Failures
from conveyor.secrets import mask


def tags(*, app: str, environment: str, region: str, release: str | None, kind: str) -> list[str]:
    """The tags a region's annotation carries: what dashboards filter on."""
    return ["conveyor", f"app:{app}", f"environment:{environment}", f"region:{region}",
            f"release:{release or 'unknown'}", f"kind:{kind}"]


def opening(*, app: str, environment: str, region: str, release: str | None, kind: str, user: str,
            at_ms: int, dashboard_uid: str | None = None) -> dict[str, Any]:
    """The body of the POST that opens a region's annotation."""
    body: dict[str, Any] = {
        "time": at_ms,
        "tags": tags(app=app, environment=environment, region=region, release=release, kind=kind),
        "text": f"{app}: {kind} {release or '(the previous release)'} to {environment}/{region} by {user}",
    }
    if dashboard_uid:
        body["dashboardUID"] = dashboard_uid
    return body


def closing(*, app: str, environment: str, region: str, release: str | None, kind: str, user: str,
            at_ms: int, outcome: str, message: str | None = None) -> dict[str, Any]:
    """The body of the PATCH that closes a region's annotation with its outcome."""
    text = f"{app}: {kind} {release or '(the previous release)'} to {environment}/{region} by {user}: " \
           f"{outcome.replace('_', ' ')}"
    if message and outcome != "succeeded":
        text += f" ({message})"
    return {
        "timeEnd": at_ms,
        "tags": [*tags(app=app, environment=environment, region=region, release=release, kind=kind),
                 f"outcome:{outcome}"],
        "text": mask(text),
    }


class GrafanaAPI:
    """The two calls we make to Grafana's HTTP API, each within `timeout` seconds once the process that makes
    them is ready (it starts with the deployment)."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._caller = CallerProcess()
        self._caller.start()

    def startup_left(self) -> float:
        """How long the calling process may still take to get ready (0 once it is)."""
        return self._caller.startup_left()

    def close(self) -> None:
        """End the caller process (a call still on its way is cut short)."""
        self._caller.close()

    def create(self, annotation: dict[str, Any]) -> int:
        """POST an annotation; its id."""
        answer = self._call("POST", "/api/annotations", annotation)
        annotation_id = answer.get("id")
        if not isinstance(annotation_id, int):
            raise DeliveryError(f"POST /api/annotations: the answer has no annotation id: {str(answer)[:200]}")
        return annotation_id

    def update(self, annotation_id: int, changes: dict[str, Any]) -> None:
        """PATCH an annotation."""
        self._call("PATCH", f"/api/annotations/{annotation_id}", changes)

    def _call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "conveyor"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # The URL is the config's http(s) Grafana URL (validated) plus our path: no file: or custom schemes.
        try:
            answer = self._caller.http(method, self.url + path, headers=headers, body=json.dumps(body),
                                       timeout=self.timeout)
        except CallTimedOut:
            raise DeliveryError(f"{method} {path}: no answer within {self.timeout:g}s") from None
        except CallFailed as exc:
            raise DeliveryError(mask(f"{method} {path}: {exc.why}")) from None
        if answer.status >= 400:
            detail = answer.body[:300].strip()
            raise DeliveryError(mask(f"{method} {path}: HTTP {answer.status} {answer.reason}"
                                     + (f": {' '.join(detail.split())}" if detail else "")))
        try:
            document = json.loads(answer.body) if answer.body.strip() else {}
        except ValueError:
            raise DeliveryError(f"{method} {path}: the answer is not JSON: {answer.body[:200]!r}") from None
        return document if isinstance(document, dict) else {}


def _now_ms() -> int:
    return int(time.time() * 1000)


class Annotations:
    """A subscriber that keeps one Grafana annotation per region of a deployment."""

    def __init__(self, api: GrafanaAPI | None, courier: Courier, failures: Failures, *, app: str,
                 environment: str, kind: str, user: str, dashboard_uid: str | None = None) -> None:
        self.api = api  # None: the token is missing, which was reported; nothing is sent
        self.courier = courier
        self.failures = failures
        self.app, self.environment, self.kind, self.user = app, environment, kind, user
        self.dashboard_uid = dashboard_uid
        self.deployment_id: int | None = None
        self.releases: dict[str, str | None] = {}   # region → its release, for each region started
        self.ended: dict[str, int] = {}              # region → when we last saw it move
        self.ids: dict[str, int] = {}                # region → annotation id (written by the courier)

    def __call__(self, event: Event) -> None:
        """Open, follow and close each region's annotation."""
        match event:
            case DeploymentStarted(id=deployment_id):
                self.deployment_id = deployment_id
            case DeploymentBlocked(id=deployment_id):
                self.deployment_id = deployment_id
                if self.api is not None:
                    self.api.close()  # nothing moves: no annotation to make
            case RegionStarted(region=region, release=release) if self.api is not None:
                self.releases[region] = release
                body = opening(app=self.app, environment=self.environment, region=region, release=release,
                               kind=self.kind, user=self.user, at_ms=_now_ms(), dashboard_uid=self.dashboard_uid)
                self.courier.post(partial(self._open, region, body), "region_started")
            case RegionFinished(region=region):
                self.ended[region] = _now_ms()
            case HostFinished(outcome=outcome) if outcome.host.region in self.ended:
                # switched back after its bake: the region's story ends later
                self.ended[outcome.host.region] = _now_ms()
            case DeploymentFinished(result=result):
                self._close_all(result)
                self.courier.drain()
                if self.api is not None:
                    self.api.close()
        self.failures.flush(self.deployment_id)

    def _open(self, region: str, body: dict[str, Any]) -> None:
        assert self.api is not None
        try:
            self.ids[region] = self.api.create(body)
        except DeliveryError as exc:
            raise DeliveryError(f"annotation for {region} not added: {exc.why}") from None

    def _close_all(self, result: DeploymentResult) -> None:
        if self.api is None:
            return
        if self.deployment_id is None:
            self.deployment_id = result.id
        outcomes = {r.region: r for r in result.regions}
        now = _now_ms()
        for region, release in self.releases.items():
            outcome = outcomes.get(region)
            status = str(outcome.status) if outcome is not None else str(result.status)
            if status in {"pending", "running"}:
                status = str(result.status)
            body = closing(app=self.app, environment=self.environment, region=region, release=release,
                           kind=self.kind, user=self.user, at_ms=self.ended.get(region, now), outcome=status,
                           message=outcome.message if outcome is not None else result.message)
            self.courier.post(partial(self._close, region, body), "deployment_finished")

    def _close(self, region: str, body: dict[str, Any]) -> None:
        assert self.api is not None
        annotation_id = self.ids.get(region)
        if annotation_id is None:
            return  # its POST failed, and that was reported
        try:
            self.api.update(annotation_id, body)
        except DeliveryError as exc:
            raise DeliveryError(f"annotation for {region} not closed: {exc.why}") from None
