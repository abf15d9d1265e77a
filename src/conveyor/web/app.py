"""The Starlette application: the pages, the static files, and a running deployment's server-sent events.

Every page reads the state store when it is asked for; the live view polls it, so a deployment run by a
controller on another machine shows here as soon as that controller writes to the shared store.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, date
from pathlib import Path
from typing import Any

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from conveyor.errors import ConveyorError, HeldError
from conveyor.gates.windows import now, parse_at
from conveyor.operations.dora import duration
from conveyor.operations.gating import REASON_LIMIT, BadReason, approve_as, denial_reason, deny_as
from conveyor.operations.provenance import release_story
from conveyor.operations.users import authenticate
from conveyor.operations.workspace import Workspace
from conveyor.secrets import mask
from conveyor.web import pages
from conveyor.web.auth import SESSION_COOKIE, SESSION_SECONDS, Auth, csrf_token, posted, safe_next
from conveyor.web.deploys import WAIT as DEPLOY_WAIT
from conveyor.web.deploys import DeployRun
from conveyor.web.limits import SignInLimits, client_address

HERE = Path(__file__).parent
LIVE_LIMIT = 6 * 3600.0  # seconds a live view follows one deployment before it asks the browser to reload


def templates() -> Jinja2Templates:
    """Jinja with autoescaping on for every template: what the store holds is never trusted markup. Every
    value a template shows is masked first (`finalize`): a secret that reached the store (a commit subject,
    a host's output) does not reach a page."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, finalize=_masked)
    env.filters["duration"] = duration
    return Jinja2Templates(env=env)


def _masked(value: Any) -> Any:
    return mask(value) if isinstance(value, str) else value


def sse(event: str, html: str) -> str:
    """One server-sent event whose data is `html` (each of its lines a `data:` line)."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


def create_app(ws: Workspace, *, poll: float = 1.0, limits: SignInLimits | None = None) -> Starlette:
    """The dashboard over `ws`'s state store; `poll` is how often (seconds) a live view reads it; `limits` on
    failed sign-ins (the defaults of web/limits.py unless given)."""
    views = templates()
    auth = Auth(ws.store, ws.config.web)
    tries = limits or SignInLimits()

    async def read(function: Any, *args: Any, **kwargs: Any) -> Any:
        # SQLAlchemy is synchronous: a read runs in a worker thread, never on the event loop.
        return await anyio.to_thread.run_sync(lambda: function(ws, *args, **kwargs))

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        return views.TemplateResponse(request, name, {"app_name": ws.config.app, "user": auth.user(request),
                                                      "csrf": csrf_token(request), "web": ws.config.web,
                                                      "environment_names": list(ws.config.environments),
                                                      **context},
                                      status_code=status_code)

    async def login_form(request: Request) -> Response:
        return page(request, "login.html", next=safe_next(request.query_params.get("next")), problem=None)

    async def login(request: Request) -> Response:
        form = await posted(request)
        name, password = form.get("username", ""), form.get("password", "")
        address = client_address(request, ws.config.web)
        wait = tries.wait(name, address)
        if wait is not None:
            seconds = math.ceil(wait)
            refused = page(request, "login.html", status_code=429, next=safe_next(form.get("next")),
                           problem=f"Too many failed sign-ins for this user or from this address: try again in "
                                   f"{seconds} s.")
            refused.headers["Retry-After"] = str(seconds)
            return refused
        if not await anyio.to_thread.run_sync(lambda: authenticate(ws.store, name, password)):
            tries.failed(name, address)
            return page(request, "login.html", status_code=401, next=safe_next(form.get("next")),
                        problem="Unknown user or wrong password.")
        tries.succeeded(name)
        auth.signed_in(request, name)
        csrf_token(request)
        return RedirectResponse(safe_next(form.get("next")), status_code=303)

    async def logout(request: Request) -> Response:
        await posted(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def approvals(request: Request) -> Response:
        rows = await anyio.to_thread.run_sync(lambda: ws.store.approvals(None, 100))
        return page(request, "approvals.html", approvals=rows, message=None, reason_limit=REASON_LIMIT)

    async def decide(request: Request, decision: str) -> Response:
        """Approve or deny a request as the signed-in user: the same rules and audit as the CLI's."""
        form = await posted(request)
        user = auth.user(request)
        approval_id = request.path_params["id"]
        if user is None:
            raise HTTPException(401, f"sign in to {decision}")
        try:
            if decision == "approve":
                record = await anyio.to_thread.run_sync(lambda: approve_as(ws.store, user, approval_id))
            else:
                reason = denial_reason(form.get("reason", ""))
                record = await anyio.to_thread.run_sync(lambda: deny_as(ws.store, user, approval_id, reason))
            done = "Approved" if decision == "approve" else "Denied"
            message, status = f"{done} #{approval_id}: {record['release']} to {record['environment']}.", 200
        except HeldError as exc:
            message, status = str(exc), 403
        except BadReason as exc:
            message, status = str(exc), 400
        except ConveyorError as exc:
            message, status = str(exc), 409
        rows = await anyio.to_thread.run_sync(lambda: ws.store.approvals(None, 100))
        return page(request, "approvals.html", status_code=status, approvals=rows, message=message,
                    reason_limit=REASON_LIMIT)

    async def approve(request: Request) -> Response:
        return await decide(request, "approve")

    async def deny(request: Request) -> Response:
        return await decide(request, "deny")

    async def fleet(request: Request) -> Response:
        return page(request, "fleet.html", environments=await read(pages.fleet), stack=await read(pages.stack),
                    flags=await read(pages.flags))

    async def history(request: Request) -> Response:
        chosen = {key: request.query_params.get(key, "")[:200]
                  for key in ("environment", "status", "user", "region", "from", "to")}
        try:
            days = {key: date.fromisoformat(chosen[key]) if chosen[key] else None for key in ("from", "to")}
        except ValueError:
            return page(request, "history.html", status_code=400, deployments=[], chosen=chosen,
                        environments=list(ws.config.environments), statuses=pages.STATUSES,
                        regions=pages.regions(ws), problem="Dates are days like 2026-12-01.")
        rows = await read(pages.history, environment=chosen["environment"], status=chosen["status"],
                          user=chosen["user"], region=chosen["region"], since=days["from"], until=days["to"])
        return page(request, "history.html", deployments=rows, chosen=chosen, environments=list(ws.config.environments),
                    statuses=pages.STATUSES, regions=pages.regions(ws), problem=None)

    async def deployment(request: Request) -> Response:
        detail = await read(pages.deployment, request.path_params["id"])
        if detail is None:
            raise HTTPException(404, f"no deployment #{request.path_params['id']}")
        return page(request, "deployment.html", d=detail)

    async def events(request: Request) -> Response:
        deployment_id = request.path_params["id"]
        if await read(pages.deployment, deployment_id) is None:
            raise HTTPException(404, f"no deployment #{deployment_id}")
        fragment = views.get_template("_live.html")

        async def stream() -> AsyncIterator[str]:
            sent = ""
            deadline = time.monotonic() + LIVE_LIMIT
            while time.monotonic() < deadline and not await request.is_disconnected():
                detail = await read(pages.deployment, deployment_id)
                html = fragment.render(d=detail)
                digest = hashlib.sha256(html.encode()).hexdigest()
                if digest != sent:
                    sent = digest
                    yield sse("live", html)
                if detail["status"] != "running":
                    yield sse("done", "")
                    return
                await anyio.sleep(poll)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def release(request: Request) -> Response:
        story = await read(release_story, request.path_params["release"])
        if story is None:
            raise HTTPException(404, f"no release {request.path_params['release'][:200]} in this store")
        return page(request, "release.html", r=story, message=None)

    async def deploy(request: Request) -> Response:
        """`web.deploys: true`: run the CLI's `conveyor deploy` as the signed-in user (web/deploys.py)."""
        if not ws.config.web.deploys:
            raise HTTPException(404, "this dashboard does not deploy (web.deploys is not true)")
        form = await posted(request)
        user = auth.user(request)
        release_id, env = request.path_params["release"], form.get("environment", "")
        if user is None:
            raise HTTPException(401, "sign in to deploy")
        if env not in ws.config.environments:
            raise HTTPException(400, f"no environment {env[:100]!r} in conveyor.yml")
        if form.get("confirm") != "yes":
            raise HTTPException(400, "tick the box to say you mean it")
        if await read(lambda w: w.store.release_manifest(release_id)) is None:
            raise HTTPException(404, f"no release {release_id[:200]} built in this store")
        newest = await read(lambda w: [d["id"] for d in w.store.history(None, 1)])
        await read(lambda w: w.store.add_event("web_deploy", user, environment=env, release=release_id,
                                               address=client_address(request, ws.config.web)))
        run = DeployRun(ws.loaded.path, ws.store.url, user, env, release_id)
        deadline = time.monotonic() + DEPLOY_WAIT
        while time.monotonic() < deadline:
            ended = run.exit_code is not None
            started = await read(lambda w: [d for d in w.store.history(env, 5, user=user)
                                            if d["id"] > (newest[0] if newest else 0)])
            if started and started[-1]["status"] != "blocked":
                return RedirectResponse(f"/deployments/{started[-1]['id']}", status_code=303)
            if ended:
                story = await read(release_story, release_id)
                return page(request, "release.html", status_code=200 if run.exit_code == 0 else 409, r=story,
                            message=f"conveyor deploy {env}: {run.sentence()}")
            await anyio.sleep(0.2)
        return RedirectResponse(f"/history?environment={env}&user={user}", status_code=303)

    async def windows(request: Request) -> Response:
        at = request.query_params.get("at")
        try:
            if at is not None and len(at) > 64:
                raise ValueError("a time is at most 64 characters")
            moment = parse_at(at, UTC) if at else now()
        except ValueError as exc:
            raise HTTPException(400, f"at: {exc}") from None
        return page(request, "windows.html", at=moment, environments=await read(pages.windows, moment))

    async def dora(request: Request) -> Response:
        try:
            weeks = min(max(int(request.query_params.get("weeks", "12")), 1), 104)
        except ValueError:
            weeks = 12
        return page(request, "dora.html", weeks=weeks, **await read(pages.dora, weeks))

    read_only = auth.reader
    routes = [
        Route("/", read_only(fleet)),
        Route("/history", read_only(history)),
        Route("/deployments/{id:int}", read_only(deployment)),
        Route("/deployments/{id:int}/events", read_only(events)),
        Route("/dora", read_only(dora)),
        Route("/windows", read_only(windows)),
        Route("/releases/{release}", read_only(release)),
        Route("/releases/{release}/deploy", deploy, methods=["POST"]),
        Route("/approvals", read_only(approvals)),
        Route("/approvals/{id:int}/approve", approve, methods=["POST"]),
        Route("/approvals/{id:int}/deny", deny, methods=["POST"]),
        Route("/login", login_form),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    # Secure, HttpOnly (Starlette always sets it), SameSite=Lax: a link from chat arrives signed in; a POST
    # from elsewhere carries no valid CSRF token.
    session = Middleware(SessionMiddleware, secret_key=ws.store.session_key(), session_cookie=SESSION_COOKIE,
                         max_age=SESSION_SECONDS, same_site="lax", https_only=True)
    return Starlette(routes=routes, middleware=[session], exception_handlers={HTTPException: _error(views)})


def _error(views: Jinja2Templates) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return views.TemplateResponse(request, "error.html", {"app_name": "conveyor", "status": exc.status_code,
                                                              "detail": exc.detail, "user": None, "csrf": ""},
                                      status_code=exc.status_code)
    return handler
