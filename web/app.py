"""`create_app(settings)`: the website. Pages are rendered on the server from the gateway's
public API and work without JavaScript; forms post back here (CSRF-checked) and redirect."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from web.api import Api, Problem
from web.config import Settings
from web.pages import account, auth, catalogue, preferences, spend
from web.render import page, redirect
from web.session import CsrfRejected, NotSignedIn, Session
from web.texts import problem_text

log = logging.getLogger("cashback.web")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.api = Api(settings.gateway_url, settings.gateway_timeout_seconds)
        try:
            yield
        finally:
            await app.state.api.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    for router in (auth.router, catalogue.router, account.router, spend.router, preferences.router):
        app.include_router(router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; "
                                    "form-action 'self'; base-uri 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path != "/static" and not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _: NotSignedIn) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        else:  # a form: back to the page that showed it, once signed in again
            referer = urlsplit(request.headers.get("referer", ""))
            target = referer.path if referer.netloc == request.url.netloc and referer.path else "/"
        return redirect(_session(request), f"/login?next={quote(target)}")

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, _: CsrfRejected) -> HTMLResponse:
        return page(request, _session(request), "error.html", title="Форма устарела", status=403,
                    message="Форма устарела или пришла не с нашего сайта, поэтому ничего не изменилось. "
                            "Обновите страницу и попробуйте снова.")

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> HTMLResponse:
        if exc.status >= 500:
            log.warning("gateway answered %s %s: %s", exc.status, exc.code, exc.detail)
        status = exc.status if exc.status in (400, 403, 404, 409, 413, 422, 429) else 503
        return page(request, _session(request), "error.html", title="Не получилось", status=status,
                    message=problem_text(exc.code, exc.detail))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _session(request: Request) -> Session:
    session = getattr(request.state, "session", None)
    return session if session is not None else Session(request, request.app.state.settings, request.app.state.api)

