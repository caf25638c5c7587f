"""My cashback (balance, pending, the statement), my purchases with their history and the decision
explained, and claims («кэшбэк не пришёл»)."""

from __future__ import annotations

from datetime import date
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.api import Problem
from web.pages import BrowserSession
from web.render import page, redirect
from web.texts import parse_roubles, problem_text

router = APIRouter()


@router.get("/cashback")
async def cashback(request: Request, session: BrowserSession, page_token: str = "") -> Response:
    # One call after another: two at once could both rotate the refresh token (a reuse, which signs out).
    balance = await session.call("GET", "/v1/me/balance")
    statement = await session.call("GET", "/v1/me/statement", params={"page_token": page_token})
    return page(request, session, "cashback.html", title="Мой кэшбэк", balance=balance,
                entries=statement["entries"], next_page_token=statement["next_page_token"])


@router.get("/purchases")
async def purchases(request: Request, session: BrowserSession, page_token: str = "") -> Response:
    found = await session.call("GET", "/v1/me/purchases", params={"page_token": page_token})
    return page(request, session, "purchases.html", title="Мои покупки", purchases=found["purchases"],
                next_page_token=found["next_page_token"],
                partner_names=await _partner_names(session, {p["partner_id"] for p in found["purchases"]}))


@router.get("/purchases/{purchase_id}")
async def purchase(request: Request, session: BrowserSession, purchase_id: str) -> Response:
    """One purchase with its history as the shop told it (superseded reports marked)."""
    found = await session.call("GET", f"/v1/me/purchases/{quote(purchase_id, safe='')}")
    p = found["purchase"]
    names = await _partner_names(session, {p["partner_id"]})
    return page(request, session, "purchase.html", title=f"Покупка в {names[p['partner_id']]}", p=p,
                history=found["history"], partner_name=names[p["partner_id"]])


async def _partner_names(session: BrowserSession, partner_ids: set[str]) -> dict[str, str]:
    """Shop names for a page of purchases or claims (a partner since removed keeps its id)."""
    names = {}
    for partner_id in sorted(partner_ids):
        try:
            names[partner_id] = (await session.public("GET", f"/v1/partners/{partner_id}"))["name"]
        except Problem:
            names[partner_id] = partner_id
    return names


async def _claims_page(request: Request, session: BrowserSession, *, status: int = 200, error: str | None = None,
                       values: dict[str, str] | None = None) -> Response:
    claims = await session.call("GET", "/v1/me/claims")
    values = values or {"partner_id": request.query_params.get("partner", "")[:100]}
    return page(request, session, "claims.html", title="Заявки: кэшбэк не пришёл", claims=claims["claims"],
                partner_names=await _partner_names(session, {c["partner_id"] for c in claims["claims"]}),
                values=values, today=date.today().isoformat(), status=status, error=error)


@router.get("/claims")
async def claims(request: Request, session: BrowserSession) -> Response:
    return await _claims_page(request, session)


@router.post("/claims")
async def file_claim(request: Request, session: BrowserSession) -> Response:
    form = await session.form(request)
    amount = parse_roubles(form.get("amount", ""))
    if amount is None:
        return await _claims_page(request, session, status=400, values=form,
                                  error="Введите сумму заказа в рублях, например 2490 или 2490,50.")
    try:
        await session.call("POST", "/v1/me/claims", json={
            "partner_id": form.get("partner_id", "").lower(), "order_id": form.get("order_id", ""),
            "order_date": form.get("order_date", ""), "amount_kopecks": amount, "comment": form.get("comment", "")})
    except Problem as problem:
        if problem.status >= 500:
            raise
        return await _claims_page(request, session, status=400, values=form,
                                  error=problem_text(problem.code, problem.detail))
    return redirect(session, "/claims?done=claim")
