"""The catalogue (categories and search), a partner's page (terms in words, the cashback
calculator) and the way to the shop: the gateway's plain-link `/go/{partner_id}`, which records
the click and sends the browser on to the shop with the click id."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from web.api import Problem
from web.pages import BrowserSession
from web.render import page
from web.texts import parse_roubles, problem_text

router = APIRouter()
SLUG = r"^[a-z0-9][a-z0-9._-]*$"
PAGE_SIZE = 24


@router.get("/")
async def catalogue(request: Request, session: BrowserSession, q: str = "", category: str = "",
                    page_token: str = "") -> Response:
    q, category = q.strip()[:200], category.strip()[:100]
    categories = (await session.public("GET", "/v1/categories"))["categories"]
    found = await session.public("GET", "/v1/partners", params={
        "q": q, "category": category, "page_size": PAGE_SIZE, "page_token": page_token})
    names = {c["category_id"]: c["name"] for c in categories}
    return page(request, session, "catalogue.html", title="Каталог магазинов", q=q, category=category,
                categories=categories, category_names=names, partners=found["partners"],
                total=found["total_size"], next_page_token=found["next_page_token"])


@router.get("/partners/{partner_id}")
async def partner(request: Request, session: BrowserSession, partner_id: str = Path(pattern=SLUG, max_length=100),
                  amount: str = "", app: str = "", loyalty: str = "") -> Response:
    found = await session.public("GET", f"/v1/partners/{partner_id}")
    quote, error = None, None
    if amount:
        kopecks = parse_roubles(amount)
        if kopecks is None:
            error = "Введите сумму покупки в рублях, например 1500 или 1499,90."
        else:
            try:
                quote = (await session.public("GET", f"/v1/partners/{partner_id}/quote", params={
                    "amount_kopecks": kopecks, "channel": "APP" if app else "WEB",
                    "other_loyalty_used": "true" if loyalty else "false"}))["decision"]
            except Problem as problem:
                error = problem_text(problem.code, problem.detail)
    return page(request, session, "partner.html", title=found["name"], partner=found, amount=amount, app=app,
                loyalty=loyalty, quote=quote, status=400 if error else 200, error=error)


@router.get("/go/{partner_id}")
async def go(request: Request, session: BrowserSession,
             partner_id: str = Path(pattern=SLUG, max_length=100)) -> Response:
    """«Перейти в магазин»: a fresh access cookie (the profile call refreshes it if needed), then the
    gateway's `/go/{partner_id}` records the click and redirects to the shop."""
    me = await session.call("GET", "/v1/me")
    if me["status"] == "DISABLED":
        return page(request, session, "error.html", title="Покупки не отслеживаются", status=409,
                    message="Вы вышли из программы, поэтому кэшбэк за покупки не начисляется. "
                            "Вернуться в программу можно в настройках.")
    gateway = request.app.state.settings.public_gateway_url.rstrip("/")
    return session.apply(RedirectResponse(f"{gateway}/go/{partner_id}", status_code=303))
