"""One purchase's money path across all four services, driven only through the gateway's HTTP
API against the stack started as processes: sign-up → click → postbacks → accrual through the
tracking outbox → balance and statement → notification → paying the phone bill, idempotently."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from tests.e2e.conftest import direct_postback, port_in, sign_up
from tests.polling import eventually

pytestmark = pytest.mark.e2e


def random_beeline_number() -> str:
    """A number outside the program's operator (no automatic sweep to the phone bill)."""
    return f"+7903{random.randint(0, 9_999_999):07d}"



async def test_one_purchase_earns_cashback_that_pays_the_phone_bill(http: httpx.AsyncClient, stack):
    phone = random_beeline_number()

    # 1. Sign up with an SMS code read from the dev outbox.
    signed = await sign_up(http, phone)
    user = signed["user"]
    assert len(user["referral_code"]) == 8
    assert user["spending_goal"] == "MOBILE_SERVICES"
    auth = {"Authorization": f"Bearer {signed['access_token']}"}
    me = await http.get("/v1/me", headers=auth)
    assert me.status_code == 200 and me.json()["phone"] == phone

    # 2. The catalogue, and a click that carries our click id to the partner.
    partners = await http.get("/v1/partners", params={"q": "aliexpress"})
    assert partners.status_code == 200
    assert "aliexpress" in [p["partner_id"] for p in partners.json()["partners"]]
    click = await http.post("/v1/partners/aliexpress/clicks", headers=auth)
    assert click.status_code == 201, click.text
    click_id = click.json()["click_id"]
    assert click_id in click.json()["redirect_url"]

    # 3. The partner reports the order: pending, the same again, then approved.
    amount = 1_000_000  # 10,000 roubles
    quote = await http.get("/v1/partners/aliexpress/quote", params={"amount_kopecks": amount, "channel": "WEB"})
    assert quote.status_code == 200, quote.text
    expected_cashback = quote.json()["decision"]["cashback_kopecks"]
    assert expected_cashback > 0
    order = {"order_id": f"AE-{uuid.uuid4().hex[:10]}", "click_id": click_id, "amount_kopecks": amount,
             "currency": "RUB", "channel": "web", "customer_type": "individual",
             "event_time": datetime.now(UTC).isoformat()}
    body, headers = direct_postback(**order, status="pending")
    for _ in range(2):  # the replay changes nothing and is answered as success
        reply = await http.post("/v1/postbacks/direct", content=body, headers=headers)
        assert reply.status_code == 200, reply.text
    purchases = (await http.get("/v1/me/purchases", headers=auth)).json()["purchases"]
    assert [(p["status"], p["cashback_kopecks"]) for p in purchases] == [("PENDING", expected_cashback)]
    balance = (await http.get("/v1/me/balance", headers=auth)).json()
    assert balance == {"balance_kopecks": 0, "available_kopecks": 0, "pending_cashback_kopecks": expected_cashback,
                       "debt_kopecks": 0}

    body, headers = direct_postback(**order, status="approved")
    reply = await http.post("/v1/postbacks/direct", content=body, headers=headers)
    assert reply.status_code == 200, reply.text

    # 4. Accrual delay is 0 here: the tracking outbox credits the ledger exactly once.
    async def credited():
        b = (await http.get("/v1/me/balance", headers=auth)).json()
        return b if b["balance_kopecks"] else None

    balance = await eventually(credited)
    assert balance == {"balance_kopecks": expected_cashback, "available_kopecks": expected_cashback,
                       "pending_cashback_kopecks": 0, "debt_kopecks": 0}
    statement = (await http.get("/v1/me/statement", headers=auth)).json()["entries"]
    assert [(e["kind"], e["direction"], e["amount_kopecks"]) for e in statement] == [
        ("CASHBACK", "CREDIT", expected_cashback)]
    purchases = (await http.get("/v1/me/purchases", headers=auth)).json()["purchases"]
    assert [p["status"] for p in purchases] == ["ACCRUED"]

    async def notified():
        messages = (await http.get("/dev/outbox", params={"to": phone})).json()["messages"]
        return len(messages) >= 2  # the sign-in code, then the cashback
    await eventually(notified)

    # 5. The number moves to the operator (number portability; billing knows, and nothing was swept
    #    before): now its bill can be paid with points. Part of it; the same Idempotency-Key pays once.
    await port_in(stack.billing_url, phone)
    pay = 50_000
    key = {"Idempotency-Key": str(uuid.uuid4()), **auth}
    first = await http.post("/v1/me/mobile-payments", json={"amount_kopecks": pay}, headers=key)
    again = await http.post("/v1/me/mobile-payments", json={"amount_kopecks": pay}, headers=key)
    assert first.status_code in (200, 201), first.text
    assert again.status_code in (200, 201), again.text
    assert first.json()["payment_id"] == again.json()["payment_id"]
    assert first.json()["status"] == "COMPLETED"
    balance = (await http.get("/v1/me/balance", headers=auth)).json()
    assert balance["balance_kopecks"] == expected_cashback - pay
    assert balance["available_kopecks"] == expected_cashback - pay
    async with httpx.AsyncClient(base_url=stack.billing_url) as billing:
        account = (await billing.get(f"/v1/accounts/{phone}")).json()
    assert account["credited_kopecks"] == pay
