"""The gateway in front of real identity, ledger and redemption (and the fake operator billing):
money routes with Idempotency-Key, store and USSD credentials, one user never reaching another's
certificate."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from fakes.billing import running_billing
from services.common.grpc_client import open_channel
from tests.service.gateway_harness import gateway_settings, running_gateway
from tests.service.gateway_users import bearer, random_host, sign_in
from tests.service.test_gateway import assert_problem


@pytest.fixture
async def stack(start_service):
    ledger = await start_service("ledger")
    identity = await start_service("identity", address_codes_per_hour=0)
    async with running_billing() as billing_url:
        redemption = await start_service("redemption", identity_address=identity.address,
                                         ledger_address=ledger.address, billing_url=billing_url,
                                         billing_timeout_seconds=0.3, reconcile_interval_seconds=0.05)
        yield {"ledger": ledger.address, "identity": identity.address, "redemption": redemption.address,
               "billing": billing_url}
        await redemption.stop()


def settings_for(stack, **overrides):
    return gateway_settings(identity_address=stack["identity"], ledger_address=stack["ledger"],
                            redemption_address=stack["redemption"], **overrides)


async def credit(stack, user_id: str, kopecks: int) -> None:
    channel = open_channel(stack["ledger"])
    try:
        await ledger_pb2_grpc.LedgerServiceStub(channel).CreateTransfer(ledger_pb2.CreateTransferRequest(
            transfer=ledger_pb2.Transfer(
                transfer_id=f"cashback:{uuid.uuid4()}", kind=ledger_pb2.TRANSFER_KIND_CASHBACK, amount_kopecks=kopecks,
                debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
                credit_account=ledger_pb2.AccountRef(user_id=user_id))))
    finally:
        await channel.close()


def keyed(session: dict, key: str) -> dict[str, str]:
    return {**bearer(session), "Idempotency-Key": key}


async def test_ordering_a_certificate_and_replaying_the_same_key(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 1_000_000)
        key = str(uuid.uuid4())
        first = await client.post("/v1/me/certificates", json={"nominal_kopecks": 500_000}, headers=keyed(anna, key))
        again = await client.post("/v1/me/certificates", json={"nominal_kopecks": 500_000}, headers=keyed(anna, key))
        other_body = await client.post("/v1/me/certificates", json={"nominal_kopecks": 300_000},
                                       headers=keyed(anna, key))
        listed = await client.get("/v1/me/certificates", headers=bearer(anna))
    assert first.status_code == 201, first.text
    cert = first.json()
    assert cert["nominal_kopecks"] == 500_000 and isinstance(cert["nominal_kopecks"], int)
    assert cert["status"] == "ACTIVE" and cert["code"]
    assert again.status_code in (200, 201) and again.json()["certificate_id"] == cert["certificate_id"]
    assert_problem(other_body, 422, "IDEMPOTENCY_KEY_REUSED")
    assert [c["certificate_id"] for c in listed.json()["certificates"]] == [cert["certificate_id"]]


async def test_not_enough_points_is_422_insufficient_funds(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        response = await client.post("/v1/me/certificates", json={"nominal_kopecks": 10_000},
                                     headers=keyed(anna, str(uuid.uuid4())))
    assert_problem(response, 422, "INSUFFICIENT_FUNDS")


async def test_a_user_cannot_hand_over_another_users_certificate(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna, boris = await sign_in(client), await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 100_000)
        cert = (await client.post("/v1/me/certificates", json={"nominal_kopecks": 100_000},
                                  headers=keyed(anna, str(uuid.uuid4())))).json()
        stolen = await client.post(f"/v1/me/certificates/{cert['certificate_id']}/transfer",
                                   json={"to_phone": boris["user"]["phone"]}, headers=bearer(boris))
        borises = await client.get("/v1/me/certificates", headers=bearer(boris))
    assert_problem(stolen, 404, "CERTIFICATE_NOT_FOUND")
    assert borises.json()["certificates"] == []


async def test_a_store_applies_a_certificate_once(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 100_000)
        cert = (await client.post("/v1/me/certificates", json={"nominal_kopecks": 100_000},
                                  headers=keyed(anna, str(uuid.uuid4())))).json()
        store = {"X-Api-Key": "dev-store-key"}
        sale = {"certificate_code": cert["code"], "sale_id": f"S-{uuid.uuid4()}", "device_price_kopecks": 60_000}
        applied = await client.post("/v1/stores/certificate-redemptions", json=sale, headers=store)
        twice = await client.post("/v1/stores/certificate-redemptions",
                                  json={**sale, "sale_id": f"S-{uuid.uuid4()}"}, headers=store)
        as_user = await client.post("/v1/stores/certificate-redemptions", json=sale, headers=bearer(anna))
    assert applied.status_code == 200, applied.text
    assert applied.json() == {"covered_kopecks": 59_900, "to_pay_kopecks": 100, "forfeited_kopecks": 40_100}
    assert_problem(twice, 422, "CERTIFICATE_REDEEMED")
    assert_problem(as_user, 401, "API_KEY_MISSING")


async def test_paying_the_phone_bill_with_points(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 50_000)
        paid = await client.post("/v1/me/mobile-payments", json={"amount_kopecks": 30_000},
                                 headers=keyed(anna, str(uuid.uuid4())))
        listed = await client.get("/v1/me/mobile-payments", headers=bearer(anna))
    assert paid.status_code == 201, paid.text
    payment = paid.json()
    assert payment["amount_kopecks"] == 30_000 and payment["status"] in ("COMPLETED", "PROCESSING")
    assert payment["phone"] == anna["user"]["phone"]
    assert [p["payment_id"] for p in listed.json()["payments"]] == [payment["payment_id"]]


async def test_ussd_gateway_gets_one_screen_of_text(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 12_300)
        response = await client.post("/v1/ussd", json={"msisdn": anna["user"]["phone"], "request": "*100*1#"},
                                     headers={"X-Api-Key": "dev-ussd-key"})
    assert response.status_code == 200, response.text
    assert "123" in response.json()["text"]


async def test_with_redis_a_replay_is_served_by_the_gateway_and_concurrent_duplicates_make_one_certificate(
        stack, real_redis_url):
    async with running_gateway(settings_for(stack, redis_url=real_redis_url), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 1_000_000)
        key = str(uuid.uuid4())
        burst = await asyncio.gather(*(
            client.post("/v1/me/certificates", json={"nominal_kopecks": 100_000}, headers=keyed(anna, key))
            for _ in range(5)))
        replay = await client.post("/v1/me/certificates", json={"nominal_kopecks": 100_000},
                                   headers=keyed(anna, key))
        listed = await client.get("/v1/me/certificates", headers=bearer(anna))
    assert {r.status_code for r in burst} <= {200, 201, 409}, [r.text for r in burst]
    for refused in (r for r in burst if r.status_code == 409):
        assert_problem(refused, 409, "IDEMPOTENCY_REQUEST_IN_FLIGHT")
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert len(listed.json()["certificates"]) == 1


# --- certificates: nominal edges, balance, another user's certificate, the store counter -------

def assert_invalid(response, service_code: str) -> None:
    """A 400 problem, from the gateway's own validation or from the service's rule."""
    body = assert_problem(response, 400, response.json().get("code", ""))
    assert body["code"] in ("VALIDATION_FAILED", service_code), body


async def balance_of(stack, session: dict) -> tuple[int, int]:
    """(posted, available) from the ledger (GET /v1/me/balance also needs tracking, not started here)."""
    channel = open_channel(stack["ledger"])
    try:
        reply = await ledger_pb2_grpc.LedgerServiceStub(channel).GetBalance(
            ledger_pb2.GetBalanceRequest(user_id=session["user"]["user_id"]))
    finally:
        await channel.close()
    return reply.balance.posted_kopecks, reply.balance.available_kopecks


async def test_certificate_nominal_edges_through_the_gateway(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 8_010_000)

        async def order(nominal: object):
            return await client.post("/v1/me/certificates", json={"nominal_kopecks": nominal},
                                     headers=keyed(anna, str(uuid.uuid4())))

        for refused in (9_900, 8_000_100, 15_050, 0, -10_000):  # 99 and 80,001 roubles, kopecks, nothing
            assert_invalid(await order(refused), "NOMINAL_INVALID")
        assert_problem(await order(10_000.5), 400, "VALIDATION_FAILED")  # a fraction of a kopeck
        assert_problem(await order("10000 roubles"), 400, "VALIDATION_FAILED")
        assert await balance_of(stack, anna) == (8_010_000, 8_010_000)  # nothing taken so far
        smallest, largest = await order(10_000), await order(8_000_000)  # 100 and 80,000 roubles
        assert smallest.status_code == 201 and largest.status_code == 201, (smallest.text, largest.text)
        assert (smallest.json()["nominal_kopecks"], largest.json()["nominal_kopecks"]) == (10_000, 8_000_000)
        assert {smallest.json()["status"], largest.json()["status"]} == {"ACTIVE"}
        assert await balance_of(stack, anna) == (0, 0)
        listed = (await client.get("/v1/me/certificates", headers=bearer(anna))).json()["certificates"]
    assert [c["nominal_kopecks"] for c in listed] == [8_000_000, 10_000]


async def test_orders_as_many_as_the_balance_allows_and_not_one_more(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 25_000)
        first = await client.post("/v1/me/certificates", json={"nominal_kopecks": 10_000},
                                  headers=keyed(anna, str(uuid.uuid4())))
        second = await client.post("/v1/me/certificates", json={"nominal_kopecks": 10_000},
                                   headers=keyed(anna, str(uuid.uuid4())))
        beyond = await client.post("/v1/me/certificates", json={"nominal_kopecks": 10_000},
                                   headers=keyed(anna, str(uuid.uuid4())))
        left = await balance_of(stack, anna)
        listed = (await client.get("/v1/me/certificates", headers=bearer(anna))).json()["certificates"]
    assert first.status_code == second.status_code == 201
    assert first.json()["code"] != second.json()["code"]
    assert_problem(beyond, 422, "INSUFFICIENT_FUNDS")
    assert left == (5_000, 5_000)
    assert len(listed) == 2


async def test_another_users_certificate_cannot_be_seen_handed_over_or_redeemed_by_them(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna, boris, vera = await sign_in(client), await sign_in(client), await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 20_000)
        cert = (await client.post("/v1/me/certificates", json={"nominal_kopecks": 20_000},
                                  headers=keyed(anna, str(uuid.uuid4())))).json()
        path = f"/v1/me/certificates/{cert['certificate_id']}/transfer"
        to_boris = {"to_phone": boris["user"]["phone"]}
        refusals = [
            await client.post(path, json={"to_phone": vera["user"]["phone"]}, headers=bearer(boris)),
            await client.post(path, json=to_boris, headers=bearer(boris)),
            await client.post(f"/v1/me/certificates/{uuid.uuid4()}/transfer", json=to_boris, headers=bearer(anna)),
            await client.post("/v1/me/certificates/not-a-uuid/transfer", json=to_boris, headers=bearer(anna)),
        ]
        borises = (await client.get("/v1/me/certificates", headers=bearer(boris))).json()["certificates"]
        as_user = await client.post("/v1/stores/certificate-redemptions", headers=bearer(boris), json={
            "certificate_code": cert["code"], "sale_id": "S-1", "device_price_kopecks": 100_000})
        as_ussd = await client.post("/v1/stores/certificate-redemptions", headers={"X-Api-Key": "dev-ussd-key"},
                                    json={"certificate_code": cert["code"], "sale_id": "S-1",
                                          "device_price_kopecks": 100_000})
        unsigned = await client.post(path, json=to_boris)

        # Handed over: now Boris holds it and Anna no longer sees or controls it.
        handed = await client.post(path, json=to_boris, headers=bearer(anna))
        annas = (await client.get("/v1/me/certificates", headers=bearer(anna))).json()["certificates"]
        borises_after = (await client.get("/v1/me/certificates", headers=bearer(boris))).json()["certificates"]
        taken_back = await client.post(path, json={"to_phone": anna["user"]["phone"]}, headers=bearer(anna))
        to_self = await client.post(path, json=to_boris, headers=bearer(boris))
    for refused in refusals:
        assert_problem(refused, 404, "CERTIFICATE_NOT_FOUND")
    assert borises == []
    assert as_user.status_code == 401 and as_ussd.status_code in (401, 403), (as_user.text, as_ussd.text)
    assert unsigned.status_code == 401
    assert handed.status_code == 200, handed.text
    assert handed.json()["code"] is None  # a bearer instrument: the giver never sees the new code
    assert annas == []
    [held] = borises_after
    assert held["certificate_id"] == cert["certificate_id"] and held["code"] not in (None, cert["code"])
    assert_problem(taken_back, 404, "CERTIFICATE_NOT_FOUND")
    assert_problem(to_self, 400, "RECIPIENT_IS_HOLDER")


async def test_fifty_stores_at_once_with_one_certificate_one_wins(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 50_000)
        cert = (await client.post("/v1/me/certificates", json={"nominal_kopecks": 50_000},
                                  headers=keyed(anna, str(uuid.uuid4())))).json()
        store = {"X-Api-Key": "dev-store-key"}
        answers = await asyncio.gather(*(
            client.post("/v1/stores/certificate-redemptions", headers=store, json={
                "certificate_code": cert["code"], "sale_id": f"S-{i}", "device_price_kopecks": 3_000_000})
            for i in range(50)))
        listed = (await client.get("/v1/me/certificates", headers=bearer(anna))).json()["certificates"]
    wins = [a for a in answers if a.status_code == 200]
    assert len(wins) == 1, [a.text for a in answers if a.status_code != 422]
    assert wins[0].json() == {"covered_kopecks": 50_000, "to_pay_kopecks": 2_950_000, "forfeited_kopecks": 0}
    for lost in (a for a in answers if a.status_code != 200):
        assert_problem(lost, 422, "CERTIFICATE_REDEEMED")
    assert [c["status"] for c in listed] == ["REDEEMED"]


async def test_a_store_repeating_a_sale_gets_the_same_answer_and_another_sale_is_refused(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 40_000)
        first, second = [(await client.post("/v1/me/certificates", json={"nominal_kopecks": 20_000},
                                            headers=keyed(anna, str(uuid.uuid4())))).json() for _ in range(2)]
        store = {"X-Api-Key": "dev-store-key"}
        sale = {"certificate_code": first["code"].lower().replace("-", " "), "sale_id": f"S-{uuid.uuid4()}",
                "device_price_kopecks": 1_500_000}
        retries = await asyncio.gather(*(client.post("/v1/stores/certificate-redemptions", json=sale, headers=store)
                                         for _ in range(5)))
        second_on_same_sale = await client.post("/v1/stores/certificate-redemptions", headers=store,
                                                json={**sale, "certificate_code": second["code"]})
        typo = second["code"][:-1] + ("2" if second["code"][-1] != "2" else "3")
        mistyped = await client.post("/v1/stores/certificate-redemptions", headers=store,
                                     json={**sale, "certificate_code": typo, "sale_id": "S-other"})
        price_of_one_rouble = await client.post("/v1/stores/certificate-redemptions", headers=store,
                                                json={**sale, "certificate_code": second["code"], "sale_id": "S-x",
                                                      "device_price_kopecks": 100})
    assert [r.status_code for r in retries] == [200] * 5, [r.text for r in retries]
    assert {tuple(r.json().items()) for r in retries} == {
        (("covered_kopecks", 20_000), ("to_pay_kopecks", 1_480_000), ("forfeited_kopecks", 0))}
    assert_problem(second_on_same_sale, 422, "SALE_ALREADY_HAS_CERTIFICATE")
    assert_invalid(mistyped, "CERTIFICATE_CODE_MALFORMED")
    assert_invalid(price_of_one_rouble, "DEVICE_PRICE_INVALID")


# --- mobile payments with billing refusing, timing out, failing after applying ----------------

async def billing_mode(stack, mode: str, delay: float = 5.0) -> None:
    async with httpx.AsyncClient(base_url=stack["billing"]) as billing:
        (await billing.post("/control", json={"mode": mode, "delay_seconds": delay})).raise_for_status()


async def topped_up(stack, phone: str) -> int:
    async with httpx.AsyncClient(base_url=stack["billing"]) as billing:
        return (await billing.get(f"/v1/accounts/{phone}")).json()["credited_kopecks"]


async def settled_payments(client, session: dict, count: int) -> list[dict]:
    """The user's payments once none is PROCESSING any more (bounded polling)."""
    for _ in range(300):
        response = await client.get("/v1/me/mobile-payments", headers=bearer(session))
        assert response.status_code == 200, response.text
        payments = response.json()["payments"]
        if len(payments) == count and all(p["status"] != "PROCESSING" for p in payments):
            return payments
        await asyncio.sleep(0.05)
    raise AssertionError(f"payments not settled: {payments}")


async def test_mobile_payments_with_billing_refusing_timing_out_and_failing_after_applying(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 100_000)

        async def pay(amount: int, key: str | None = None):
            return await client.post("/v1/me/mobile-payments", json={"amount_kopecks": amount},
                                     headers=keyed(anna, key or str(uuid.uuid4())))

        await billing_mode(stack, "refuse")
        refused = await pay(10_000)
        assert refused.status_code == 201, refused.text
        assert refused.json()["status"] == "FAILED" and refused.json()["failure_reason"]
        assert await balance_of(stack, anna) == (100_000, 100_000)  # the hold was voided

        await billing_mode(stack, "timeout", delay=0.8)
        slow = await pay(20_000)
        assert slow.status_code == 201 and slow.json()["status"] == "PROCESSING", slow.text
        assert await balance_of(stack, anna) == (100_000, 80_000)  # held, not lost
        await settled_payments(client, anna, 2)

        await billing_mode(stack, "fail_after_apply")
        key = str(uuid.uuid4())
        broken = await pay(30_000, key)
        assert broken.status_code == 201 and broken.json()["status"] == "PROCESSING", broken.text
        payments = await settled_payments(client, anna, 3)
        await billing_mode(stack, "ok")
        retried = await pay(30_000, key)

        beyond = await pay(50_001)
        assert_problem(beyond, 422, "INSUFFICIENT_FUNDS")
        payments_after = await settled_payments(client, anna, 4)
        left = await balance_of(stack, anna)
        phone_account = await topped_up(stack, anna["user"]["phone"])
    by_id = {p["payment_id"]: p["status"] for p in payments}
    assert by_id == {refused.json()["payment_id"]: "FAILED", slow.json()["payment_id"]: "COMPLETED",
                     broken.json()["payment_id"]: "COMPLETED"}
    assert retried.status_code == 200 and retried.json()["payment_id"] == broken.json()["payment_id"]
    assert retried.json()["status"] == "COMPLETED"
    assert [p["status"] for p in payments_after] == ["FAILED", "COMPLETED", "COMPLETED", "FAILED"]
    assert phone_account == 50_000  # each applied top-up once: 200 + 300 roubles
    assert left == (50_000, 50_000)


async def test_mobile_payment_amounts_are_whole_kopecks_from_one_rouble(stack):
    async with running_gateway(settings_for(stack), client_host=random_host()) as client:
        anna = await sign_in(client)
        await credit(stack, anna["user"]["user_id"], 1_000)
        answers = [await client.post("/v1/me/mobile-payments", json={"amount_kopecks": amount},
                                     headers=keyed(anna, str(uuid.uuid4()))) for amount in (99, 10.5, 0)]
        no_key = await client.post("/v1/me/mobile-payments", json={"amount_kopecks": 100}, headers=bearer(anna))
        smallest = await client.post("/v1/me/mobile-payments", json={"amount_kopecks": 100},
                                     headers=keyed(anna, str(uuid.uuid4())))
    assert_invalid(answers[0], "AMOUNT_INVALID")
    assert_problem(answers[1], 400, "VALIDATION_FAILED")
    assert_problem(answers[2], 400, "VALIDATION_FAILED")
    assert no_key.status_code == 400
    assert smallest.status_code == 201 and smallest.json()["status"] == "COMPLETED", smallest.text
