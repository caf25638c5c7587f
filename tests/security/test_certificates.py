"""1. A certificate is a bearer instrument: handing it over issues the recipient a new code, the old
one stops at once, and nobody but the current holder is ever shown the current code (not the
transfer's answer, not a replay of the order, not the gateway's replay cache)."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from tests.e2e.conftest import sign_up
from tests.security.conftest import STORE_KEY, bearer, beeline_number, earn

pytestmark = pytest.mark.e2e


async def test_a_handed_over_certificate_is_dead_for_the_giver_and_its_new_code_is_the_holders_alone(
        http, stack, backend, real_redis_url):
    giver, taker = await sign_up(http, beeline_number()), await sign_up(http, beeline_number())
    assert await earn(http, giver) >= 10_000
    key = {"Idempotency-Key": str(uuid.uuid4()), **bearer(giver)}
    ordered = await http.post("/v1/me/certificates", json={"nominal_kopecks": 10_000}, headers=key)
    assert ordered.status_code == 201, ordered.text
    certificate_id, old_code = ordered.json()["certificate_id"], ordered.json()["code"]
    assert old_code

    handed = await http.post(f"/v1/me/certificates/{certificate_id}/transfer",
                             json={"to_phone": taker["user"]["phone"]}, headers=bearer(giver))
    assert handed.status_code == 200, handed.text
    assert handed.json()["code"] is None

    # The old code stops at once: the giver cannot spend what they gave away.
    sale = {"certificate_code": old_code, "sale_id": f"S-{uuid.uuid4().hex[:8]}", "device_price_kopecks": 5_000_000}
    spent_by_giver = await http.post("/v1/stores/certificate-redemptions", json=sale, headers=STORE_KEY)
    assert spent_by_giver.status_code == 404 and spent_by_giver.json()["code"] == "CERTIFICATE_NOT_FOUND"
    # The giver's replay of the order: the same certificate, no code (answered as the first, 201, by the
    # gateway's store; without Redis, by the service's own replay, 200).
    replay = await http.post("/v1/me/certificates", json={"nominal_kopecks": 10_000}, headers=key)
    assert replay.status_code in (200, 201), replay.text
    assert replay.json()["certificate_id"] == certificate_id and replay.json()["code"] is None
    assert (await http.get("/v1/me/certificates", headers=bearer(giver))).json()["certificates"] == []
    history_for_giver = await http.get(f"/v1/me/certificates/{certificate_id}/history", headers=bearer(giver))
    assert history_for_giver.status_code == 404

    [held] = (await http.get("/v1/me/certificates", headers=bearer(taker))).json()["certificates"]
    new_code = held["code"]
    assert held["certificate_id"] == certificate_id and new_code not in (None, old_code)
    if backend == "postgres":  # the gateway's replay cache (Redis) holds no code, old or new
        redis = Redis.from_url(real_redis_url)
        try:
            cached = [await redis.get(k) async for k in redis.scan_iter("gw:idem:*")]
        finally:
            await redis.aclose()
        assert cached, "the order's Idempotency-Key is recorded"
        for code in (old_code, new_code):
            assert not any(code.encode() in v or code.replace("-", "").encode() in v for v in cached if v)

    redeemed = await http.post("/v1/stores/certificate-redemptions", json={**sale, "certificate_code": new_code},
                               headers=STORE_KEY)
    assert redeemed.status_code == 200, redeemed.text
    history = await http.get(f"/v1/me/certificates/{certificate_id}/history", headers=bearer(taker))
    assert history.status_code == 200, history.text
    events = history.json()["events"]
    assert [e["kind"] for e in events] == ["ISSUED", "HANDED_OVER", "REDEEMED"]
    assert events[2]["store_id"] == "store-1"
    assert old_code not in history.text and new_code not in history.text
