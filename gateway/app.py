"""`create_app(settings)`: the FastAPI application, with one gRPC channel per upstream opened in
its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from gateway import errors
from gateway.auth import KeySet
from gateway.config import Settings
from gateway.idempotency import IdempotencyStore
from gateway.limits import RateLimiter
from gateway.middleware import MAX_HEADER_BYTES, MAX_TARGET_BYTES, GatewayMiddleware
from gateway.routes import auth, catalogue, dev, me, postbacks, redemption, stores, support
from gateway.schemas import Health
from gateway.upstreams import Upstreams
from services.common.redis_store import connect_redis

log = logging.getLogger("cashback.gateway")

DESCRIPTION = """The cashback program's HTTP API.

Money is integer kopecks (1 point = 1 rouble = 100 kopecks). Errors are `application/problem+json`
(RFC 9457) with a stable machine `code`. Money operations take an `Idempotency-Key` header: a
replay with the same key returns the first response."""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstreams = Upstreams.open(settings)
        redis = await connect_redis(settings.redis_url)
        app.state.upstreams = upstreams
        app.state.keyset = KeySet(upstreams.identity, settings)
        app.state.limits = RateLimiter(redis, per_user=settings.rate_limit_per_user,
                                       per_address=settings.rate_limit_per_address)
        app.state.idempotency = IdempotencyStore(redis, settings.idempotency_ttl_seconds)
        try:
            yield
        finally:
            await upstreams.close()
            if redis is not None:
                await redis.aclose()

    app = FastAPI(title="Cashback API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  # operationId = the handler's name (`order_certificate`), which the links refer to.
                  generate_unique_id_function=lambda route: route.name)
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(GatewayMiddleware, max_body_bytes=settings.max_body_bytes)

    # Postbacks first: routes are matched in order, and they are the busiest.
    for router in (postbacks.router, auth.router, me.router, redemption.router, catalogue.router,
                   stores.router, support.router):
        app.include_router(router)
    if settings.env == "dev":
        app.include_router(dev.router)

    # Swagger UI from its PyPI package, served here: /docs renders without internet (no CDN).
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} — docs",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css", swagger_favicon_url="data:,")

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The gateway process is alive")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], summary="Every upstream answers SERVING",
             responses={503: {"model": Health, "description": "Some upstream is not serving"}})
    async def readyz(request: Request) -> Any:
        down = await request.app.state.upstreams.not_serving(settings.readiness_timeout_seconds)
        if down:
            return JSONResponse(Health(status="unavailable", not_serving=down).model_dump(), status_code=503)
        return Health(status="ok")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with request validation failures documented as what they are: 400
    problems (FastAPI's default says 422 with its own body)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", errors.Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
    content = {errors.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    problem = {"description": "The request is not valid (code VALIDATION_FAILED)", "content": content}
    too_large = {"description": f"The request body is larger than {app.state.settings.max_body_bytes} bytes "
                                "(code BODY_TOO_LARGE)", "content": content}
    target_too_long = {"description": f"The path and query are longer than {MAX_TARGET_BYTES} bytes "
                                      "(code URI_TOO_LONG)", "content": content}
    headers_too_large = {"description": f"The headers are larger than {MAX_HEADER_BYTES} bytes "
                                        "(code HEADERS_TOO_LARGE)", "content": content}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            default_422 = responses.get("422", {}).get("content", {}).get("application/json", {})
            if default_422.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
                responses.setdefault("400", problem)
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", problem)
            if operation.get("requestBody"):
                responses.setdefault("413", too_large)
            responses.setdefault("414", target_too_long)  # every route: the middleware's caps
            responses.setdefault("431", headers_too_large)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema
