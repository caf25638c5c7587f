"""Errors as `application/problem+json` (RFC 9457) with a stable machine `code`.

One table maps the services' gRPC status codes to HTTP; the problem's `code` is the callee's
`ErrorInfo.reason`. Unknown failures become a 500 with a correlation id and a log line."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.grpc_client import error_info
from services.common.limits import MAX_IDEMPOTENCY_KEY_LENGTH
from services.common.logs import request_id_var

log = logging.getLogger("cashback.gateway")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://cashback.example/problems/"

HTTP_BY_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    # Business refusals (INSUFFICIENT_FUNDS, CERTIFICATE_REDEEMED…): the request was understood.
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# The few reasons whose HTTP status is not their gRPC code's: an Idempotency-Key reused with
# another body is 422 whether the gateway's store or the service notices it.
HTTP_BY_REASON: dict[str, int] = {"IDEMPOTENCY_KEY_REUSED": 422}

TITLES: dict[int, str] = {
    400: "Bad request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Request body too large", 414: "Request target too long",
    422: "Request refused", 431: "Request headers too large",
    429: "Too many requests", 500: "Internal error", 503: "Service unavailable", 504: "Upstream timeout",
}
# A 503 says when to retry: the service's own hint (ErrorInfo metadata `retry_after_seconds`) or
# this, about the time `make run`'s supervisor (or an orchestrator) takes to bring a process back.
UNAVAILABLE_RETRY_AFTER_SECONDS = 2
# Messages of these codes come from grpc itself (addresses, stack-ish text), not from our services.
_TRANSPORT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.UNKNOWN}
_TRANSPORT_DETAIL = {
    503: "A service behind the gateway is unavailable; retry later.",
    504: "A service behind the gateway did not answer in time; retry later.",
    500: "Something went wrong on our side.",
}


class Problem(BaseModel):
    """RFC 9457 problem details with a stable machine `code`."""

    type: str = Field(examples=[TYPE_BASE + "insufficient-funds"])
    title: str = Field(examples=["Request refused"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["not enough points: available 1200, requested 5000"])
    code: str = Field(description="Stable machine-readable code.", examples=["INSUFFICIENT_FUNDS"])
    request_id: str | None = Field(default=None, description="Correlation id of the request (also X-Request-Id).")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Per-field validation errors.")


class ApiError(Exception):
    """Raised by the gateway itself (auth, header checks, limits)."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def http_status(code: grpc.StatusCode, reason: str = "") -> int:
    return HTTP_BY_REASON.get(reason) or HTTP_BY_GRPC.get(code, 500)


def problem_response(status: int, code: str, detail: str, *, headers: dict[str, str] | None = None,
                     errors: list[dict[str, Any]] | None = None, extra: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        **(extra or {}),
        "type": TYPE_BASE + code.lower().replace("_", "-"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id_var.get(),
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def rpc_error_response(exc: grpc.aio.AioRpcError) -> JSONResponse:
    info = error_info(exc)
    status = http_status(info.code, info.reason)
    headers: dict[str, str] = {}
    if status in (429, 503):
        default = "1" if status == 429 else str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        headers["Retry-After"] = str(max(1, int(float(info.metadata.get("retry_after_seconds", default) or 1))))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if info.code in _TRANSPORT_CODES or status == 500:
        log.warning("upstream call failed: %s %s", info.code.name, info.message)
        code = info.reason if info.reason not in {"", info.code.name} else info.code.name
        if status == 500:
            code = "INTERNAL"
        return problem_response(status, code, _TRANSPORT_DETAIL.get(status, _TRANSPORT_DETAIL[500]), headers=headers)
    # The error's metadata are the problem's extension members (e.g. `purchase_id` of
    # ORDER_ALREADY_TRACKED, `field` of a malformed postback); the standard members win.
    return problem_response(status, info.reason, info.message or TITLES.get(status, "Error"), headers=headers,
                            extra=dict(info.metadata))


def internal_error_response(exc: BaseException) -> JSONResponse:
    correlation = request_id_var.get()
    if correlation == "-":
        correlation = uuid.uuid4().hex
    log.error("unhandled error (correlation id %s)", correlation, exc_info=exc)
    return problem_response(500, "INTERNAL", f"Something went wrong on our side; correlation id {correlation}.")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"location": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", ""),
             "type": err.get("type", "")} for err in exc.errors()]


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _validation_errors(exc)
    for err in exc.errors():
        if tuple(str(part).lower() for part in err.get("loc", ())) == ("header", "idempotency-key"):
            return problem_response(400, "IDEMPOTENCY_KEY_MISSING" if err.get("type") == "missing"
                                    else "IDEMPOTENCY_KEY_INVALID",
                                    "The Idempotency-Key header is required: 1 to "
                                    f"{MAX_IDEMPOTENCY_KEY_LENGTH} printable characters.")
    summary = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
    return problem_response(400, "VALIDATION_FAILED", f"The request is not valid: {summary}", errors=errors)


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers)


async def _on_rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
    return rpc_error_response(exc)


async def _on_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE"}
    code = codes.get(exc.status_code, f"HTTP_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
    if exc.status_code == 404:
        detail = "No such route."
    if exc.status_code == 413:
        detail = "The request body is too large."
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}."
    return problem_response(exc.status_code, code, detail, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 names only the first
    route's: FastAPI makes one route per method)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return sorted(methods)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)  # type: ignore[arg-type]


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of a route's problem responses."""
    return {status: {"model": Problem, "description": TITLES.get(status, "Error"),
                     "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for status in statuses}
