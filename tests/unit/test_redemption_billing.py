"""The billing adapter against the fake operator billing, a real local HTTP server."""

from __future__ import annotations

import uuid

import httpx
import pytest

from fakes.billing import running_billing
from services.redemption.billing import HttpBilling, TopupState


@pytest.fixture
async def billing_url():
    async with running_billing() as url:
        yield url


async def control(url: str, mode: str, delay: float = 5.0) -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{url}/control", json={"mode": mode, "delay_seconds": delay})).raise_for_status()


async def credited(url: str, phone: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{url}/v1/accounts/{phone}")).json()["credited_kopecks"]


async def test_top_up_is_applied_once_however_often_it_is_sent(billing_url):
    billing = HttpBilling(billing_url, 2.0)
    topup_id = str(uuid.uuid4())
    assert (await billing.status(topup_id)).state == TopupState.NOT_FOUND
    for _ in range(3):
        assert (await billing.top_up(topup_id, "+79161234567", 1500)).state == TopupState.APPLIED
    assert (await billing.status(topup_id)).state == TopupState.APPLIED
    assert await credited(billing_url, "+79161234567") == 1500
    await billing.close()


async def test_refusal_is_final_for_that_top_up(billing_url):
    billing = HttpBilling(billing_url, 2.0)
    await control(billing_url, "refuse")
    answer = await billing.top_up("t-refused", "+79161234568", 1000)
    assert answer.state == TopupState.REFUSED and answer.reason
    await control(billing_url, "ok")
    assert (await billing.top_up("t-refused", "+79161234568", 1000)).state == TopupState.REFUSED
    assert await credited(billing_url, "+79161234568") == 0
    await billing.close()


async def test_timeout_is_an_unknown_outcome(billing_url):
    billing = HttpBilling(billing_url, 0.2)
    await control(billing_url, "timeout", delay=0.5)
    assert (await billing.top_up("t-slow", "+79161234569", 1000)).state == TopupState.UNKNOWN
    await billing.close()


async def test_failure_after_applying_is_unknown_then_reads_as_applied(billing_url):
    billing = HttpBilling(billing_url, 2.0)
    await control(billing_url, "fail_after_apply")
    assert (await billing.top_up("t-500", "+79161234570", 700)).state == TopupState.UNKNOWN
    assert (await billing.status("t-500")).state == TopupState.APPLIED
    assert await credited(billing_url, "+79161234570") == 700
    await billing.close()


async def test_billing_that_is_down_is_an_unknown_outcome():
    billing = HttpBilling("http://127.0.0.1:9", 0.5)
    assert (await billing.top_up("t-down", "+79161234571", 700)).state == TopupState.UNKNOWN
    assert (await billing.status("t-down")).state == TopupState.UNKNOWN
    await billing.close()
