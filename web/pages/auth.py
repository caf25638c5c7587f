"""Signing in: by phone and SMS code, or with the operator's sign-in (in dev, an assertion signed
by the stand-in operator SSO); signing out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.api import Problem
from web.pages import BrowserSession
from web.render import page, redirect, safe_next
from web.texts import problem_text

router = APIRouter()


@router.get("/login")
async def login(request: Request, session: BrowserSession, next: str = "/") -> Response:
    return page(request, session, "login.html", title="Вход", next=safe_next(next))


@router.post("/login/phone")
async def send_code(request: Request, session: BrowserSession) -> Response:
    form = await session.form(request)
    target, phone = safe_next(form.get("next")), form.get("phone", "")
    try:
        challenge = await session.public("POST", "/v1/auth/phone/codes", json={"phone": phone})
    except Problem as problem:
        return page(request, session, "login.html", title="Вход", status=400, next=target, phone=phone,
                    error=problem_text(problem.code, problem.detail))
    return page(request, session, "login_code.html", title="Код из SMS", next=target, phone=phone,
                challenge_id=challenge["challenge_id"])


@router.post("/login/code")
async def verify_code(request: Request, session: BrowserSession) -> Response:
    form = await session.form(request)
    target, phone = safe_next(form.get("next")), form.get("phone", "")
    body = {"challenge_id": form.get("challenge_id", ""), "code": form.get("code", "")}
    if form.get("referral_code"):
        body["referral_code"] = form["referral_code"]
    try:
        signed_in = await session.public("POST", "/v1/auth/phone/verify", json=body)
    except Problem as problem:
        return page(request, session, "login_code.html", title="Код из SMS", status=400, next=target, phone=phone,
                    challenge_id=body["challenge_id"], error=problem_text(problem.code, problem.detail))
    session.keep(signed_in)
    return redirect(session, target)


@router.post("/login/operator")
async def operator_sign_in(request: Request, session: BrowserSession) -> Response:
    """Where the operator's SSO sends the subscriber back with its signed assertion; in dev, the
    form gives a phone number and the stand-in SSO signs the assertion for it."""
    form = await session.form(request)
    target, assertion = safe_next(form.get("next")), form.get("assertion", "")
    if not assertion and request.app.state.settings.env == "dev" and form.get("phone"):
        from fakes.operator_sso import sign_assertion  # dev only: the stand-in SSO's published key

        assertion = sign_assertion(form["phone"])
    try:
        signed_in = await session.public("POST", "/v1/auth/operator", json={"assertion": assertion})
    except Problem as problem:
        return page(request, session, "login.html", title="Вход", status=400, next=target,
                    error=problem_text(problem.code, problem.detail))
    session.keep(signed_in)
    return redirect(session, target)


@router.post("/logout")
async def logout(request: Request, session: BrowserSession) -> Response:
    await session.form(request)
    if session.refresh:
        try:
            await session.public("POST", "/v1/auth/logout", json={"refresh_token": session.refresh})
        except Problem:
            pass  # already revoked or expired: signed out either way
    session.forget()
    return redirect(session, "/login")
