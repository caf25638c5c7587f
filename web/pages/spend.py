"""Spending points: paying the operator bill, ordering a certificate, my certificates and handing
one over. Money forms carry an idempotency key made when the form was shown, so a double submit
pays once."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from web.api import Problem
from web.pages import BrowserSession
from web.render import page, redirect
from web.texts import parse_roubles, problem_text

router = APIRouter()


async def _spend_page(request: Request, session: BrowserSession, *, status: int = 200, error: str | None = None,
                      values: dict[str, str] | None = None) -> Response:
    me = await session.call("GET", "/v1/me")
    balance = await session.call("GET", "/v1/me/balance")
    certificates = await session.call("GET", "/v1/me/certificates")
    payments = await session.call("GET", "/v1/me/mobile-payments")
    return page(request, session, "spend.html", title="Потратить баллы", me=me, balance=balance,
                certificates=certificates["certificates"], payments=payments["payments"], values=values or {},
                status=status, error=error)


@router.get("/spend")
async def spend(request: Request, session: BrowserSession) -> Response:
    return await _spend_page(request, session)


async def _money(request: Request, session: BrowserSession, path: str, field: str, done: str) -> Response:
    form = await session.form(request)
    amount = parse_roubles(form.get("amount", ""))
    if amount is None:
        return await _spend_page(request, session, status=400, values=form,
                                 error="Введите сумму в рублях, например 500 или 499,90.")
    try:
        await session.call("POST", path, json={field: amount},
                           headers={"Idempotency-Key": form.get("idempotency_key", "")[:128] or "missing"})
    except Problem as problem:
        if problem.status >= 500:
            raise
        return await _spend_page(request, session, status=400, values=form,
                                 error=problem_text(problem.code, problem.detail))
    return redirect(session, f"/spend?done={done}")


@router.post("/spend/mobile-payment")
async def pay_bill(request: Request, session: BrowserSession) -> Response:
    return await _money(request, session, "/v1/me/mobile-payments", "amount_kopecks", "paid")


@router.post("/spend/certificates")
async def order_certificate(request: Request, session: BrowserSession) -> Response:
    return await _money(request, session, "/v1/me/certificates", "nominal_kopecks", "certificate")


@router.post("/spend/certificates/{certificate_id}/transfer")
async def transfer_certificate(request: Request, session: BrowserSession,
                               certificate_id: str = Path(max_length=100, pattern=r"^[A-Za-z0-9-]+$")) -> Response:
    form = await session.form(request)
    try:
        await session.call("POST", f"/v1/me/certificates/{certificate_id}/transfer",
                           json={"to_phone": form.get("to_phone", "")})
    except Problem as problem:
        if problem.status >= 500:
            raise
        return await _spend_page(request, session, status=400, values=form,
                                 error=problem_text(problem.code, problem.detail))
    return redirect(session, "/spend?done=transferred")
