"""The operator's dashboard at /dashboard: what the bot learned, what members think of it, what this brain is
doing, and one click back. Mounted only when OWNCHAT_OPERATOR_KEY is set (brain/service/app.py).

Reads need the session cookie that the operator key buys; actions also need the CSRF token, ask for
confirmation in the page, and are logged twice: an AuditRecord in Redis (shown in the page) and a log line.
The page, its script and its style ship in this package (static/); nothing is fetched from elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from brain.adapters import COMMUNITY
from brain.dashboard import actions, figures, session
from brain.operator_records import AuditRecord, OperatorAction, SchedulePause
from brain.service.deps import RuntimeDep
from brain.service.errors import ApiError
from brain.service.runtime import Runtime

log = logging.getLogger("brain.dashboard")
STARTED = time.time()
# the page's assets by the name it asks for: only these are served
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
# the page loads nothing from elsewhere and runs only its own script
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
TARGET_PATTERN = r"^(community|user-[0-9a-f]{16})$"

router = APIRouter(prefix="/dashboard", include_in_schema=False)
Session = Depends(session.require_session)
Csrf = Depends(session.require_csrf)


def _asset(name: str) -> str:
    return resources.files("brain.dashboard").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer"}  # fmt: skip


@router.get("", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """The page itself: it asks for a login when there is no session."""
    return HTMLResponse(_asset("index.html"), headers=_headers())


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"No asset {name!r}.")
    return Response(_asset(name), media_type=ASSETS[name], headers=_headers())


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=512)


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Annotated[str, Field(pattern=TARGET_PATTERN)] = COMMUNITY
    version: int | Literal["base"] = Field(description="a version number, or base to serve without the adapter")

    def described(self) -> str:
        return f"roll {self.target} back to {'base' if self.version == 'base' else f'v{self.version}'}"


class CanaryDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: actions.CanaryChoice


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool
    reason: str = Field("", max_length=200)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _audit(
    runtime: Runtime, request: Request, action: OperatorAction, ok: bool, detail: str, target: str | None = None
) -> None:
    record = AuditRecord(action=action, at=_now(), ok=ok, target=target, detail=detail, client=_client(request))
    log.warning("operator %s from %s: %s%s", action, record.client, "" if ok else "refused: ", detail)
    await runtime.store.dashboard.add_audit(record)


@router.post("/api/login")
async def login(body: Login, request: Request, response: Response, runtime: RuntimeDep) -> dict[str, Any]:
    """The operator key buys a session cookie (HttpOnly, SameSite=Strict)."""
    key = session.operator_key(request)
    if not session.key_matches(key, body.key):
        await _audit(runtime, request, "login", False, "a login with a wrong key")
        raise ApiError(401, "unauthorized", "That is not the operator key.")
    cookie = session.new_session(key)
    response.set_cookie(
        session.COOKIE, cookie, max_age=session.SESSION_S, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/dashboard",
    )  # fmt: skip
    await _audit(runtime, request, "login", True, "logged in")
    return {"csrf": session.csrf_token(key, cookie)}


@router.post("/api/logout")
async def logout(response: Response) -> dict[str, bool]:
    response.delete_cookie(session.COOKIE, path="/dashboard")
    return {"ok": True}


@router.get("/api/session")
async def current_session(request: Request) -> dict[str, str | None]:
    """The CSRF token of this session, for the page's actions; null without a session (the page then asks for
    the key: no error, since a page opened without a session is the normal start)."""
    key, cookie = session.operator_key(request), request.cookies.get(session.COOKIE)
    return {"csrf": session.csrf_token(key, cookie) if cookie and session.valid_session(key, cookie) else None}


@router.get("/api/learning", dependencies=[Session])
async def learning(runtime: RuntimeDep) -> dict[str, Any]:
    view = await figures.learning(runtime.store)
    view.update(await asyncio.to_thread(figures.registry_view, runtime.settings))
    return view


@router.get("/api/members", dependencies=[Session])
async def members(runtime: RuntimeDep) -> dict[str, Any]:
    return await figures.members(runtime.store)


@router.get("/api/serving", dependencies=[Session])
async def serving(runtime: RuntimeDep) -> dict[str, Any]:
    return figures.serving(runtime.metrics.registry, model=runtime.model_name, started=STARTED)


async def _act(
    runtime: Runtime, request: Request, action: OperatorAction, target: str | None, asked: str, work: Any
) -> dict[str, Any]:
    """Do ``work`` in a worker thread; audit what was asked and how it ended."""
    try:
        done = await asyncio.to_thread(work)
    except actions.ActionRefused as error:
        await _audit(runtime, request, action, False, f"{asked}: {error}", target)
        raise ApiError(error.status, "refused", str(error)) from None
    await _audit(runtime, request, action, True, done, target)
    return {"ok": True, "detail": done}


@router.post("/api/actions/rollback", dependencies=[Csrf])
async def rollback(body: Rollback, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Put an earlier version of a target live again, or serve it with the base model."""
    return await _act(
        runtime, request, "rollback", body.target, body.described(),
        lambda: actions.rollback(runtime.settings, body.target, body.version),
    )  # fmt: skip


@router.post("/api/actions/canary", dependencies=[Csrf])
async def canary(body: CanaryDecision, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Decide the community's canary now: apply the test's verdict, promote it, or roll it back."""
    return await _act(
        runtime, request, "canary", COMMUNITY, f"canary {body.decision}",
        lambda: actions.decide_canary(runtime.settings, body.decision),
    )  # fmt: skip


@router.post("/api/actions/schedule", dependencies=[Csrf])
async def schedule(body: Schedule, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Pause the nightly schedule (its runs are skipped until it resumes), or resume it."""
    pause = SchedulePause(at=_now(), reason=body.reason) if body.paused else None
    await runtime.store.dashboard.set_schedule_pause(pause)
    detail = (
        "paused the nightly schedule" + (f" ({body.reason})" if body.reason else "")
        if pause
        else "resumed the nightly schedule"
    )
    await _audit(runtime, request, "pause" if pause else "resume", True, detail)
    return {"ok": True, "detail": detail}
