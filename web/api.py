"""The gateway's public HTTP API, as the website calls it: JSON in and out, problems raised as
`Problem` with the gateway's stable `code`. Nothing here knows the services behind the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Problem(Exception):
    status: int
    code: str
    detail: str = ""


class Api:
    def __init__(self, base_url: str, timeout: float) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                   client_address: str = "") -> Any:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if client_address:  # the browser's address, for the gateway's per-address limits
            sent["X-Forwarded-For"] = client_address
        try:
            reply = await self._http.request(method, path, json=json, params=params, headers=sent)
        except httpx.HTTPError as exc:
            raise Problem(503, "GATEWAY_UNREACHABLE", str(exc)) from exc
        if reply.status_code >= 400:
            try:
                body = reply.json()
            except ValueError:
                body = {}
            raise Problem(reply.status_code, str(body.get("code") or "HTTP_ERROR"), str(body.get("detail") or ""))
        return reply.json() if reply.content else None
