"""Pages and redirects: Jinja2 templates (autoescaped) with the session's cookies applied."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from web import texts
from web.session import CSRF_FIELD, Session

templates = Environment(loader=PackageLoader("web", "templates"), autoescape=select_autoescape(["html"]),
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
templates.filters.update(money=texts.money, when=texts.when, percent=texts.percent, terms=texts.terms,
                         decision=texts.decision)
templates.globals.update(texts=texts, new_key=lambda: uuid.uuid4().hex, CSRF_FIELD=CSRF_FIELD)

NAV = [("/", "Каталог"), ("/cashback", "Мой кэшбэк"), ("/purchases", "Мои покупки"), ("/spend", "Потратить"),
       ("/claims", "Заявки"), ("/settings", "Настройки")]


def page(request: Request, session: Session, name: str, *, title: str, status: int = 200,
         error: str | None = None, **context: Any) -> HTMLResponse:
    settings = request.app.state.settings
    notice = texts.DONE.get(request.query_params.get("done", ""))
    html = templates.get_template(name).render(
        request=request, session=session, title=title, error=error, notice=notice, nav=NAV,
        path=request.url.path, env=settings.env, gateway_url=settings.public_gateway_url, **context)
    return session.apply(HTMLResponse(html, status_code=status))


def redirect(session: Session, url: str) -> RedirectResponse:
    """After a POST: see the result with a GET (303), so that a reload never posts twice."""
    return session.apply(RedirectResponse(url, status_code=303))  # type: ignore[return-value]


def safe_next(value: str | None) -> str:
    """Only our own paths as a place to come back to (no //other.site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"
