"""Settings: the spending goal, an e-mail confirmed with its code, leaving and rejoining the program."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.api import Problem
from web.pages import BrowserSession
from web.render import page, redirect
from web.texts import problem_text

router = APIRouter()


async def _settings_page(request: Request, session: BrowserSession, *, status: int = 200, error: str | None = None,
                         email: str = "", challenge_id: str = "") -> Response:
    me = await session.call("GET", "/v1/me")
    return page(request, session, "settings.html", title="Настройки", me=me, email=email,
                challenge_id=challenge_id, status=status, error=error)


@router.get("/settings")
async def settings(request: Request, session: BrowserSession) -> Response:
    return await _settings_page(request, session)


async def _act(request: Request, session: BrowserSession, method: str, path: str, done: str,
               body: dict[str, str] | None = None) -> Response:
    try:
        await session.call(method, path, json=body)
    except Problem as problem:
        if problem.status >= 500:
            raise
        return await _settings_page(request, session, status=400, error=problem_text(problem.code, problem.detail))
    return redirect(session, f"/settings?done={done}")


@router.post("/settings/goal")
async def set_goal(request: Request, session: BrowserSession) -> Response:
    form = await session.form(request)
    return await _act(request, session, "PATCH", "/v1/me", "goal", {"spending_goal": form.get("spending_goal", "")})


@router.post("/settings/email")
async def send_email_code(request: Request, session: BrowserSession) -> Response:
    form = await session.form(request)
    email = form.get("email", "")
    try:
        challenge = await session.call("POST", "/v1/me/email/codes", json={"email": email})
    except Problem as problem:
        if problem.status >= 500:
            raise
        return await _settings_page(request, session, status=400, email=email,
                                    error=problem_text(problem.code, problem.detail))
    return await _settings_page(request, session, email=email, challenge_id=challenge["challenge_id"])


@router.post("/settings/email/verify")
async def verify_email(request: Request, session: BrowserSession) -> Response:
    form = await session.form(request)
    try:
        await session.call("POST", "/v1/me/email/verify",
                           json={"challenge_id": form.get("challenge_id", ""), "code": form.get("code", "")})
    except Problem as problem:
        if problem.status >= 500:
            raise
        return await _settings_page(request, session, status=400, email=form.get("email", ""),
                                    challenge_id=form.get("challenge_id", ""),
                                    error=problem_text(problem.code, problem.detail))
    return redirect(session, "/settings?done=email")


@router.post("/settings/leave")
async def leave(request: Request, session: BrowserSession) -> Response:
    await session.form(request)
    return await _act(request, session, "POST", "/v1/me/disable", "left")


@router.post("/settings/rejoin")
async def rejoin(request: Request, session: BrowserSession) -> Response:
    await session.form(request)
    return await _act(request, session, "POST", "/v1/me/enable", "rejoined")
