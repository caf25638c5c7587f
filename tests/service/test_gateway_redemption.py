"""The gateway in front of real identity, ledger and redemption (and the fake operator billing):
money routes with Idempotency-Key, store and USSD credentials, one user never reaching another's
certificate."""

from __future__ import annotations

import asyncio
import uuid

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
                                         ledger_address=ledger.address, billing_url=billing_url)
        yield {"ledger": ledger.address, "identity": identity.address, "redemption": redemption.address}
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
