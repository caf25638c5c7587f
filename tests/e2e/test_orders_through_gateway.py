"""Money reaches the right person, through the gateway against the stack as processes: the same
order id at two shops, a report naming another shop, a late and an older report, a decline after
crediting answered 200 and reversed, and claims that pay once (with the purchase's id in the
problem when the order is the user's already)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import direct_postback, sign_up
from tests.polling import eventually

pytestmark = pytest.mark.e2e
SUPPORT = {"X-Api-Key": "dev-support-key"}


async def shopper(http: httpx.AsyncClient, *partners: str) -> tuple[dict[str, str], dict[str, str]]:
    signed = await sign_up(http, f"+7903{random.randint(0, 9_999_999):07d}")  # not the operator's: no sweep
    auth = {"Authorization": f"Bearer {signed['access_token']}"}
    clicks = {}
    for partner in partners:
        reply = await http.post(f"/v1/partners/{partner}/clicks", headers=auth)
        assert reply.status_code == 201, reply.text
        clicks[partner] = reply.json()["click_id"]
    return auth, clicks


async def post(http: httpx.AsyncClient, **fields: object) -> httpx.Response:
    body, headers = direct_postback(currency="RUB", **fields)
    return await http.post("/v1/postbacks/direct", content=body, headers=headers)



async def balance_is(http: httpx.AsyncClient, auth: dict[str, str], kopecks: int, debt: int = 0) -> dict:
    async def probe():
        found = (await http.get("/v1/me/balance", headers=auth)).json()
        return found if (found["balance_kopecks"], found.get("debt_kopecks", 0)) == (kopecks, debt) else None
    return await eventually(probe, seconds=60)


async def test_two_shops_one_order_id_and_a_decline_after_crediting(http):
    ali_auth, ali = await shopper(http, "aliexpress")
    ozon_auth, ozon = await shopper(http, "ozon")
    oid, t = f"1001-{uuid.uuid4().hex[:6]}", int(time.time()) - 600
    for auth_clicks, partner, amount in ((ali, "aliexpress", 100_000), (ozon, "ozon", 50_000)):
        reply = await post(http, order_id=oid, click_id=auth_clicks[partner], status="approved",
                           amount_kopecks=amount, event_time=t)
        assert (reply.status_code, reply.json()["outcome"]) == (200, "ACCEPTED"), reply.text
    await balance_is(http, ali_auth, 7_000)  # accrual delay 0 in this stack
    await balance_is(http, ozon_auth, 2_000)
    # An older report of Ozon's order: stored, answered SUPERSEDED, changes nothing.
    older = await post(http, order_id=oid, click_id=ozon["ozon"], status="pending", amount_kopecks=10_000,
                       event_time=t - 60)
    assert (older.status_code, older.json()["outcome"]) == (200, "SUPERSEDED")
    # A report naming another shop than its click's: refused, do not retry.
    mismatch = await post(http, order_id=oid, click_id=ozon["ozon"], partner_id="aliexpress", status="declined",
                          amount_kopecks=50_000, event_time=t + 60)
    assert (mismatch.status_code, mismatch.json()["code"]) == (422, "PARTNER_MISMATCH")
    # Ozon's buyer returns the goods: the decline is a 200, the cashback goes back, once.
    answers = [await post(http, order_id=oid, click_id=ozon["ozon"], status="declined", amount_kopecks=50_000,
                          event_time=t + 60) for _ in range(2)]
    assert [(a.status_code, a.json()["outcome"]) for a in answers] == [(200, "REJECTED"), (200, "DUPLICATE")]
    await balance_is(http, ozon_auth, 0)
    await balance_is(http, ali_auth, 7_000)
    kinds = [e["kind"] for e in (await http.get("/v1/me/statement", headers=ozon_auth)).json()["entries"]]
    assert kinds.count("CASHBACK_REVERSAL") == 1 and kinds.count("CASHBACK") == 1, kinds
    # The purchase's history, as its shop told it; nobody else sees it.
    purchase_id = answers[0].json()["purchase_id"]
    seen = (await http.get(f"/v1/me/purchases/{purchase_id}", headers=ozon_auth)).json()
    assert (seen["purchase"]["status"], seen["purchase"]["credited_kopecks"]) == ("REJECTED", 0)
    assert [(h["status"], h["superseded"]) for h in seen["history"]] == [
        ("PENDING", True), ("CONFIRMED", False), ("REJECTED", False)]
    hidden = await http.get(f"/v1/me/purchases/{purchase_id}", headers=ali_auth)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "PURCHASE_NOT_FOUND")


async def test_claims_pay_once_through_the_gateway(http):
    auth, clicks = await shopper(http, "aliexpress")
    other_auth, _ = await shopper(http)
    oid = f"CLAIM-{uuid.uuid4().hex[:8]}"
    tracked = await post(http, order_id=oid, click_id=clicks["aliexpress"], status="pending", amount_kopecks=100_000)
    claim = {"partner_id": "aliexpress", "order_id": oid, "order_date": time.strftime("%Y-%m-%d"),
             "amount_kopecks": 100_000, "comment": "кэшбэк не пришёл"}
    mine = await http.post("/v1/me/claims", headers=auth, json=claim)
    assert (mine.status_code, mine.json()["code"], mine.json()["purchase_id"]) == (
        409, "ORDER_ALREADY_TRACKED", tracked.json()["purchase_id"])
    theirs = await http.post("/v1/me/claims", headers=other_auth, json=claim)
    assert (theirs.status_code, theirs.json()["code"]) == (422, "ORDER_NOT_CLAIMABLE")
    assert "user" not in json.dumps(theirs.json()).lower()  # never says whose
    # An order the shop never reported: claimed, approved by support, credited once; the shop's
    # report arriving afterwards joins the claim's purchase.
    lost = f"LOST-{uuid.uuid4().hex[:8]}"
    filed = await http.post("/v1/me/claims", headers=auth, json={**claim, "order_id": lost})
    assert filed.status_code in (200, 201), filed.text
    approved = await http.post(f"/v1/support/claims/{filed.json()['claim_id']}/approve", headers=SUPPORT)
    assert approved.status_code == 200, approved.text
    await balance_is(http, auth, 7_000)
    late = await post(http, order_id=lost, click_id=clicks["aliexpress"], status="approved", amount_kopecks=100_000)
    assert late.status_code == 200 and late.json()["purchase_id"] == approved.json()["purchase_id"]
    await asyncio.sleep(1)
    await balance_is(http, auth, 7_000)
