"""The hardening suite (issue 16): what an attacker or a careless client tries, each refused with a
clear answer and nothing lost, driven through the gateway against the stack as processes.

`stack` is the stack of tests/e2e, started for this package and stopped after it (so that it holds
no database connections while the rest of the suite runs). Tests about client addresses run their
own stacks: one as deployed by default (no trusted proxy), one behind a proxy named in
GATEWAY_TRUSTED_PROXIES (this test process, on 127.0.0.1, plays the proxy and says which client it
forwards for in X-Forwarded-For)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.e2e.conftest import (  # noqa: F401 - `http` is the e2e suite's fixture, on this package's stack
    GENEROUS_LIMITS,
    RunningStack,
    direct_postback,
    http,
    start_private_stack,
)
from tests.polling import eventually

STORE_KEY = {"X-Api-Key": "dev-store-key"}
# Codes per client address per hour at identity: small, so that a test sees whose address counted.
ADDRESS_CODES_PER_HOUR = 3


def beeline_number() -> str:
    """Another operator's number: it earns and buys certificates, but its bill is not ours to pay."""
    return f"+7903{random.randint(0, 9_999_999):07d}"


def mts_number() -> str:
    """The operator's own number (by range)."""
    return f"+7982{random.randint(0, 9_999_999):07d}"


def bearer(signed: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {signed['access_token']}"}



async def earn(client: httpx.AsyncClient, signed: dict, amount_kopecks: int = 1_000_000) -> int:
    """A purchase at AliExpress through the real path (click, the partner's signed postback, accrual
    through tracking's outbox); answers the cashback, once the ledger credited it."""
    auth = bearer(signed)
    click = await client.post("/v1/partners/aliexpress/clicks", headers=auth)
    assert click.status_code == 201, click.text
    quote = await client.get("/v1/partners/aliexpress/quote",
                             params={"amount_kopecks": amount_kopecks, "channel": "WEB"})
    cashback = quote.json()["decision"]["cashback_kopecks"]
    body, headers = direct_postback(order_id=f"AE-{uuid.uuid4().hex[:12]}", click_id=click.json()["click_id"],
                                    status="approved", amount_kopecks=amount_kopecks, currency="RUB", channel="web",
                                    customer_type="individual", event_time=datetime.now(UTC).isoformat())
    reply = await client.post("/v1/postbacks/direct", content=body, headers=headers)
    assert reply.status_code == 200, reply.text

    async def credited() -> bool:  # in the ledger (a sweep may take it on to the phone bill after)
        entries = (await client.get("/v1/me/statement", headers=auth)).json()["entries"]
        return any(e["kind"] == "CASHBACK" and e["direction"] == "CREDIT" for e in entries)

    await eventually(credited)
    return cashback


@pytest.fixture(scope="package")
async def stack(new_database, redis_url, tmp_path_factory) -> AsyncIterator[RunningStack]:
    log_dir = str(tmp_path_factory.mktemp("security-logs"))
    running, ports, _ = await start_private_stack(new_database, redis_url, log_dir, env=GENEROUS_LIMITS)
    try:
        yield RunningStack(running, f"http://127.0.0.1:{ports['gateway']}",
                           f"http://127.0.0.1:{ports['billing']}", log_dir)
    finally:
        await running.stop()


async def _address_stack(new_database, redis_url: str, log_dir: str,
                         gateway: dict[str, str]) -> AsyncIterator[RunningStack]:
    limits = {**GENEROUS_LIMITS, "IDENTITY_ADDRESS_CODES_PER_HOUR": str(ADDRESS_CODES_PER_HOUR),
              # Sign-in lockout tests ask for codes for one number back to back.
              "IDENTITY_RESEND_COOLDOWN_SECONDS": "0", "IDENTITY_MAX_CODE_ATTEMPTS": "20"}
    running, ports, _ = await start_private_stack(new_database, redis_url, log_dir, env=limits,
                                                  overrides={"gateway": gateway})
    try:
        yield RunningStack(running, f"http://127.0.0.1:{ports['gateway']}",
                           f"http://127.0.0.1:{ports['billing']}", log_dir)
    finally:
        await running.stop()


@pytest.fixture(scope="module")
async def default_stack(new_database, redis_url, tmp_path_factory) -> AsyncIterator[RunningStack]:
    """As deployed by default: no proxy is trusted."""
    async for running in _address_stack(new_database, redis_url, str(tmp_path_factory.mktemp("default-logs")), {}):
        yield running


@pytest.fixture(scope="module")
async def proxied_stack(new_database, redis_url, tmp_path_factory) -> AsyncIterator[RunningStack]:
    """Behind a proxy on 127.0.0.1, named in GATEWAY_TRUSTED_PROXIES."""
    async for running in _address_stack(new_database, redis_url, str(tmp_path_factory.mktemp("proxied-logs")),
                                        {"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"}):
        yield running
