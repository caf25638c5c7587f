"""The gateway in front of the whole system (all four services, real): readiness, the catalogue,
clicks and the browser redirect, a signed postback becoming a purchase and pending cashback,
claims and support."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest

from fakes.billing import running_billing
from tests.service.gateway_harness import gateway_settings, running_gateway
from tests.service.gateway_users import bearer, random_host, sign_in
from tests.service.test_gateway import assert_problem

SUPPORT = {"X-Api-Key": "dev-support-key"}


@pytest.fixture
async def client(start_service):
    ledger = await start_service("ledger")
    identity = await start_service("identity", address_codes_per_hour=0)
    tracking = await start_service("tracking", identity_address=identity.address, ledger_address=ledger.address)
    async with running_billing() as billing_url:
        redemption = await start_service("redemption", identity_address=identity.address,
                                         ledger_address=ledger.address, billing_url=billing_url)
        settings = gateway_settings(identity_address=identity.address, ledger_address=ledger.address,
                                    tracking_address=tracking.address, redemption_address=redemption.address)
        async with running_gateway(settings, client_host=random_host()) as client:
            yield client
        await redemption.stop()


def signed(body: dict, secret: str = "dev-direct-secret") -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Cashback-Signature": f"t={t},v1={mac}"}


async def test_ready_when_every_upstream_serves(client):
    response = await client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "not_serving": []}


async def test_catalogue_partner_terms_and_quote(client):
    categories = (await client.get("/v1/categories")).json()["categories"]
    assert categories and all(c["partner_count"] >= 0 for c in categories)
    found = (await client.get("/v1/partners", params={"q": "aliexpress", "page_size": 5})).json()
    assert any(p["partner_id"] == "aliexpress" for p in found["partners"])
    partner = (await client.get("/v1/partners/aliexpress")).json()
    assert partner["rules"]["tiers"] and isinstance(partner["rules"]["cap_kopecks"], int)
    quote = await client.get("/v1/partners/aliexpress/quote", params={"amount_kopecks": 100_000})
    assert quote.status_code == 200, quote.text
    decision = quote.json()["decision"]
    assert decision["amount_kopecks"] == 100_000 and decision["reason"] and decision["explanation"]
    assert_problem(await client.get("/v1/partners/no-such-shop"), 404, "PARTNER_NOT_FOUND")
    assert_problem(await client.get("/v1/partners/aliexpress/quote", params={"amount_kopecks": -1}),
                   400, "VALIDATION_FAILED")


async def test_click_then_browser_redirect_carries_the_click_id(client):
    anna = await sign_in(client)
    clicked = await client.post("/v1/partners/aliexpress/clicks", headers=bearer(anna))
    assert clicked.status_code == 201, clicked.text
    assert clicked.json()["click_id"] in clicked.json()["redirect_url"]
    went = await client.get("/go/aliexpress", headers=bearer(anna))
    assert went.status_code == 302 and went.headers["location"].startswith("http")
    assert_problem(await client.get("/go/aliexpress"), 401, "TOKEN_MISSING")


async def test_a_plain_link_to_go_works_with_the_website_cookie_but_not_from_another_site(client):
    anna = await sign_in(client)
    cookie = {"Cookie": f"cashback_access={anna['access_token']}"}
    for site in ("same-site", "same-origin", "none"):
        went = await client.get("/go/ozon", headers={**cookie, "Sec-Fetch-Site": site})
        assert went.status_code == 302, (site, went.text)
        assert "ozon" in went.headers["location"]
    assert_problem(await client.get("/go/ozon", headers={**cookie, "Sec-Fetch-Site": "cross-site"}),
                   403, "CROSS_SITE_REQUEST")
    assert_problem(await client.get("/go/ozon", headers={"Cookie": "cashback_access=forged"}), 401, "TOKEN_INVALID")
    # The cookie is for plain links only: the API's other routes still want the bearer token.
    assert_problem(await client.get("/v1/me", headers=cookie), 401, "TOKEN_MISSING")


async def test_a_signed_postback_becomes_my_pending_purchase_and_pending_cashback(client):
    anna = await sign_in(client)
    click_id = (await client.post("/v1/partners/aliexpress/clicks", headers=bearer(anna))).json()["click_id"]
    order = f"A-{uuid.uuid4().hex[:10]}"
    raw, headers = signed({"order_id": order, "click_id": click_id, "status": "pending", "amount_kopecks": 200_000,
                           "currency": "RUB", "channel": "web", "customer_type": "individual"})
    first = await client.post("/v1/postbacks/direct", content=raw, headers=headers)
    replay = await client.post("/v1/postbacks/direct", content=raw, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "ok" and first.json()["outcome"] == "ACCEPTED"
    assert replay.status_code == 200 and replay.json()["outcome"] == "DUPLICATE"
    purchases = (await client.get("/v1/me/purchases", headers=bearer(anna))).json()["purchases"]
    assert [p["order_id"] for p in purchases] == [order]
    assert purchases[0]["status"] == "PENDING" and purchases[0]["decision"]["explanation"]
    pending_only = (await client.get("/v1/me/purchases", params={"status": "ACCRUED"}, headers=bearer(anna))).json()
    assert pending_only["purchases"] == []
    balance = (await client.get("/v1/me/balance", headers=bearer(anna))).json()
    assert balance == {"balance_kopecks": 0, "available_kopecks": 0,
                       "pending_cashback_kopecks": purchases[0]["cashback_kopecks"], "debt_kopecks": 0}
    assert balance["pending_cashback_kopecks"] > 0


async def test_a_postback_with_a_bad_signature_is_refused_by_tracking(client):
    raw, headers = signed({"order_id": "X-1", "status": "pending", "amount_kopecks": 100, "currency": "RUB"},
                          secret="not-the-secret")
    response = await client.post("/v1/postbacks/direct", content=raw, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "SIGNATURE_INVALID"


async def test_claim_filed_by_a_user_and_approved_by_support(client):
    anna = await sign_in(client)
    filed = await client.post("/v1/me/claims", headers=bearer(anna), json={
        "partner_id": "ozon", "order_id": f"OZ-{uuid.uuid4().hex[:8]}", "order_date": "2026-01-15",
        "amount_kopecks": 459_900, "comment": "no cashback"})
    assert filed.status_code == 201, filed.text
    claim = filed.json()
    assert claim["status"] == "OPEN" and claim["user_id"] == anna["user"]["user_id"]
    queue = (await client.get("/v1/support/claims", params={"status": "OPEN"}, headers=SUPPORT)).json()
    assert claim["claim_id"] in [c["claim_id"] for c in queue["claims"]]
    approved = await client.post(f"/v1/support/claims/{claim['claim_id']}/approve", headers=SUPPORT)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "APPROVED"
    again = await client.post(f"/v1/support/claims/{claim['claim_id']}/reject", json={"reason": "late"},
                              headers=SUPPORT)
    assert_problem(again, 422, "CLAIM_ALREADY_DECIDED")
    mine = (await client.get("/v1/me/claims", headers=bearer(anna))).json()["claims"]
    assert [c["status"] for c in mine] == ["APPROVED"]


async def test_one_user_never_sees_anothers_purchases_or_claims(client):
    anna, boris = await sign_in(client), await sign_in(client)
    await client.post("/v1/me/claims", headers=bearer(anna), json={
        "partner_id": "ozon", "order_id": "OZ-1", "order_date": "2026-01-15", "amount_kopecks": 1000})
    assert (await client.get("/v1/me/claims", headers=bearer(boris))).json()["claims"] == []
    assert (await client.get("/v1/me/purchases", headers=bearer(boris))).json()["purchases"] == []
