"""2. Points pay only the operator's own bill: a mobile payment, and the automatic sweep, go only to
numbers that the operator's billing says are its subscribers now (number portability), whatever
their range said at sign-up. Others get a clear refusal and keep their points for certificates."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import port_in, sign_up
from tests.polling import eventually
from tests.security.conftest import bearer, beeline_number, earn, mts_number

pytestmark = pytest.mark.e2e


async def pay(http, signed: dict, amount: int):
    return await http.post("/v1/me/mobile-payments", json={"amount_kopecks": amount},
                           headers={**bearer(signed), "Idempotency-Key": str(uuid.uuid4())})


async def test_points_pay_only_numbers_that_billing_says_are_the_operators(http, stack):
    outsider = await sign_up(http, beeline_number())
    cashback = await earn(http, outsider)
    refused = await pay(http, outsider, 5_000)
    assert refused.status_code == 422 and refused.json()["code"] == "PHONE_NOT_OPERATOR", refused.text
    balance = (await http.get("/v1/me/balance", headers=bearer(outsider))).json()
    assert balance["balance_kopecks"] == balance["available_kopecks"] == cashback  # nothing held, nothing lost
    assert (await http.get("/v1/me/mobile-payments", headers=bearer(outsider))).json()["payments"] == []
    # Ported in to the operator: billing says so, and now its bill can be paid.
    await port_in(stack.billing_url, outsider["user"]["phone"])
    paid = await pay(http, outsider, 5_000)
    assert paid.status_code == 201 and paid.json()["status"] == "COMPLETED", paid.text


async def test_the_sweep_skips_a_number_that_left_the_operator(http, stack):
    leaver, stayer = await sign_up(http, mts_number()), await sign_up(http, mts_number())
    assert leaver["user"]["spending_goal"] == stayer["user"]["spending_goal"] == "MOBILE_SERVICES"
    await port_in(stack.billing_url, leaver["user"]["phone"], subscriber=False)
    cashback = await earn(http, leaver)
    await earn(http, stayer)

    async def stayer_swept():  # one outbox, oldest first: by then the leaver's earlier credit was offered too
        return (await http.get("/v1/me/mobile-payments", headers=bearer(stayer))).json()["payments"]

    await eventually(stayer_swept)
    assert (await http.get("/v1/me/mobile-payments", headers=bearer(leaver))).json()["payments"] == []
    assert (await http.get("/v1/me/balance", headers=bearer(leaver))).json()["balance_kopecks"] == cashback
    refused = await pay(http, leaver, 1_000)
    assert refused.status_code == 422 and refused.json()["code"] == "PHONE_NOT_OPERATOR"
