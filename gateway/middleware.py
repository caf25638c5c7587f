"""ASGI middleware: a request id on every request (taken from X-Request-Id or made up, echoed
back, bound to the logs and passed to the services as gRPC metadata), caps on the request line
(414 over MAX_TARGET_BYTES), the headers (431 over MAX_HEADER_BYTES) and the body (413), an access
log line, and the last line of defence against unknown errors (500)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import internal_error_response, problem_response
from services.common.logs import request_id_var

log = logging.getLogger("cashback.gateway.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
MAX_TARGET_BYTES = 8 * 1024  # path and query string
MAX_HEADER_BYTES = 16 * 1024  # every header's name and value together


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body parsing lets it through to the problem handler."""

    def __init__(self) -> None:
        super().__init__(413, "BODY_TOO_LARGE")


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming, declared = "", ""
        for key, value in scope.get("headers", ()):  # ASGI header names are lower-case
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
            elif key == b"content-length":
                declared = value.decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        target = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string", b""))
        header_bytes = sum(len(k) + len(v) for k, v in scope.get("headers", ()))
        started = time.monotonic()
        state: dict[str, Any] = {"status": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        try:
            if target > MAX_TARGET_BYTES:
                await problem_response(414, "URI_TOO_LONG", f"The path and query are longer than {MAX_TARGET_BYTES} "
                                       "bytes.")(scope, receive, send_with_id)
                return
            if header_bytes > MAX_HEADER_BYTES:
                await problem_response(431, "HEADERS_TOO_LARGE", f"The headers are larger than {MAX_HEADER_BYTES} "
                                       "bytes.")(scope, receive, send_with_id)
                return
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BodyTooLarge
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            if state["status"] is None:
                await problem_response(413, "BODY_TOO_LARGE",
                                       f"The request body is larger than {self.max_body_bytes} bytes.")(
                    scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - the last line: a problem, never a stack trace
            if state["status"] is None:
                await internal_error_response(exc)(scope, receive, send_with_id)
            else:
                log.exception("error after the response started")
        finally:
            log.info("%s %s -> %s in %.0f ms", scope.get("method"), scope.get("path"), state["status"],
                     (time.monotonic() - started) * 1000)
            request_id_var.reset(token)
