"""The billing adapter against the fake operator billing, a real local HTTP server."""

from __future__ import annotations

import asyncio
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


async def held_ids(url: str) -> list[str]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{url}/control")).json()["held"]


async def release(url: str, outcome: str = "apply") -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{url}/control/release", json={"outcome": outcome})).raise_for_status()


async def wait_held(url: str, topup_id: str) -> None:
    for _ in range(200):
        if topup_id in await held_ids(url):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"billing never held {topup_id}")


@pytest.mark.parametrize(("outcome", "state", "credit"), [
    ("apply", TopupState.APPLIED, 900), ("refuse", TopupState.REFUSED, 0), ("drop", TopupState.UNKNOWN, 0)])
async def test_hang_holds_the_top_up_unapplied_until_released(billing_url, outcome, state, credit):
    billing = HttpBilling(billing_url, 10.0)
    phone = f"+7916{uuid.uuid4().int % 10**7:07d}"
    await control(billing_url, "hang")
    call = asyncio.ensure_future(billing.top_up(f"t-hang-{outcome}", phone, 900))
    await wait_held(billing_url, f"t-hang-{outcome}")
    assert (await billing.status(f"t-hang-{outcome}")).state == TopupState.NOT_FOUND
    assert await credited(billing_url, phone) == 0
    await release(billing_url, outcome)
    assert (await call).state == state
    assert await credited(billing_url, phone) == credit
    assert await held_ids(billing_url) == []
    await billing.close()


async def test_apply_then_hang_applies_before_holding_the_answer(billing_url):
    billing = HttpBilling(billing_url, 10.0)
    await control(billing_url, "apply_then_hang")
    call = asyncio.ensure_future(billing.top_up("t-ath", "+79161234572", 800))
    await wait_held(billing_url, "t-ath")
    assert (await billing.status("t-ath")).state == TopupState.APPLIED
    assert await credited(billing_url, "+79161234572") == 800
    await release(billing_url)
    assert (await call).state == TopupState.APPLIED
    await billing.close()


async def test_a_held_request_is_decided_even_when_its_client_went_away(billing_url):
    await control(billing_url, "hang")
    client = httpx.AsyncClient(base_url=billing_url, timeout=10)
    call = asyncio.ensure_future(client.post("/v1/topups", json={"topup_id": "t-gone", "phone": "+79161234573",
                                                                 "amount_kopecks": 600}))
    await wait_held(billing_url, "t-gone")
    call.cancel()
    await client.aclose()
    await release(billing_url)
    billing = HttpBilling(billing_url, 2.0)
    for _ in range(200):
        if (await billing.status("t-gone")).state == TopupState.APPLIED:
            break
        await asyncio.sleep(0.02)
    assert await credited(billing_url, "+79161234573") == 600
    await billing.close()
