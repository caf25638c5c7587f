"""The operator's billing, behind a small interface: is a number the operator's subscriber now
(numbers move between operators: only billing knows), top up a phone account, ask about a top-up.

Billing is idempotent by `topup_id` (we send the payment id), so a top-up may be sent again
safely. Every answer that is not a clear "applied" or "refused" (timeout, connection error, 5xx)
is UNKNOWN: the top-up may or may not have happened, and only asking again settles it."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import httpx

from services.common.errors import Unavailable

log = logging.getLogger("cashback.redemption.billing")


class TopupState(enum.StrEnum):
    APPLIED = "APPLIED"
    REFUSED = "REFUSED"
    # Billing has never seen this top-up (only from `status`).
    NOT_FOUND = "NOT_FOUND"
    # No clear answer: timeout, connection error, 5xx.
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class TopupAnswer:
    state: TopupState
    reason: str = ""


class BillingUnavailable(Unavailable):
    """Billing did not say whether the number is the operator's."""

    reason = "BILLING_UNAVAILABLE"


class Billing(Protocol):
    async def is_subscriber(self, phone: str) -> bool: ...

    async def top_up(self, topup_id: str, phone: str, amount_kopecks: int) -> TopupAnswer: ...

    async def status(self, topup_id: str) -> TopupAnswer: ...

    async def close(self) -> None: ...


def _answer(body: object) -> TopupAnswer:
    if isinstance(body, dict):
        status, reason = body.get("status"), str(body.get("reason") or "")
        if status == "applied":
            return TopupAnswer(TopupState.APPLIED)
        if status == "refused":
            return TopupAnswer(TopupState.REFUSED, reason or "refused by billing")
    return TopupAnswer(TopupState.UNKNOWN, f"unexpected billing answer: {str(body)[:200]}")


class HttpBilling:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_seconds))

    async def is_subscriber(self, phone: str) -> bool:
        """Whether billing serves this number now (ported in: yes; ported out: no)."""
        try:
            response = await self._client.get(f"/v1/subscribers/{quote(phone, safe='')}")
        except httpx.HTTPError as exc:
            raise BillingUnavailable("billing did not answer; try again later") from exc
        if response.status_code == 404:
            return False
        body = _json(response)
        if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("subscriber"), bool):
            log.warning("billing subscriber lookup: HTTP %d", response.status_code)
            raise BillingUnavailable("billing did not answer clearly; try again later")
        return body["subscriber"]

    async def top_up(self, topup_id: str, phone: str, amount_kopecks: int) -> TopupAnswer:
        try:
            response = await self._client.post(
                "/v1/topups", json={"topup_id": topup_id, "phone": phone, "amount_kopecks": amount_kopecks})
        except httpx.HTTPError as exc:
            log.warning("billing top-up %s: no answer (%s)", topup_id, type(exc).__name__)
            return TopupAnswer(TopupState.UNKNOWN, type(exc).__name__)
        if response.status_code >= 500:
            log.warning("billing top-up %s: HTTP %d", topup_id, response.status_code)
            return TopupAnswer(TopupState.UNKNOWN, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            # A 4xx is billing's definite "not applied" to a request it could not accept.
            log.error("billing refused the request for top-up %s: HTTP %d %s", topup_id, response.status_code,
                      response.text[:200])
            return TopupAnswer(TopupState.REFUSED, f"billing rejected the request (HTTP {response.status_code})")
        return _answer(_json(response))

    async def status(self, topup_id: str) -> TopupAnswer:
        try:
            response = await self._client.get(f"/v1/topups/{topup_id}")
        except httpx.HTTPError as exc:
            return TopupAnswer(TopupState.UNKNOWN, type(exc).__name__)
        if response.status_code == 404:
            return TopupAnswer(TopupState.NOT_FOUND)
        if response.status_code != 200:
            return TopupAnswer(TopupState.UNKNOWN, f"HTTP {response.status_code}")
        return _answer(_json(response))

    async def close(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text
