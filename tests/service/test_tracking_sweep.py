"""The automatic sweep of partner-purchase cashback to the phone bill, over real gRPC with the real
identity, ledger, redemption and tracking, and the fake operator billing as a local HTTP server."""

from __future__ import annotations

import json
import random
import re
import time
import uuid

import httpx
import pytest
from cashback.identity.v1 import identity_pb2 as ipb
from cashback.identity.v1 import identity_pb2_grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from cashback.redemption.v1 import redemption_pb2, redemption_pb2_grpc
from cashback.tracking.v1 import tracking_pb2 as pb
from cashback.tracking.v1 import tracking_pb2_grpc

from fakes.billing import running_billing
from services.common.grpc_client import open_channel
from services.common.grpc_server import start
from services.redemption.app import build_runtime as build_redemption
from services.tracking.postbacks import sign
from tests.polling import eventually

MTS_PREFIX = "+7982"  # phonenumbers: MTS, the program's operator



class World:
    def __init__(self, channels: dict[str, object], billing_url: str) -> None:
        self.identity = identity_pb2_grpc.IdentityServiceStub(channels["identity"])
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(channels["ledger"])
        self.tracking = tracking_pb2_grpc.TrackingServiceStub(channels["tracking"])
        self.redemption = redemption_pb2_grpc.RedemptionServiceStub(channels["redemption"])
        self.billing_url = billing_url

    async def messages(self, phone: str) -> list[str]:
        return [m.text for m in (await self.identity.ListDevOutbox(ipb.ListDevOutboxRequest(to=phone))).messages]

    async def sign_up_mts(self) -> ipb.User:
        phone = f"{MTS_PREFIX}{random.randrange(10**7):07d}"
        challenge = await self.identity.StartPhoneChallenge(ipb.StartPhoneChallengeRequest(phone=phone))
        texts = await eventually(lambda: self.messages(phone))
        code = re.search(r"\b(\d{6})\b", texts[0]).group(1)
        user = (await self.identity.VerifyPhoneChallenge(ipb.VerifyPhoneChallengeRequest(
            challenge_id=challenge.challenge_id, code=code))).user
        assert user.is_operator_subscriber and user.spending_goal == ipb.SPENDING_GOAL_MOBILE_SERVICES
        return user

    async def approved_purchase(self, user: ipb.User, amount_kopecks: int) -> tuple[pb.IngestPostbackResponse, int]:
        click = (await self.tracking.RecordClick(pb.RecordClickRequest(user_id=user.user_id,
                                                                       partner_id="aliexpress"))).click_id
        body = json.dumps({"order_id": f"AE-{uuid.uuid4().hex[:10]}", "click_id": click, "status": "approved",
                           "amount_kopecks": amount_kopecks, "currency": "RUB"}).encode()
        request = pb.IngestPostbackRequest(network="direct", http_method="POST", body=body, headers={
            "x-cashback-signature": sign("dev-direct-secret", int(time.time()), body)})
        first = await self.tracking.IngestPostback(request)
        again = await self.tracking.IngestPostback(request)
        assert again.outcome == pb.POSTBACK_OUTCOME_DUPLICATE
        cashback = (await self.tracking.GetPurchase(pb.GetPurchaseRequest(
            purchase_id=first.purchase_id))).purchase.cashback_kopecks
        assert cashback > 0
        return first, cashback

    async def balance(self, user_id: str) -> int:
        return (await self.ledger.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user_id))).balance.posted_kopecks

    async def billed(self, phone: str) -> int:
        async with httpx.AsyncClient(base_url=self.billing_url) as client:
            return int((await client.get(f"/v1/accounts/{phone}")).json()["credited_kopecks"])

    async def payments(self, user_id: str) -> list[redemption_pb2.MobilePayment]:
        return list((await self.redemption.ListMobilePayments(
            redemption_pb2.ListMobilePaymentsRequest(user_id=user_id))).payments)


@pytest.fixture
async def services(start_service):
    ledger = await start_service("ledger")
    identity = await start_service("identity", redis_prefix=f"test-identity:{uuid.uuid4().hex}:",
                                   address_codes_per_hour=0, phone_codes_per_hour=0, phone_codes_per_day=0,
                                   sms_per_minute=0)
    async with running_billing() as billing_url:
        yield start_service, ledger, identity, billing_url


async def _world(start_service, ledger, identity, billing_url, redemption_address: str, opened: list):
    tracking = await start_service("tracking", ledger_address=ledger.address, identity_address=identity.address,
                                   redemption_address=redemption_address, accrual_delay_seconds=0,
                                   job_interval_seconds=0.05, redis_prefix=f"test-tracking:{uuid.uuid4().hex}:")
    addresses = {"identity": identity.address, "ledger": ledger.address, "tracking": tracking.address,
                 "redemption": redemption_address}
    channels = {name: open_channel(address) for name, address in addresses.items()}
    opened.extend(channels.values())
    return World(channels, billing_url)


async def test_mts_subscriber_saving_for_mobile_gets_the_cashback_swept_to_the_phone_bill_once(services):
    start_service, ledger, identity, billing_url = services
    redemption = await start_service("redemption", identity_address=identity.address,
                                     ledger_address=ledger.address, billing_url=billing_url)
    opened: list = []
    try:
        world = await _world(start_service, ledger, identity, billing_url, redemption.address, opened)
        user = await world.sign_up_mts()
        _, cashback = await world.approved_purchase(user, 1_000_000)

        async def swept():
            return await world.billed(user.phone) == cashback and await world.balance(user.user_id) == 0

        await eventually(swept)
        texts = await eventually(lambda: _credited_notice(world.messages(user.phone)))
        assert len(texts) == 1
        payments = await world.payments(user.user_id)
        assert [(p.amount_kopecks, p.status) for p in payments] == [
            (cashback, redemption_pb2.PAYMENT_STATUS_COMPLETED)]
        statement = (await world.ledger.ListStatement(ledger_pb2.ListStatementRequest(user_id=user.user_id))).entries
        assert sorted(e.amount_kopecks for e in statement) == [cashback, cashback]  # the credit and the sweep
        assert await world.billed(user.phone) == cashback
    finally:
        for channel in opened:
            await channel.close()


async def _credited_notice(texts) -> list[str]:
    return [t for t in await texts if "начислен" in t or "has been credited" in t]


async def test_a_redemption_outage_delays_only_the_sweep(services):
    start_service, ledger, identity, billing_url = services
    redemption = await start_service("redemption", identity_address=identity.address,
                                     ledger_address=ledger.address, billing_url=billing_url)
    port, settings = redemption.port, redemption.settings
    await redemption.stop()  # redemption is down from the start
    opened: list = []
    restarted = None
    try:
        world = await _world(start_service, ledger, identity, billing_url, f"127.0.0.1:{port}", opened)
        user = await world.sign_up_mts()
        first, cashback = await world.approved_purchase(user, 500_000)

        # The credit and its notification go out while redemption does not answer.
        await eventually(lambda: _equals(world.balance(user.user_id), cashback))
        await eventually(lambda: _count_at_least(world.messages(user.phone), 2))
        assert await world.billed(user.phone) == 0

        restarted = await start(await build_redemption(settings), port=port)

        async def swept():
            return await world.billed(user.phone) == cashback and await world.balance(user.user_id) == 0

        await eventually(swept, seconds=60)
        assert len(await world.payments(user.user_id)) == 1
    finally:
        for channel in opened:
            await channel.close()
        if restarted is not None:
            await restarted.stop(0)


async def _equals(value, expected) -> bool:
    return await value == expected


async def _count_at_least(values, n: int) -> bool:
    return len(await values) >= n
